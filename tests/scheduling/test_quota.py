"""The quota learner: table cases, and a simulated client against the emulator's limiters.

The simulation is a discrete-event loop on virtual time: a client that sends
as the learner allows (a sliding log of `limit` accepted calls per `window +
margin`, paused until `paused_until`, one call alone when `solo`) and as the
declared cap allows (a sliding log of every call sent, `declared` per declared
`window + margin`: the gate's two constraints), and a server that is
one of the emulator's own limiters (runner.emulator.limits). Counts, not
timings, are asserted: 429s per phase, calls per window, jobs done.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

import pytest

from runner.emulator.limits import FixedWindow, Limiter, SlidingLog
from runner.scheduling.quota import QuotaLearner, QuotaPolicy

RTT = 0.05  # seconds from send to answer


def test_before_any_429_the_declared_limit_holds() -> None:
    learner = QuotaLearner(QuotaPolicy(declared=30))
    assert learner.limit(0.0) == 30
    for t in range(10):
        learner.accepted(float(t), t + RTT)
    assert learner.limit(100.0) == 30
    assert learner.stats().learned is False


def test_a_429_cuts_to_what_the_server_accepted_once_per_burst() -> None:
    learner = QuotaLearner(QuotaPolicy(declared=30))
    for _ in range(10):
        learner.accepted(0.0, RTT)
    for _ in range(20):  # the whole burst's refusals: one signal
        learner.refused(0.0, RTT, reset_at=60.0, coarse=False)
    assert learner.limit(1.0) == 10
    assert learner.stats().cuts == 1
    assert learner.stats().rate_limited == 20
    assert 60.0 <= learner.paused_until <= 60.1


def test_late_answers_of_the_cut_window_raise_the_quota() -> None:
    learner = QuotaLearner(QuotaPolicy(declared=30))
    learner.accepted(0.0, RTT)
    learner.refused(0.0, RTT, reset_at=6.0, coarse=False)
    assert learner.limit(0.1) == 1
    for _ in range(9):
        learner.accepted(0.0, 2 * RTT)
    assert learner.limit(0.2) == 10


def test_a_coarse_reset_is_waited_past_by_a_second() -> None:
    learner = QuotaLearner(QuotaPolicy(declared=30))
    learner.accepted(0.0, RTT)
    learner.refused(0.0, RTT, reset_at=6.0, coarse=True)
    assert 7.0 <= learner.paused_until <= 7.1


@pytest.mark.parametrize("reset_at", [None, 0.0, RTT, -5.0, math.inf, math.nan])
def test_a_past_zero_or_missing_reset_backs_off_exponentially(reset_at: float | None) -> None:
    learner = QuotaLearner(QuotaPolicy(declared=30, backoff=1.0, backoff_cap=8.0))
    waits = []
    now = RTT
    for _ in range(6):
        learner.refused(now - RTT, now, reset_at=reset_at, coarse=False)
        waits.append(learner.paused_until - now)
        now = learner.paused_until + RTT
    assert all(w > 0 for w in waits)  # never "retry now"
    assert waits[0] <= 1.0 and waits[3] >= 4.0  # doubling, with jitter in [0.5, 1]
    assert max(waits) <= 8.0  # capped


def test_an_isolated_429_well_under_a_learned_quota_does_not_cut() -> None:
    learner = QuotaLearner(QuotaPolicy(declared=30))
    for _ in range(10):
        learner.accepted(0.0, RTT)
    learner.refused(0.0, RTT, reset_at=60.0, coarse=False)
    assert learner.limit(1.0) == 10
    learner.accepted(61.0, 61.0 + RTT)
    learner.refused(61.5, 61.5 + RTT, reset_at=62.0, coarse=False)  # 1 of 10 in the window
    assert learner.limit(62.0) == 10
    assert learner.stats().cuts == 1


def test_growth_is_one_call_above_the_quota_after_two_quiet_windows() -> None:
    learner = QuotaLearner(QuotaPolicy(declared=12, window=60.0))
    for _ in range(10):
        learner.accepted(0.0, RTT)
    learner.refused(0.0, RTT, reset_at=60.0, coarse=False)
    assert learner.limit(100.0) == 10
    assert learner.limit(RTT + 120.0) == 11  # two quiet windows: one more may be tried
    # The server takes 11 in one window: 11 is the quota now, and the next +1 waits again.
    for _ in range(11):
        learner.accepted(130.0, 130.0 + RTT)
    assert learner.limit(131.0) == 11
    assert learner.limit(131.0 + 120.0) == 12
    for _ in range(12):
        learner.accepted(260.0, 260.0 + RTT)
    assert learner.limit(1000.0) == 12  # never above the declared limit


def test_auto_doubles_per_round_trip_until_the_first_429() -> None:
    learner = QuotaLearner(QuotaPolicy(declared=None, auto=True))
    seen = [learner.limit(0.0)]
    t = 0.0
    for _ in range(4):
        for _ in range(seen[-1] or 0):
            learner.accepted(t, t + RTT)
        t += RTT
        seen.append(learner.limit(t))
    assert seen == [1, 2, 4, 8, 16]


def test_the_window_is_learned_from_the_reset_hint_longer_or_shorter_than_declared() -> None:
    learner = QuotaLearner(QuotaPolicy(declared=200, window=6.0))
    for _ in range(20):
        learner.accepted(0.0, RTT)
    learner.refused(0.0, RTT, reset_at=10.0, coarse=False)
    assert learner.window == pytest.approx(10.0)
    assert learner.limit(1.0) == 20
    assert learner.stats().confirmed is False
    short = QuotaLearner(QuotaPolicy(declared=200, window=60.0))
    short.accepted(0.0, RTT)
    short.refused(0.0, RTT, reset_at=6.0, coarse=False)
    # A shorter window is learned too: the gate's declared cap (rate.py) is what
    # keeps the run within the declared R per minute, not the learner.
    assert short.window == pytest.approx(6.0)
    assert short.limit(7.0) == 1


# -- a simulated client against the emulator's limiters ---------------------


@dataclass
class Outcome:
    done: int = 0
    refused: int = 0
    refused_after_first_window: int = 0
    makespan: float = 0.0
    accepted_at: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)


def simulate(
    server: Limiter,
    policy: QuotaPolicy,
    jobs: int,
    *,
    coarse: bool = False,
    margin: float = 1.0,
    first_window: float = 60.0,
    seed: int = 1,
    max_in_flight: int | None = None,
) -> tuple[Outcome, QuotaLearner]:
    """Send `jobs` calls as the learner allows; each is answered RTT later by `server`.

    `max_in_flight`: calls on the wire at once (the runner's max_submits_in_flight).
    """
    learner = QuotaLearner(policy, rng=random.Random(seed))
    out = Outcome()
    log: list[float] = []  # the learned constraint's log: accepted calls' answer times
    sent: list[float] = []  # the declared cap's log: every call's answer time
    answers: list[tuple[float, int, float]] = []  # (answer time, seq, sent_at)
    seq = 0
    pending = jobs
    in_flight = 0
    now = 0.0
    for _ in range(200_000):
        if out.done == jobs:
            break
        # Send everything the learner allows now.
        while pending and now >= learner.paused_until:
            limit = learner.limit(now)
            span = learner.window + margin
            log = [t for t in log if t + span > now]
            sent = [t for t in sent if t + policy.window + margin > now]
            # The learned constraint, the declared cap, a probe alone, the wire.
            if (
                (limit is not None and len(log) + in_flight >= limit)
                or (policy.declared is not None and len(sent) + in_flight >= policy.declared)
                or (learner.solo(now) and in_flight)
                or (max_in_flight is not None and in_flight >= max_in_flight)
            ):
                break
            learner.started(now)
            out.sent_at.append(now)
            heapq.heappush(answers, (now + RTT, seq, now))
            seq += 1
            pending -= 1
            in_flight += 1
        # The next event: an answer, a pause ending, or a log slot freeing.
        candidates = [answers[0][0]] if answers else []
        if pending:
            candidates.append(max(now, learner.paused_until))
            span = learner.window + margin
            if log:
                candidates.append(log[0] + span)
            if sent:
                candidates.append(sent[0] + policy.window + margin)
        nxt = min(t for t in candidates if t > now) if any(t > now for t in candidates) else now
        now = nxt
        while answers and answers[0][0] <= now:
            at, _, sent_at = heapq.heappop(answers)
            in_flight -= 1
            sent.append(at)
            # The server decides when the call arrives (half way).
            if server.acquire(sent_at + RTT / 2) is None:
                out.done += 1
                out.accepted_at.append(sent_at)
                log.append(at)
                learner.accepted(sent_at, at)
            else:
                out.refused += 1
                if sent_at >= first_window:
                    out.refused_after_first_window += 1
                reset = _reset_hint(server, sent_at + RTT / 2)
                if coarse and reset is not None:
                    reset = math.floor(reset)
                learner.refused(sent_at, at, reset_at=reset, coarse=coarse)
                pending += 1
    out.makespan = now
    return out, learner


def _reset_hint(server: Limiter, arrived: float) -> float | None:
    # What the server would say: ask a copy of it (acquire refuses without counting).
    return server.acquire(arrived)


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_a_sliding_window_three_times_tighter_than_declared_with_coarse_hints() -> None:
    # The server: 20 per 6 s, sliding; the manifest said 60 per (scaled) 6 s window.
    server = SlidingLog(20, 6.0)
    out, learner = simulate(server, QuotaPolicy(declared=60, window=6.0), 200, coarse=True)
    assert out.done == 200
    # First window: at most (declared - real) refusals; afterwards, at most 2.
    first = out.refused - out.refused_after_first_window
    assert first <= 60 - 20 + 2
    assert out.refused_after_first_window <= 2
    assert learner.limit(out.makespan) in (20, 21)
    assert 6.0 <= learner.window <= 7.5
    # Every window of the server's length held at most its quota of accepted calls.
    assert max_in_window(out.accepted_at, 6.0) <= 20
    # 10 windows of 6 s; a whole-second hint costs up to 1 s of each window (the
    # learner cannot tell 6.0 from 6.9 s) and the gate's margin 1 s more.
    assert out.makespan <= (200 / 20 - 1) * (6.0 + 2.0) + 1.0


def test_a_fixed_minute_window_ten_times_tighter_started_mid_window() -> None:
    # The server: 10 per fixed UTC minute; the run starts 20 s into one; declared 100.
    server = FixedWindow(10, 60.0)

    class Shifted:
        def acquire(self, now: float) -> float | None:
            reset = server.acquire(now + 20.0)
            return None if reset is None else reset - 20.0

    out, learner = simulate(Shifted(), QuotaPolicy(declared=100, window=60.0), 60)
    assert out.done == 60
    assert out.refused - out.refused_after_first_window <= 100 - 10 + 2
    # A wrong first window estimate (40 s) costs one probe, not a window's worth.
    assert out.refused_after_first_window <= 2
    assert learner.limit(out.makespan) in (10, 11)


def test_auto_learns_an_unknown_quota_with_few_refusals() -> None:
    server = SlidingLog(12, 6.0)
    out, learner = simulate(
        server, QuotaPolicy(declared=None, window=60.0, auto=True), 120, coarse=True
    )
    assert out.done == 120
    # Doubling 1, 2, 4, 8 overshoots 12 by 3 once; each later try of one call
    # above the quota costs one 429, and the tries grow apart (2, 4, 8 windows).
    assert out.refused <= 3 + 3
    assert learner.limit(out.makespan) in (12, 13)


def test_a_short_server_window_under_a_declared_minute_is_used_within_the_cap() -> None:
    # The server: 20 per 6 s, sliding, whole-second hints; the manifest: 200 per
    # minute. The learned 20 per ~7 s is legal; the declared cap still holds.
    server = SlidingLog(20, 6.0)
    # (The runner puts at most 4 submits on the wire: the first burst's refusals
    # count against the declared cap, so a burst of 200 would cost the minute.)
    out, learner = simulate(
        server, QuotaPolicy(declared=200, window=60.0), 400, coarse=True, max_in_flight=4
    )
    assert out.done == 400
    assert 6.0 <= learner.window <= 7.5
    assert out.refused_after_first_window <= 2
    assert max_in_window(out.sent_at, 61.0) <= 200  # the declared cap, every send counted
    assert max_in_window(out.accepted_at, 6.0) <= 20
    # Paced by the server's window, not by a minute: 20 windows of at most 6 + 2 s.
    assert out.makespan <= (400 / 20) * (6.0 + 2.0)


@pytest.mark.parametrize("seed", range(5))
def test_fault_429s_with_short_hints_never_push_a_declared_minute_over(seed: int) -> None:
    # The server keeps the declared 50 per minute, but a fault answers 429 with a
    # 2 s reset now and then: a short window is learned, and the declared cap holds.
    real = FixedWindow(50, 60.0)
    rng = random.Random(seed)

    class Faulty:
        def acquire(self, now: float) -> float | None:
            if rng.random() < 0.1:
                return now + 2.0
            return real.acquire(now)

    out, _ = simulate(Faulty(), QuotaPolicy(declared=50, window=60.0), 300, seed=seed)
    assert out.done == 300
    assert out.refused > 0  # the faults did fire
    assert max_in_window(out.sent_at, 61.0) <= 50
