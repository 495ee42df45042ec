"""The rate limit per key, for each limiter model, in-process on trio's virtual clock.

Clock zero is UTC 2027-01-15T08:00:00Z (conftest.TEST_UTC), a minute boundary.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx
import pytest

from runner.emulator import InProcess, Latency

pytestmark = pytest.mark.anyio

SUBMIT = "/v2/grok-imagine-image"
BODY = {"prompt": "a red fox", "resolution": "1k", "aspect_ratio": "1:1"}

Make = Callable[..., InProcess]


async def codes(client: httpx.AsyncClient, count: int) -> list[int]:
    return [(await client.post(SUBMIT, json=BODY)).status_code for _ in range(count)]


async def sleep_until(t: float) -> None:
    await anyio.sleep(t - anyio.current_time())


async def test_no_limit_by_default(emulator: InProcess) -> None:
    async with emulator.client() as client:
        assert await codes(client, 20) == [200] * 20


async def test_fixed_windows_reset_on_the_minute(make_emulator: Make) -> None:
    emu = make_emulator(rpm=2, limiter="fixed")
    async with emu.client() as client:
        await sleep_until(20.0)
        assert await codes(client, 2) == [200, 200]
        refused = await client.post(SUBMIT, json=BODY)
        await sleep_until(59.5)
        still = await client.post(SUBMIT, json=BODY)
        await sleep_until(60.0)
        assert await codes(client, 3) == [200, 200, 429]
    assert refused.status_code == 429
    assert refused.json() == {"error": "Rate limit exceeded"}
    assert refused.headers["x-rate-limit-reset-at-utc"] == "2027-01-15T08:01:00Z"
    assert "retry-after" not in refused.headers
    assert still.status_code == 429
    # Fixed windows admit 2 x rpm within 40 s across a boundary.
    accepted = [c.time for c in emu.emulator.calls("submit") if c.status == 200]
    assert accepted == [20.0, 20.0, 60.0, 60.0]


async def test_sliding_window_counts_the_last_window(make_emulator: Make) -> None:
    emu = make_emulator(rpm=2, limiter="sliding")
    async with emu.client() as client:
        assert await codes(client, 1) == [200]
        await sleep_until(30.0)
        assert await codes(client, 1) == [200]
        await sleep_until(45.0)
        refused = await client.post(SUBMIT, json=BODY)
        await sleep_until(60.0)
        assert await codes(client, 2) == [200, 429]
        await sleep_until(90.0)
        assert await codes(client, 1) == [200]
    assert refused.status_code == 429
    assert refused.headers["x-rate-limit-reset-at-utc"] == "2027-01-15T08:01:00Z"


async def test_token_bucket_allows_a_small_burst_then_a_steady_rate(make_emulator: Make) -> None:
    emu = make_emulator(rpm=60, limiter="bucket", burst=2)
    async with emu.client() as client:
        first = await codes(client, 2)
        refused = await client.post(SUBMIT, json=BODY)
        await sleep_until(0.5)
        half = await client.post(SUBMIT, json=BODY)
        await sleep_until(1.0)
        assert await codes(client, 2) == [200, 429]
    assert first == [200, 200]
    assert refused.headers["x-rate-limit-reset-at-utc"] == "2027-01-15T08:00:01Z"
    assert half.status_code == 429
    assert half.headers["x-rate-limit-reset-at-utc"] == "2027-01-15T08:00:01Z"


async def test_retry_after_header_is_optional(make_emulator: Make) -> None:
    emu = make_emulator(rpm=1, limiter="fixed", retry_after_header=True)
    async with emu.client() as client:
        await sleep_until(15.5)
        await client.post(SUBMIT, json=BODY)
        refused = await client.post(SUBMIT, json=BODY)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "45"


async def test_scope_submit_ignores_polls_and_scope_all_counts_them(make_emulator: Make) -> None:
    for scope, expected in (("submit", [200, 200, 200]), ("all", [200, 200, 429])):
        emu = make_emulator(
            rpm=2, limiter="sliding", rate_scope=scope, latency=Latency("fixed", 1.0)
        )
        async with emu.client() as client:
            rid = (await client.post(SUBMIT, json=BODY)).json()["request_id"]
            polls = [
                (await client.get(f"/v2/requests/{rid}/status")).status_code,
                (await client.get("/v1/get-user-credits")).status_code,
            ]
            await anyio.sleep(1)
            url = f"/media/{rid}/0.png"
            media = [(await client.get(url)).status_code for _ in range(3)]
        assert [200, *polls] == expected, scope
        assert media == [200, 200, 200]  # downloads never count


async def test_refused_calls_do_not_count(make_emulator: Make) -> None:
    emu = make_emulator(rpm=2, limiter="sliding")
    async with emu.client() as client:
        assert await codes(client, 2) == [200, 200]
        await sleep_until(10.0)
        assert await codes(client, 5) == [429] * 5
        await sleep_until(60.0)
        assert await codes(client, 2) == [200, 200]


async def test_limits_are_per_key(make_emulator: Make) -> None:
    emu = make_emulator(rpm=1, limiter="fixed")
    async with emu.client(api_key="alice") as alice, emu.client(api_key="bob") as bob:
        assert await codes(alice, 2) == [200, 429]
        assert await codes(bob, 2) == [200, 429]


async def test_time_scale_shrinks_the_window(make_emulator: Make) -> None:
    emu = make_emulator(rpm=1, limiter="fixed", time_scale=0.01)
    async with emu.client() as client:
        await sleep_until(0.1)
        assert await codes(client, 2) == [200, 429]
        refused = await client.post(SUBMIT, json=BODY)
        await sleep_until(0.6)
        assert await codes(client, 1) == [200]
    # Scaled windows are 0.6 s long: the stamp carries milliseconds.
    assert refused.headers["x-rate-limit-reset-at-utc"] == "2027-01-15T08:00:00.600Z"


async def test_a_reset_hint_truncated_to_the_second_is_early(make_emulator: Make) -> None:
    # A sliding 2-per-6 s limit: the first call leaves the window at 6.7 s, but the
    # hint says 08:00:06, before the limit would admit anything again.
    emu = make_emulator(rpm=2, limiter="sliding", rate_window=6.0, reset_hint="second")
    async with emu.client() as client:
        await sleep_until(0.7)
        assert await codes(client, 2) == [200, 200]
        refused = await client.post(SUBMIT, json=BODY)
        await sleep_until(6.0)
        early = await client.post(SUBMIT, json=BODY)
        await sleep_until(6.7)
        assert await codes(client, 1) == [200]
    assert refused.headers["x-rate-limit-reset-at-utc"] == "2027-01-15T08:00:06Z"
    assert early.status_code == 429


async def test_a_429_may_carry_no_reset_hint(make_emulator: Make) -> None:
    emu = make_emulator(rpm=1, limiter="fixed", reset_hint="none")
    async with emu.client() as client:
        assert await codes(client, 1) == [200]
        refused = await client.post(SUBMIT, json=BODY)
    assert refused.status_code == 429
    assert "x-rate-limit-reset-at-utc" not in refused.headers
