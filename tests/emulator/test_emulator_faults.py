"""Injected faults, scripted and seeded, in-process on trio's virtual clock."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import anyio
import httpx
import pytest
from PIL import Image

from runner.emulator import FaultInjector, FaultRate, InProcess, Latency

pytestmark = pytest.mark.anyio

SUBMIT = "/v2/grok-imagine-image"
SYNC = "/v1/grok-imagine-image"
BODY = {"prompt": "a red fox", "resolution": "1k", "aspect_ratio": "1:1"}

Make = Callable[..., InProcess]


def quick(make_emulator: Make, **config: object) -> InProcess:
    return make_emulator(latency=Latency("fixed", 1.0), **config)


async def completed_media_url(client: httpx.AsyncClient) -> str:
    rid = (await client.post(SUBMIT, json=BODY)).json()["request_id"]
    await anyio.sleep(1)
    return str((await client.get(f"/v2/requests/{rid}")).json()["output"])


@pytest.mark.parametrize(
    ("fault", "status", "needle"),
    [("500", 500, "Internal"), ("502", 502, "Bad gateway"), ("504", 504, "timed out")],
)
async def test_server_errors_create_no_job(
    make_emulator: Make, fault: str, status: int, needle: str
) -> None:
    emu = quick(make_emulator)
    emu.emulator.faults.script("submit", fault)  # type: ignore[arg-type]
    async with emu.client() as client:
        failed = await client.post(SUBMIT, json=BODY)
        ok = await client.post(SUBMIT, json=BODY)
    assert failed.status_code == status
    assert needle in failed.json()["error"]
    assert ok.status_code == 200
    assert len(emu.emulator.accepted_submits()) == 1
    assert [c.fault for c in emu.emulator.calls("submit")] == [fault, None]


async def test_scripted_429s_then_normal_answers(make_emulator: Make) -> None:
    emu = quick(make_emulator)
    emu.emulator.faults.script("status", "429", times=3)
    emu.emulator.faults.script("credits", "502")
    async with emu.client() as client:
        rid = (await client.post(SUBMIT, json=BODY)).json()["request_id"]
        answers = [await client.get(f"/v2/requests/{rid}/status") for _ in range(4)]
        credits = [(await client.get("/v1/get-user-credits")).status_code for _ in range(2)]
    assert [a.status_code for a in answers] == [429, 429, 429, 200]
    assert answers[0].headers["x-rate-limit-reset-at-utc"] == "2027-01-15T08:01:00Z"
    assert credits == [502, 200]
    assert emu.emulator.faults.pending() == 0


async def test_drop_before_accept_creates_no_job(make_emulator: Make) -> None:
    emu = quick(make_emulator)
    emu.emulator.faults.script("submit", "drop_before")
    async with emu.client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(SUBMIT, json=BODY)
    assert emu.emulator.accepted_submits() == []
    (call,) = emu.emulator.calls("submit")
    assert (call.status, call.fault) == (None, "drop_before")


async def test_accepted_then_dropped_is_billed(make_emulator: Make) -> None:
    emu = quick(make_emulator, credits=1.0)
    emu.emulator.faults.script("submit", "drop_after")
    async with emu.client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(SUBMIT, json=BODY)
        await anyio.sleep(1)
        credits = (await client.get("/v1/get-user-credits")).json()["credits"]
    (job,) = emu.emulator.accepted_submits()
    assert job.state == "COMPLETED"
    assert emu.emulator.charged_total() == pytest.approx(0.02)
    assert credits == pytest.approx(0.98)
    (call,) = emu.emulator.calls("submit")
    assert (call.status, call.fault, call.request_id) == (None, "drop_after", job.request_id)


async def test_sync_accepted_then_dropped_is_billed(make_emulator: Make) -> None:
    emu = quick(make_emulator)
    emu.emulator.faults.script("sync", "drop_after")
    async with emu.client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(SYNC, json=BODY)
    (job,) = emu.emulator.accepted_submits("v1")
    assert job.charged == pytest.approx(0.02)


async def test_dropped_poll_then_recovers(make_emulator: Make) -> None:
    emu = quick(make_emulator)
    emu.emulator.faults.script("status", "drop_before")
    async with emu.client() as client:
        rid = (await client.post(SUBMIT, json=BODY)).json()["request_id"]
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"/v2/requests/{rid}/status")
        again = await client.get(f"/v2/requests/{rid}/status")
    assert again.status_code == 200


async def test_slow_answer_waits_on_the_clock(make_emulator: Make) -> None:
    emu = quick(make_emulator, slow_delay=7.0, time_scale=0.5)
    emu.emulator.faults.script("credits", "slow")
    async with emu.client() as client:
        started = anyio.current_time()
        answer = await client.get("/v1/get-user-credits")
        slow = anyio.current_time() - started
        started = anyio.current_time()
        await client.get("/v1/get-user-credits")
        normal = anyio.current_time() - started
    assert answer.status_code == 200
    assert (slow, normal) == (3.5, 0.0)


async def test_slow_body_trickles_the_whole_body(make_emulator: Make) -> None:
    emu = quick(make_emulator, trickle_chunks=4, trickle_delay=0.25)
    async with emu.client() as client:
        url = await completed_media_url(client)
        clean = (await client.get(url)).content
        emu.emulator.faults.script("media", "slow_body")
        started = anyio.current_time()
        slow = await client.get(url)
        elapsed = anyio.current_time() - started
    assert slow.content == clean
    assert elapsed == pytest.approx(1.0)


async def test_truncated_download_is_a_protocol_error(make_emulator: Make) -> None:
    emu = quick(make_emulator)
    async with emu.client() as client:
        url = await completed_media_url(client)
        emu.emulator.faults.script("media", "truncate")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url)
        again = await client.get(url)
    assert again.status_code == 200
    with Image.open(io.BytesIO(again.content)) as image:
        image.load()


async def test_cut_download_is_a_short_but_consistent_answer(make_emulator: Make) -> None:
    emu = quick(make_emulator)
    async with emu.client() as client:
        url = await completed_media_url(client)
        clean = (await client.get(url)).content
        emu.emulator.faults.script("media", "cut")
        cut = await client.get(url)
    assert cut.status_code == 200
    assert int(cut.headers["content-length"]) == len(cut.content) < len(clean)
    assert clean.startswith(cut.content)
    with pytest.raises(OSError), Image.open(io.BytesIO(cut.content)) as image:
        image.load()


async def test_corrupted_download_keeps_its_length(make_emulator: Make) -> None:
    emu = quick(make_emulator)
    async with emu.client() as client:
        url = await completed_media_url(client)
        clean = (await client.get(url)).content
        emu.emulator.faults.script("media", "corrupt")
        bad = await client.get(url)
    assert bad.status_code == 200
    assert len(bad.content) == len(clean)
    assert bad.content != clean
    assert bad.content[:16] == clean[:16]  # the header survives; the middle does not


async def fault_sequence(make_emulator: Make, seed: int) -> list[str | None]:
    rates = (
        FaultRate("status", "500", 0.2),
        FaultRate("status", "429", 0.1),
        FaultRate("status", "slow", 0.1),
        FaultRate("status", "drop_before", 0.1),
    )
    emu = quick(make_emulator, seed=seed, faults=rates, burst_429=2)
    async with emu.client() as client:
        rid = (await client.post(SUBMIT, json=BODY)).json()["request_id"]
        for _ in range(40):
            with contextlib.suppress(httpx.RemoteProtocolError):
                await client.get(f"/v2/requests/{rid}/status")
    return [c.fault for c in emu.emulator.calls("status")]


async def test_seeded_faults_reproduce(make_emulator: Make) -> None:
    first = await fault_sequence(make_emulator, 7)
    second = await fault_sequence(make_emulator, 7)
    other = await fault_sequence(make_emulator, 8)
    assert first == second
    assert first != other
    assert {"500", "429", "slow", "drop_before", None} <= set(first)


def test_random_429s_come_in_bursts() -> None:
    injector = FaultInjector([FaultRate("status", "429", 0.1)], seed=3, burst_429=4)
    draws = [injector.draw("status") for _ in range(400)]
    runs, length = [], 0
    for fault in [*draws, None]:
        if fault == "429":
            length += 1
        elif length:
            runs.append(length)
            length = 0
    assert runs
    assert all(run >= 4 for run in runs[:-1])
    assert injector.draw("media") is None


def test_script_comes_before_random_draws_and_can_be_cleared() -> None:
    injector = FaultInjector([FaultRate("submit", "500", 1.0)], seed=0, burst_429=3)
    injector.script("submit", "drop_after", times=2)
    assert [injector.draw("submit") for _ in range(3)] == ["drop_after", "drop_after", "500"]
    injector.script("media", "cut")
    assert injector.pending("media") == 1
    injector.clear()
    assert injector.pending() == 0


def test_fault_rules_are_checked() -> None:
    with pytest.raises(ValueError, match="media downloads only"):
        FaultRate("submit", "truncate", 0.1)
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        FaultRate("submit", "500", 1.5)
    with pytest.raises(ValueError, match="add up to more than 1"):
        FaultInjector(
            [FaultRate("status", "500", 0.6), FaultRate("status", "502", 0.6)], seed=0, burst_429=1
        )
    injector = FaultInjector([], seed=0, burst_429=1)
    with pytest.raises(ValueError, match="not one of"):
        injector.script("status", "teapot")  # type: ignore[arg-type]
