"""The rate gate on a virtual clock: no window ever holds more than the budget.

Two constraints hold together (rate.py): the declared cap over every call
sent, and the learned (quota, window) over accepted calls; the last tests
count both from the emulator's own limiters' view.
"""

from __future__ import annotations

import math

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.emulator.limits import FixedWindow, Limiter, SlidingLog
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
    # goes before t=40, and the quota becomes 4 per 40 s (the reset says the
    # server counts from t=0). Two constraints then hold together: the learned
    # one (4 accepted per 40 s: the refused call is not spent there) and the
    # declared cap (8 sent per 60 s, the refused call counted: it was sent).
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
    # A window shorter than the declared one is learned (40 s < 60 s).
    assert (quota.limit, quota.window, quota.rate_limited) == (4, 40.0, 1)
    # At the reset the declared cap has room for 3 (5 sent since t=0) ...
    assert all(40.0 <= t < 40.1 for t in times[:3])
    # ... one more when the t=0 calls leave the declared minute (the learned
    # window holds 3 of its 4) ...
    assert 60.0 <= times[3] < 60.1
    # ... and the rest when the t=40 calls leave the learned window.
    assert all(t >= times[0] + 40.0 for t in times[4:])


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


# -- both constraints, counted from the emulator's limiter's view ------------------


def _against_server(
    server: Limiter,
    declared: int,
    calls: int,
    *,
    coarse: bool,
    arrivals: list[float] | None = None,
    in_flight: int = 4,
) -> tuple[list[tuple[float, bool]], QuotaStats]:
    """`calls` callers (at `arrivals`, default all at t=0) send through one gate
    (declared per 60 s, margin 1 s) to `server`, at most `in_flight` on the wire
    (the runner's max_submits_in_flight); a refused call is sent again. Returns
    the server's log: (arrival time, accepted), and what the gate learned."""
    log: list[tuple[float, bool]] = []

    async def caller(gate: RateGate, wire: trio.CapacityLimiter, at: float) -> None:
        await trio.sleep(at)
        while True:
            async with wire:
                await gate.acquire()
                now = trio.current_time()
                reset = server.acquire(now)
                log.append((now, reset is None))
                if reset is not None:
                    hint = math.floor(reset) if coarse else reset
                    gate.rate_limited(hint - now, coarse=coarse)
                gate.finished()
            if reset is None:
                return

    async def main() -> QuotaStats:
        gate = RateGate(declared, 60.0, margin=1.0, clock=trio.current_time, seed=3)
        wire = trio.CapacityLimiter(in_flight)
        async with trio.open_nursery() as nursery:
            for at in arrivals or [0.0] * calls:
                nursery.start_soon(caller, gate, wire, at)
        return gate.quota()

    quota = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return log, quota


def test_a_20_per_6s_server_under_a_declared_200_per_minute_is_paced_by_its_window() -> None:
    # Issue #12's main case: a short learned window is legal under the declared
    # cap, so 200 jobs take about 10 server windows, not 10 declared minutes.
    log, quota = _against_server(SlidingLog(20, 6.0), 200, 200, coarse=True)
    sends = [t for t, _ in log]
    accepted = [t for t, ok in log if ok]
    assert len(accepted) == 200
    assert _max_in_window(sends, 61.0) <= 200  # the declared cap: every send counted
    assert 6.0 <= quota.window <= 7.5  # the server's window, learned to the second
    assert quota.limit in (20, 21)
    assert len(log) - len(accepted) <= 4 + 2  # the first 429 and the calls on the wire
    assert max(accepted) < 10 * (6.0 + 2.0)  # whole-second hints cost up to 2 s per window


@settings(max_examples=40, deadline=None)
@given(
    quota=st.integers(2, 12),
    server_window=st.sampled_from([2.0, 6.0, 30.0, 60.0]),
    loose=st.integers(1, 10),
    fixed=st.booleans(),
    coarse=st.booleans(),
    arrivals=st.lists(st.integers(0, 120_000).map(lambda ms: ms / 1000), min_size=1, max_size=50),
)
def test_both_constraints_hold_against_any_server_window(
    *,
    quota: int,
    server_window: float,
    loose: int,
    fixed: bool,
    coarse: bool,
    arrivals: list[float],
) -> None:
    # Whatever the server's window and however loose the declared limit, from
    # the server's log: the declared cap holds over every send (refused ones
    # too), every job gets through, and refusals stay few (no hot loop).
    declared = quota * loose
    server: Limiter = (
        FixedWindow(quota, server_window) if fixed else SlidingLog(quota, server_window)
    )
    log, _ = _against_server(server, declared, len(arrivals), coarse=coarse, arrivals=arrivals)
    sends = [t for t, _ in log]
    assert sum(ok for _, ok in log) == len(arrivals)
    assert _max_in_window(sends, 61.0) <= declared
    refused = len(log) - len(arrivals)
    assert refused <= 4 + len(arrivals) // 2
