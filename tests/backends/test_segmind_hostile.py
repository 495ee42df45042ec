"""The real client against hostile answers of the in-process emulator (virtual clock)."""

from __future__ import annotations

import anyio
import pytest
from backend_helpers import FAKE_KEY, make_request, small_config

from runner.backends import wire
from runner.backends.bounded import AnswerLimits
from runner.backends.segmind import SegmindBackend
from runner.emulator import Emulator, EmulatorTransport, create_app
from runner.errors import ProtocolError, TransportError

pytestmark = pytest.mark.anyio

MODEL = "grok-imagine-image"


async def test_a_gzip_bomb_on_a_poll_is_a_lost_answer(
    backend: SegmindBackend, emu: Emulator
) -> None:
    submission = await backend.submit(MODEL, make_request())
    await anyio.sleep(11)
    emu.faults.script("status", "gzip_bomb")
    with pytest.raises(TransportError) as lost:
        await backend.status(submission)
    assert lost.value.sent
    assert f"GET /v2/requests/{submission.request_id}/status -> 200" in str(lost.value)
    assert "inflates past" in str(lost.value)
    # Asked again, the honest answer is read.
    assert (await backend.status(submission)).state == "COMPLETED"


async def test_a_deep_submit_answer_is_final(backend: SegmindBackend, emu: Emulator) -> None:
    emu.faults.script("submit", "deep_json")
    with pytest.raises(ProtocolError, match=r"POST /v2/grok-imagine-image -> 200: .*nests deeper"):
        await backend.submit(MODEL, make_request())
    assert len(emu.accepted_submits()) == 1  # the server took it: nobody sends it again


async def test_the_cap_is_a_knob() -> None:
    emu = Emulator(small_config())
    app = create_app(emu)
    tight = SegmindBackend(
        "http://emulator.local",
        FAKE_KEY,
        transport=EmulatorTransport(app),
        limits=AnswerLimits(json_bytes=64),
    )
    async with tight:
        with pytest.raises(ProtocolError, match="over the 64 byte cap"):
            await tight.submit(MODEL, make_request())


def test_only_decodable_encodings_are_asked_for() -> None:
    # httpx would also offer br and zstd once their packages are installed.
    for headers in (wire.api_headers(None), wire.api_headers(FAKE_KEY, accept="image/*")):
        assert dict(headers)["Accept-Encoding"] == "gzip, deflate"
