"""The emulator's hostile faults are what they claim, and fit only the endpoints they name."""

from __future__ import annotations

import zlib

import pytest

from runner.emulator import EmulatorConfig, FaultRate, InProcess
from runner.emulator.config import config_kwargs_from_file

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("status:deep_json=0.1", True),
        ("result:extra_images=0.1", True),
        ("submit:hostile_id=0.5", True),
        ("media:trickle=0.1", True),
        ("status:hostile_id=0.1", False),
        ("media:deep_json=0.1", False),
        ("submit:negative_cost=0.1", False),
    ],
)
def test_a_hostile_fault_fits_its_endpoints(text: str, ok: bool) -> None:
    if ok:
        assert FaultRate.parse(text).rate == pytest.approx(float(text.rpartition("=")[2]))
    else:
        with pytest.raises(ValueError, match="applies to"):
            FaultRate.parse(text)


def test_the_hostile_knobs_come_from_a_settings_file() -> None:
    kwargs = config_kwargs_from_file(
        "emu.yaml",
        {"hostile_bytes": 1024, "hostile_request_id": "a/b", "faults": ["submit:hostile_id=1"]},
    )
    config = EmulatorConfig(**kwargs)
    assert (config.hostile_bytes, config.hostile_request_id) == (1024, "a/b")
    with pytest.raises(ValueError, match="hostile_depth"):
        EmulatorConfig(hostile_depth=0)


async def test_the_gzip_bomb_inflates_to_its_size() -> None:
    emu = InProcess.create(EmulatorConfig(hostile_bytes=64 * MIB))
    emu.emulator.faults.script("credits", "gzip_bomb")
    async with emu.client() as client, client.stream("GET", "/v1/get-user-credits") as answer:
        raw = b"".join([chunk async for chunk in answer.aiter_raw()])
    assert answer.headers["content-encoding"] == "gzip"
    assert len(raw) < MIB  # small on the wire
    inflate = zlib.decompressobj(47)
    total = 0
    for start in range(0, len(raw), 4096):
        data = inflate.decompress(raw[start : start + 4096], MIB)
        while data:
            total += len(data)
            data = inflate.decompress(inflate.unconsumed_tail, MIB)
    assert total >= 64 * MIB


async def test_a_hostile_id_is_served_unquoted() -> None:
    emu = InProcess.create(EmulatorConfig(hostile_request_id="../../x"))
    emu.emulator.faults.script("submit", "hostile_id")
    async with emu.client() as client:
        answer = await client.post("/v2/grok-imagine-image", json={"prompt": "a fox"})
    doc = answer.json()
    assert doc["request_id"] == "../../x"
    assert doc["status_url"].endswith("/v2/requests/../../x/status")
    assert len(emu.emulator.accepted_submits()) == 1  # accepted (and billed) first
