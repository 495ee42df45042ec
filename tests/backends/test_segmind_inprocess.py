"""SegmindBackend against the in-process emulator, on trio's virtual clock."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import anyio
import pytest
from backend_helpers import FAKE_KEY, encode_image, make_request, small_config
from PIL import Image

from runner.backends.base import Media, Submission, submission_for
from runner.backends.segmind import SegmindBackend
from runner.backends.select import LOCAL_BASE_URL, local_backend
from runner.emulator import Emulator, EmulatorTransport, create_app, hash_key
from runner.emulator.state import ANONYMOUS
from runner.errors import (
    AuthError,
    DownloadError,
    InsufficientCredits,
    JobFailed,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
    UsageError,
)
from runner.jobs import ImageInput

pytestmark = pytest.mark.anyio

FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


async def finish(backend: SegmindBackend, submission: Submission) -> str:
    """Poll until a terminal state, on the virtual clock; the final state."""
    for _ in range(100):
        report = await backend.status(submission)
        if report.state in ("COMPLETED", "FAILED"):
            return report.state
        await anyio.sleep(1.0)
    raise AssertionError("the job never finished")


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
@pytest.mark.parametrize("n", [1, 2])
async def test_v2_round_trip(backend: SegmindBackend, emu: Emulator, fmt: str, n: int) -> None:
    submission = await backend.submit("grok-imagine-image", make_request(n=n, fmt=fmt))
    assert submission.status_url.startswith(f"{LOCAL_BASE_URL}/v2/requests/")
    assert (await backend.status(submission)).state in ("QUEUED", "PROCESSING")
    assert await finish(backend, submission) == "COMPLETED"
    result = await backend.result(submission)
    assert result.state == "COMPLETED"
    assert len(result.media) == n
    assert result.metrics.inference_time == pytest.approx(10.0)
    assert result.metrics.cost == pytest.approx(0.02 * n)
    seen = set()
    for media in result.media:
        data = await backend.download(media, max_bytes=10_000_000)
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == FORMATS[fmt]
            assert image.size == (64, 64)
        seen.add(hashlib.sha256(data).hexdigest())
    assert len(seen) == n  # n distinct images, not one downloaded twice
    media_calls = emu.calls("media")
    assert len(media_calls) == n
    assert all(call.key_hash == ANONYMOUS for call in media_calls)
    api_calls = emu.calls(("submit", "status", "result"))
    assert api_calls
    assert all(call.key_hash == hash_key(FAKE_KEY) for call in api_calls)


async def test_v1_sync(backend: SegmindBackend, emu: Emulator) -> None:
    before = anyio.current_time()
    got = await backend.run_sync("grok-imagine-image", make_request(fmt="jpeg"))
    assert anyio.current_time() - before == pytest.approx(10.0)
    assert len(got.media) == 1
    media = got.media[0]
    assert media.content_type == "image/jpeg"
    assert media.data is not None
    assert await backend.download(media, max_bytes=10_000_000) == media.data
    assert got.metrics.cost == pytest.approx(0.02)
    assert got.metrics.remaining_credits == pytest.approx(1000 - 0.02)
    assert got.request_id == emu.accepted_submits("v1")[0].request_id


async def test_sync_failed_is_job_failed(backend: SegmindBackend) -> None:
    with pytest.raises(JobFailed) as caught:
        await backend.run_sync("grok-imagine-image", make_request(prompt="a blocked thing"))
    assert "Content moderated" in caught.value.reason


async def test_failed_job_under_422(backend: SegmindBackend) -> None:
    submission = await backend.submit("grok-imagine-image", make_request(prompt="nsfw please"))
    assert await finish(backend, submission) == "FAILED"
    report = await backend.status(submission)
    assert report.error is not None
    assert "Content moderated" in report.error
    result = await backend.result(submission)
    assert (result.state, result.media) == ("FAILED", ())


async def test_credits(backend: SegmindBackend) -> None:
    assert await backend.credits() == pytest.approx(1000.0)
    await backend.run_sync("grok-imagine-image", make_request(n=2))
    assert await backend.credits() == pytest.approx(1000.0 - 0.04)


async def test_wrong_key_is_auth_error(emu: Emulator) -> None:
    wrong = "sk-WRONG-key-000000000000"
    async with local_backend(emulator=emu, api_key=wrong) as backend:
        with pytest.raises(AuthError) as caught:
            await backend.submit("grok-imagine-image", make_request())
    assert caught.value.status == 401
    assert str(caught.value).startswith("POST /v2/grok-imagine-image -> 401: Invalid API key")
    assert wrong not in str(caught.value)
    assert FAKE_KEY not in str(caught.value)


async def test_no_key_is_auth_error(emu: Emulator) -> None:
    async with local_backend(emulator=emu) as backend:
        with pytest.raises(AuthError, match="SEGMIND_API_KEY"):
            await backend.credits()


async def test_insufficient_credits() -> None:
    emu = Emulator(small_config(credits=0.01))
    async with local_backend(emulator=emu, api_key=FAKE_KEY) as backend:
        with pytest.raises(InsufficientCredits) as caught:
            await backend.submit("grok-imagine-image", make_request())
    assert caught.value.status == 406
    assert "add credits" in str(caught.value)


async def test_rate_limited_carries_retry_after() -> None:
    emu = Emulator(small_config(rpm=1, limiter="fixed", rate_window=60.0))
    async with local_backend(emulator=emu, api_key=FAKE_KEY) as backend:
        await backend.submit("grok-imagine-image", make_request())
        with pytest.raises(RateLimited) as caught:
            await backend.submit("grok-imagine-image", make_request())
        wait = caught.value.retry_after
        assert wait is not None
        assert 0 < wait <= 60
        await anyio.sleep(wait)
        await backend.submit("grok-imagine-image", make_request())  # admitted after the wait


async def test_injected_5xx_and_429() -> None:
    emu = Emulator(small_config(retry_after_header=True))
    emu.faults.script("status", "502")
    emu.faults.script("status", "429")
    async with local_backend(emulator=emu, api_key=FAKE_KEY) as backend:
        submission = await backend.submit("grok-imagine-image", make_request())
        with pytest.raises(ServerError) as server:
            await backend.status(submission)
        assert server.value.status == 502
        with pytest.raises(RateLimited) as limited:
            await backend.status(submission)
        assert limited.value.retry_after is not None
        assert (await backend.status(submission)).state in ("QUEUED", "PROCESSING")


@pytest.mark.parametrize(("fault", "accepted"), [("drop_before", 0), ("drop_after", 1)])
async def test_dropped_connection_is_sent_transport_error(fault: str, accepted: int) -> None:
    emu = Emulator(small_config())
    emu.faults.script("submit", fault)  # type: ignore[arg-type]
    async with local_backend(emulator=emu, api_key=FAKE_KEY) as backend:
        with pytest.raises(TransportError) as caught:
            await backend.submit("grok-imagine-image", make_request())
    assert caught.value.sent is True
    assert str(caught.value).startswith("POST /v2/grok-imagine-image: ")
    assert "may have reached the server" in str(caught.value)
    assert len(emu.accepted_submits()) == accepted  # after a drop, maybe billed


async def test_unknown_request_is_not_found(backend: SegmindBackend) -> None:
    with pytest.raises(NotFound, match="not found"):
        await backend.status(submission_for(LOCAL_BASE_URL, "no-such-id"))


async def test_expired_result_is_not_found() -> None:
    emu = Emulator(small_config(retention=3600.0))
    async with local_backend(emulator=emu, api_key=FAKE_KEY) as backend:
        submission = await backend.submit("grok-imagine-image", make_request())
        await anyio.sleep(3601)
        with pytest.raises(NotFound):
            await backend.result(submission)


async def test_unknown_model_is_not_found(backend: SegmindBackend) -> None:
    with pytest.raises(NotFound, match="Model nope not found"):
        await backend.submit("nope", make_request())


# --- downloads ------------------------------------------------------------------------


async def completed_media(backend: SegmindBackend) -> Media:
    submission = await backend.submit("grok-imagine-image", make_request())
    await finish(backend, submission)
    return (await backend.result(submission)).media[0]


async def test_download_size_cap(backend: SegmindBackend) -> None:
    media = await completed_media(backend)
    size = len(await backend.download(media, max_bytes=10_000_000))
    with pytest.raises(DownloadError) as caught:
        await backend.download(media, max_bytes=size - 1)
    assert caught.value.retryable is False
    assert "cap" in str(caught.value)
    assert len(await backend.download(media, max_bytes=size)) == size


async def test_inline_size_cap(backend: SegmindBackend) -> None:
    png = encode_image("PNG")
    assert await backend.download(Media(data=png), max_bytes=len(png)) == png
    with pytest.raises(DownloadError):
        await backend.download(Media(data=png), max_bytes=len(png) - 1)


async def test_truncated_download_is_retryable(emu: Emulator, backend: SegmindBackend) -> None:
    media = await completed_media(backend)
    emu.faults.script("media", "truncate")
    with pytest.raises(DownloadError) as caught:
        await backend.download(media, max_bytes=10_000_000)
    assert caught.value.retryable is True
    assert media.url is not None
    assert await backend.download(media, max_bytes=10_000_000)  # the next try succeeds


async def test_media_404_is_final(backend: SegmindBackend) -> None:
    with pytest.raises(DownloadError) as caught:
        await backend.download(Media(url=f"{LOCAL_BASE_URL}/media/nope/0.png"), max_bytes=100)
    assert caught.value.retryable is False
    assert "-> 404" in str(caught.value)


async def test_media_guard_sees_each_url(emu: Emulator) -> None:
    seen: list[str] = []

    def guard(url: str) -> None:
        seen.append(url)
        if "refuse" in url:
            raise DownloadError(f"refused {url}")

    async with local_backend(emulator=emu, api_key=FAKE_KEY) as local:
        media = await completed_media(local)
    app = create_app(emu)
    async with SegmindBackend(
        LOCAL_BASE_URL,
        FAKE_KEY,
        transport=EmulatorTransport(app),
        media_transport=EmulatorTransport(app),
        media_guard=guard,
    ) as guarded:
        assert await guarded.download(media, max_bytes=10_000_000)
        with pytest.raises(DownloadError, match="refused"):
            await guarded.download(Media(url=f"{LOCAL_BASE_URL}/refuse/0.png"), max_bytes=100)
    assert seen == [media.url, f"{LOCAL_BASE_URL}/refuse/0.png"]
    assert len(emu.calls("media")) == 1  # the refused URL was never fetched


async def test_non_http_media_is_refused(backend: SegmindBackend) -> None:
    with pytest.raises(DownloadError, match="only http"):
        await backend.download(Media(url="file:///etc/passwd"), max_bytes=100)


# --- input images ---------------------------------------------------------------------


async def test_path_image_is_read_and_sent(
    backend: SegmindBackend, emu: Emulator, tmp_path: Path
) -> None:
    source = tmp_path / "in.png"
    png = encode_image("PNG", (32, 16))
    source.write_bytes(png)
    image = ImageInput("path", "in.png", hashlib.sha256(png).hexdigest(), path=str(source))
    submission = await backend.submit("grok-imagine-image", make_request(image=image))
    assert await finish(backend, submission) == "COMPLETED"
    job = emu.accepted_submits()[0]
    assert job.params.image is not None
    assert job.params.image.data == png

    source.write_bytes(encode_image("PNG", (8, 8)))
    with pytest.raises(UsageError, match="changed since the manifest was loaded"):
        await backend.submit("grok-imagine-image", make_request(image=image))
    source.unlink()
    with pytest.raises(UsageError, match="cannot read"):
        await backend.run_sync("grok-imagine-image", make_request(image=image))


async def test_base_url_is_normalized(emu: Emulator) -> None:
    async with local_backend(emulator=emu) as backend:
        assert backend.base_url == LOCAL_BASE_URL
        assert backend.name == "local"
    async with SegmindBackend("https://api.segmind.com/v1/", FAKE_KEY) as remote:
        assert remote.base_url == "https://api.segmind.com"
        assert FAKE_KEY not in repr(remote)
    with pytest.raises(UsageError):
        SegmindBackend("ftp://x", None)
