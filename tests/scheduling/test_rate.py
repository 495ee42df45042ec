"""The rate gate on a virtual clock: no window ever holds more than the budget."""

from __future__ import annotations

import math

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.scheduling.quota import QuotaStats
from runner.scheduling.rate import RateGate, RateModel


def _admissions(
    limit: int,
    window: float,
    arrivals: list[float],
    *,
    model: RateModel = "window",
    margin: float = 0.0,
    limited_at: dict[int, float] | None = None,
) -> list[float]:
    """Run callers arriving at `arrivals` (virtual seconds); return admission times."""
    admitted: list[float] = []

    async def caller(gate: RateGate, at: float, i: int) -> None:
        await trio.sleep(at)
        await gate.acquire()
        admitted.append(trio.current_time())
        if limited_at and i in limited_at:
            gate.rate_limited(limited_at[i])
        gate.finished()  # the call is answered at once

    async def main() -> None:
        gate = RateGate(limit, window, margin=margin, model=model, clock=trio.current_time)
        async with trio.open_nursery() as nursery:
            for i, at in enumerate(arrivals):
                nursery.start_soon(caller, gate, at, i)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return sorted(admitted)


def _max_in_window(times: list[float], window: float) -> int:
    best = 0
    j = 0
    for i, t in enumerate(times):
        # Calls a full window apart (to float rounding) are in different windows.
        while times[j] <= t - window + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(1, 12),
    # Millisecond arrivals: the clock's resolution, not float-rounding puzzles.
    arrivals=st.lists(st.integers(0, 300_000).map(lambda ms: ms / 1000), min_size=1, max_size=60),
    model=st.sampled_from(["window", "smooth"]),
)
def test_never_more_than_limit_in_any_window(
    limit: int, arrivals: list[float], model: RateModel
) -> None:
    times = _admissions(limit, 60.0, arrivals, model=model)
    assert len(times) == len(arrivals)
    assert _max_in_window(times, 60.0) <= limit


def test_window_model_spends_a_whole_window_at_once() -> None:
    times = _admissions(10, 60.0, [0.0] * 25)
    assert times[:10] == [0.0] * 10  # a small batch goes out together
    assert times[10:20] == [60.0] * 10
    assert times[20:] == [120.0] * 5


def test_smooth_model_spaces_calls_evenly() -> None:
    times = _admissions(6, 60.0, [0.0] * 4, model="smooth")
    assert times == [0.0, 10.0, 20.0, 30.0]


def test_margin_keeps_each_call_for_window_plus_margin() -> None:
    times = _admissions(2, 60.0, [0.0, 0.0, 0.0], margin=1.5)
    assert times == [0.0, 0.0, 61.5]


async def _calls(gate: RateGate, n: int, *, refused: float | None = None) -> None:
    """`n` calls answered at once; the last refused with a `refused` s hint when given."""
    for k in range(n):
        await gate.acquire()
        if refused is not None and k == n - 1:
            gate.rate_limited(refused)
        gate.finished()


def test_429_pauses_everyone_and_learns_what_the_server_accepted() -> None:
    # 4 calls accepted at t=0, the 5th refused at t=10 with a 30 s reset: nobody
    # goes before t=40, the quota becomes 4 per 40 s (the reset says the server
    # counts from t=0), and the refused call is not spent, so 4 calls go at the
    # reset (were it logged at t=10, one of them would wait until t=50).
    async def main() -> tuple[QuotaStats, list[float]]:
        gate = RateGate(8, 60.0, margin=0.0, clock=trio.current_time)
        await _calls(gate, 4)
        await trio.sleep(10.0)
        await _calls(gate, 1, refused=30.0)
        times: list[float] = []

        async def one() -> None:
            await _calls(gate, 1)
            times.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(one)
        return gate.quota(), sorted(times)

    quota, times = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    # The hint (a reset 40 s on) never teaches a window shorter than the declared
    # one: the four go when the first calls leave the declared window, at t=60.
    assert (quota.limit, quota.window, quota.rate_limited) == (4, 60.0, 1)
    assert all(60.0 <= t < 60.1 for t in times[:4])
    assert all(t >= times[0] + 60.0 for t in times[4:])


def test_grows_back_one_call_after_quiet_windows() -> None:
    async def main() -> tuple[int, int]:
        gate = RateGate(8, 60.0, margin=0.0, clock=trio.current_time)
        await _calls(gate, 5, refused=1.0)
        cut = gate.effective_limit or 0
        await trio.sleep(400.0)
        return cut, gate.effective_limit or 0

    cut, later = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert cut == 4
    assert later == 5  # one call above the learned quota, never the whole declared 8 at once


def test_coarse_hint_waits_a_second_more_and_a_past_one_backs_off() -> None:
    async def main() -> tuple[float, float, float]:
        gate = RateGate(8, 60.0, margin=0.0, clock=trio.current_time)
        await _calls(gate, 2, refused=5.0)
        exact = gate.stats().paused_until
        coarse_gate = RateGate(8, 60.0, margin=0.0, clock=trio.current_time)
        await gate_call_coarse(coarse_gate)
        coarse = coarse_gate.stats().paused_until
        past_gate = RateGate(8, 60.0, margin=0.0, clock=trio.current_time)
        await _calls(past_gate, 2, refused=0.0)
        return exact, coarse, past_gate.stats().paused_until

    async def gate_call_coarse(gate: RateGate) -> None:
        await _calls(gate, 1)
        await gate.acquire()
        gate.rate_limited(5.0, coarse=True)
        gate.finished()

    exact, coarse, past = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert 5.0 <= exact < 5.1
    assert 6.0 <= coarse < 6.1  # reset + 1 s: the hint may be up to a second early
    assert past > 0.0  # a reset in the past is never "retry now"


def test_auto_starts_from_one_call_and_doubles() -> None:
    async def main() -> list[int | None]:
        gate = RateGate(None, 60.0, margin=0.0, clock=trio.current_time, auto=True)
        seen = [gate.effective_limit]
        await _calls(gate, 1)
        seen.append(gate.effective_limit)
        await _calls(gate, 2)
        seen.append(gate.effective_limit)
        return seen

    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) == [1, 2, 4]


def test_higher_priority_waiters_go_first() -> None:
    order: list[str] = []

    async def main() -> None:
        gate = RateGate(1, 60.0, margin=0.0, clock=trio.current_time)
        await gate.acquire()  # the window is now full until t=60
        gate.finished()  # the call is answered at once

        async def call(name: str, priority: int, delay: float) -> None:
            await trio.sleep(delay)
            await gate.acquire(priority)
            gate.finished()  # the call is answered at once
            order.append(name)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "submit", 1, 1.0)
            nursery.start_soon(call, "status", 2, 2.0)
            nursery.start_soon(call, "result", 3, 3.0)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert order == ["result", "status", "submit"]


def test_unlimited_gate_admits_at_once() -> None:
    times = _admissions(1, 60.0, [])
    assert times == []

    async def main() -> float:
        gate = RateGate(None, clock=trio.current_time)
        for _ in range(100):
            await gate.acquire()
            gate.finished()  # the call is answered at once
        return trio.current_time()

    assert trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) == 0.0


def test_cancelled_waiter_leaves_the_queue() -> None:
    async def main() -> float:
        gate = RateGate(1, 60.0, margin=0.0, clock=trio.current_time)
        await gate.acquire()
        gate.finished()  # the call is answered at once
        with trio.move_on_after(5.0):
            await gate.acquire(priority=5)  # gives up at t=5
            gate.finished()  # the call is answered at once
        await gate.acquire(priority=0)  # must not wait behind the cancelled one forever
        gate.finished()  # the call is answered at once
        return trio.current_time()

    assert math.isclose(trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0)), 60.0)


def test_history_from_an_earlier_run_fills_the_window() -> None:
    async def main() -> list[float]:
        # An earlier run made 3 calls 10 s ago; the budget is 4 per 60 s.
        gate = RateGate(4, 60.0, margin=0.0, clock=trio.current_time, history=[10.0] * 3)
        times = []
        for _ in range(3):
            await gate.acquire()
            gate.finished()
            times.append(trio.current_time())
        return times

    times = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert times == [0.0, 50.0, 50.0]  # one slot left now, the rest when the old calls age out


def test_finished_calls_are_reported_for_the_next_run() -> None:
    seen: list[float] = []

    async def main() -> None:
        gate = RateGate(2, 60.0, clock=trio.current_time, on_finished=lambda: seen.append(1.0))
        await gate.acquire()
        gate.finished()
        gate.finished()  # a stray second call of finished() counts nothing

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert seen == [1.0]


def test_a_reset_hint_in_the_past_makes_no_hot_loop() -> None:
    # Every call is refused with a reset already past (a wait of 0 s): the gate
    # must back off, not admit again at once, whoever is waiting.
    sends: list[float] = []

    async def caller(gate: RateGate) -> None:
        for _ in range(10):
            await gate.acquire()
            sends.append(trio.current_time())
            gate.rate_limited(0.0)
            gate.finished()

    async def main() -> None:
        gate = RateGate(8, 60.0, margin=0.0, clock=trio.current_time)
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(caller, gate)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(sends) == 40
    per_second: dict[int, int] = {}
    for t in sends:
        per_second[math.floor(t)] = per_second.get(math.floor(t), 0) + 1
    assert max(per_second.values()) <= 4  # the first burst only; then one at a time
    assert sends[-1] - sends[0] > 30.0  # backed off, not a loop of 0 s waits
