"""SegmindBackend over real sockets: the emulator on loopback (uvicorn in a thread).

These run on trio's real clock: a virtual clock would jump past the read
timeouts while the server thread works. Jobs take 0 s, so nothing waits.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator

import pytest
from backend_helpers import FAKE_KEY, make_request, small_config
from PIL import Image

from runner.backends.segmind import SegmindBackend
from runner.emulator import Latency, Served, hash_key, serve_in_thread
from runner.emulator.state import ANONYMOUS
from runner.errors import DownloadError, TransportError

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    config = small_config(latency=Latency("fixed", 0.0, 0.0), utc_offset=None)
    with serve_in_thread(config) as running:
        yield running


async def test_round_trip_over_loopback(served: Served) -> None:
    async with SegmindBackend(f"{served.base_url}/v2/", FAKE_KEY) as backend:
        submission = await backend.submit("grok-imagine-image", make_request(n=2, fmt="webp"))
        assert submission.status_url.startswith(served.base_url)
        assert (await backend.status(submission)).state == "COMPLETED"
        result = await backend.result(submission)
        assert len(result.media) == 2
        for media in result.media:
            data = await backend.download(media, max_bytes=5_000_000)
            with Image.open(io.BytesIO(data)) as image:
                assert (image.format, image.size) == ("WEBP", (64, 64))
        synced = await backend.run_sync("grok-imagine-image", make_request(fmt="png"))
        assert synced.media[0].content_type == "image/png"
        assert await backend.credits() is not None
    ids = {submission.request_id}
    media_calls = [c for c in served.emulator.calls("media") if c.request_id in ids]
    assert len(media_calls) == 2
    assert all(call.key_hash == ANONYMOUS for call in media_calls)
    assert all(c.key_hash == hash_key(FAKE_KEY) for c in served.emulator.calls("submit"))


async def test_dropped_connection_over_loopback(served: Served) -> None:
    served.emulator.faults.script("submit", "drop_after")
    async with SegmindBackend(served.base_url, FAKE_KEY) as backend:
        with pytest.raises(TransportError) as caught:
            await backend.submit("grok-imagine-image", make_request())
    assert caught.value.sent is True


async def test_truncated_download_over_loopback(served: Served) -> None:
    async with SegmindBackend(served.base_url, FAKE_KEY) as backend:
        submission = await backend.submit("grok-imagine-image", make_request())
        media = (await backend.result(submission)).media[0]
        served.emulator.faults.script("media", "truncate")
        with pytest.raises(DownloadError) as caught:
            await backend.download(media, max_bytes=5_000_000)
        assert caught.value.retryable is True
        assert await backend.download(media, max_bytes=5_000_000)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_refused_connection_is_not_sent() -> None:
    async with SegmindBackend(f"http://127.0.0.1:{closed_port()}", FAKE_KEY) as backend:
        with pytest.raises(TransportError) as caught:
            await backend.submit("grok-imagine-image", make_request())
    assert caught.value.sent is False
    text = str(caught.value)
    assert text.startswith("POST /v2/grok-imagine-image: could not connect")
    assert "127.0.0.1" not in text
    assert FAKE_KEY not in text
