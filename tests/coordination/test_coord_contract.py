"""One contract for each limit: the same arrival sequences through the local and the shared one.

The single-process limits (runner/scheduling/rate.py's RateGate and
credits.py's CreditGuard) and the shared ones (runner.coordination, in
Redis) must answer every sequence alike: a table of sequences, each run
through both. The shared gate learns with the local gate's own QuotaLearner
(replayed by every worker from one Redis stream), so a 429 storm teaches
both the same quota: there is no second copy of the rule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio.testing
from coord_helpers import manifest_of, workers

from runner.coordination.belief import CHECKPOINT_EVERY
from runner.money import maybe_micros, micros
from runner.scheduling.credits import CreditGuard, Credits
from runner.scheduling.quota import QuotaStats
from runner.scheduling.rate import RateGate
from runner.scheduling.scheduler import SchedulerConfig

pytestmark = pytest.mark.anyio

KINDS = ["local", "shared"]
WINDOW = 0.3
MARGIN = 0.05
CALL_S = 0.01  # how long a call of a rate sequence takes to be answered

Op = tuple[Any, ...]

# (name, budget USD, [(op, key, amount-or-reason, expected answer)], final
# (reserved, spent, ambiguous, refunded)). Expected None: the op answers nothing.
SEQUENCES: list[tuple[str, float | None, list[Op], tuple[float, float, float, float]]] = [
    (
        "zero holds",
        1.0,
        [
            ("reserve", "a", 0.0, True),
            ("settle", "a", 0.0, 0.0),
            ("refund", "never-held", None, None),
            ("ambiguous", "never-held-either", None, None),
            ("reserve", "b", 0.02, True),
        ],
        (0.02, 0.0, 0.0, 0.0),
    ),
    (
        "settle twice",
        1.0,
        [
            ("reserve", "a", 0.02, True),
            ("settle", "a", 0.018, 0.018),
            ("settle", "a", 0.018, 0.0),  # a late copy of the same end: refused
        ],
        (0.0, 0.018, 0.0, 0.0),
    ),
    (
        "settle without a reported cost",
        1.0,
        [("reserve", "a", 0.02, True), ("settle", "a", None, 0.02)],
        (0.0, 0.02, 0.0, 0.0),
    ),
    (
        "refund twice",
        1.0,
        [("reserve", "a", 0.02, True), ("refund", "a", None, None), ("refund", "a", None, None)],
        (0.0, 0.0, 0.0, 0.02),
    ),
    (
        "the budget's edge",
        0.05,
        [
            ("reserve", "a", 0.02, True),
            ("reserve", "b", 0.02, True),
            ("reserve", "c", 0.02, False),
            ("settle", "a", 0.01, 0.01),
            ("reserve", "c", 0.02, True),  # 0.01 + 0.02 + 0.02 fits 0.05 exactly
            ("reserve", "c", 0.02, True),  # once per job
        ],
        (0.04, 0.01, 0.0, 0.0),
    ),
    (
        "ambiguous holds count",
        0.05,
        [
            ("reserve", "a", 0.03, True),
            ("ambiguous", "a", None, None),
            ("settle", "a", 0.03, 0.0),  # nothing held any more
            ("reserve", "b", 0.03, False),  # 0.03 possibly spent + 0.03 > 0.05
        ],
        (0.0, 0.0, 0.03, 0.0),
    ),
    (
        "a stop ends reservations, not holds",
        1.0,
        [
            ("reserve", "a", 0.02, True),
            ("stop", "", "credit budget reached", None),
            ("reserve", "b", 0.02, False),
            ("hold", "c", 0.02, None),  # re-attached: it may be billed whatever the stop
        ],
        (0.04, 0.0, 0.0, 0.0),
    ),
]


@asynccontextmanager
async def guard_of(
    kind: str, budget: float | None, tmp: Path, url: str | None
) -> AsyncIterator[Credits]:
    if kind == "local":
        yield CreditGuard(maybe_micros(budget))
        return
    assert url is not None
    manifest = manifest_of(tmp, 1)
    async with workers(url, manifest, 1, tmp, budget=budget) as (coord,):
        yield coord.guard


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(kind: str) -> Any:
    """The local kind on trio's virtual clock; the shared one on real time (Redis's clock)."""
    if kind == "local":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return "asyncio"


@pytest.fixture
def url(kind: str, request: pytest.FixtureRequest) -> str | None:
    # Only the shared kind needs Redis (and skips without it).
    return str(request.getfixturevalue("redis_url")) if kind == "shared" else None


Sequence = tuple[str, float | None, list[Op], tuple[float, float, float, float]]


@pytest.mark.parametrize("sequence", SEQUENCES, ids=[s[0] for s in SEQUENCES])
async def test_credit_sequences_answer_alike(
    kind: str, url: str | None, tmp_path: Path, sequence: Sequence
) -> None:
    _, budget, ops, final = sequence
    # The table speaks USD, as people do; the guards take and answer µ$.
    async with guard_of(kind, budget, tmp_path, url) as guard:
        for op, key, arg, expected in ops:
            if op == "reserve":
                assert await guard.reserve(key, micros(arg)) is expected, (op, key)
            elif op == "settle":
                assert await guard.settle(key, maybe_micros(arg)) == micros(expected), (op, key)
            elif op == "refund":
                await guard.refund(key)
            elif op == "ambiguous":
                await guard.mark_ambiguous(key)
            elif op == "hold":
                await guard.hold(key, micros(arg))
            else:
                await guard.stop(arg)
        s = guard.stats()
        if any(o[0] == "stop" for o in ops):
            assert s.stopped == "credit budget reached"
    assert (s.reserved, s.spent, s.ambiguous, s.refunded) == tuple(micros(v) for v in final)


@asynccontextmanager
async def gate_of(
    kind: str, limit: int | None, tmp: Path, url: str | None, *, window: float = WINDOW
) -> AsyncIterator[Any]:
    """The gate of `kind`: a local RateGate, or one worker's SharedRateGate (None: auto)."""
    auto = limit is None
    if kind == "local":
        yield RateGate(limit, window, margin=MARGIN, auto=auto)
        return
    assert url is not None
    config = SchedulerConfig(rpm=limit, window=window, margin=MARGIN, rpm_auto=auto)
    async with workers(url, manifest_of(tmp, 1), 1, tmp, config=config) as (coord,):
        yield coord.gate


async def learned(gate: Any) -> QuotaStats:
    """What the gate's learner believes once every outcome reached it."""
    if isinstance(gate, RateGate):
        return gate.quota()
    await gate.recorded()
    stats: QuotaStats = await gate.sync()
    return stats


# (name, declared limit, steps, expected (limit, learned, cuts, rate_limited)).
# A step is (calls, answer): `calls` admitted together, then each answered
# "ok" or with a 429 whose reset hint is `answer` seconds away (0: a reset in
# the past).
GateStep = tuple[int, str | float]
GATE_SEQUENCES: list[tuple[str, int, list[GateStep], tuple[int, bool, int, int]]] = [
    ("the limit told the truth", 8, [(3, "ok"), (2, "ok")], (8, False, 0, 0)),
    (
        "a 429 storm: one cut, to what the server accepted",
        8,
        [(5, "ok"), (3, 0.2)],
        (5, True, 1, 3),
    ),
    (
        "a storm whose resets are in the past: the same cut (and a back-off, not a retry now)",
        8,
        [(2, "ok"), (4, 0.0)],
        (2, True, 1, 4),
    ),
    ("a refused first call: the quota is at least one", 8, [(1, 0.1)], (1, True, 1, 1)),
]


async def burst(gate: Any, count: int, answer: str | float) -> None:
    """`count` calls admitted, all in flight before the first is answered `answer`."""
    sent = 0
    all_sent = anyio.Event()

    async def call() -> None:
        nonlocal sent
        await gate.acquire()
        sent += 1
        if sent == count:
            all_sent.set()
        await all_sent.wait()
        # The call itself takes time: its answer comes after it was sent (on the
        # virtual clock too, where a refusal at the very instant of the send
        # would read as sent after the cut it answers).
        await anyio.sleep(CALL_S)
        if answer != "ok":
            gate.rate_limited(float(answer))
        gate.finished()

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(call)


@pytest.mark.parametrize("sequence", GATE_SEQUENCES, ids=[s[0] for s in GATE_SEQUENCES])
async def test_rate_sequences_are_learned_alike(
    kind: str, url: str | None, tmp_path: Path, sequence: tuple[str, int, list[GateStep], Any]
) -> None:
    _, limit, steps, expected = sequence
    async with gate_of(kind, limit, tmp_path, url) as gate:
        for count, answer in steps:
            with anyio.fail_after(10):
                await burst(gate, count, answer)
        stats = await learned(gate)
    assert (stats.limit, stats.learned, stats.cuts, stats.rate_limited) == expected


async def test_a_burst_of_the_limit_then_one_more_a_span_after_the_first_end(
    kind: str, url: str | None, tmp_path: Path
) -> None:
    async with gate_of(kind, 3, tmp_path, url) as gate:
        ends = []
        for _ in range(3):
            await gate.acquire()
        for _ in range(3):
            ends.append(anyio.current_time())
            gate.finished()
        await gate.acquire()
        admitted = anyio.current_time()
    # Each call counts from its end: the fourth waits a whole span after the first.
    assert admitted - ends[0] >= WINDOW + MARGIN


# `requests_per_minute: auto`: (name, answers of calls made one after another,
# expected (limit, learned, cuts, rate_limited)). An answer is "ok" or the
# reset hint of a 429 in seconds (0: a reset in the past). The window is long
# enough that every call of a sequence falls in one (real time on Redis's side).
AUTO_WINDOW = 5.0
AUTO_SEQUENCES: list[tuple[str, list[str | float], tuple[int, bool, int, int]]] = [
    ("from one call, doubled per round trip", ["ok"] * 7, (8, False, 0, 0)),
    ("the first 429 ends the growth at what was accepted", ["ok"] * 5 + [0.2], (5, True, 1, 1)),
    ("a reset in the past: the same cut", ["ok"] * 3 + [0.0], (3, True, 1, 1)),
    ("a refused first call: the quota is one", [0.1], (1, True, 1, 1)),
]


async def one_call(gate: Any, answer: str | float) -> None:
    """One call admitted, answered `answer` a moment later, ended."""
    await gate.acquire()
    await anyio.sleep(CALL_S)
    if answer != "ok":
        gate.rate_limited(float(answer))
    gate.finished()


@pytest.mark.parametrize("sequence", AUTO_SEQUENCES, ids=[s[0] for s in AUTO_SEQUENCES])
async def test_auto_sequences_are_learned_alike(
    kind: str, url: str | None, tmp_path: Path, sequence: tuple[str, list[str | float], Any]
) -> None:
    _, answers, expected = sequence
    async with gate_of(kind, None, tmp_path, url, window=AUTO_WINDOW) as gate:
        first = gate.effective_limit
        for answer in answers:
            with anyio.fail_after(10):
                await one_call(gate, answer)
        stats = await learned(gate)
    assert first == 1  # the whole group starts from one call
    assert (stats.limit, stats.learned, stats.cuts, stats.rate_limited) == expected


async def test_a_long_run_keeps_the_stream_short_and_learns_alike(
    kind: str, url: str | None, tmp_path: Path
) -> None:
    # 150 calls grow the allowance to 256, the 151st is refused: the quota is
    # the 150 accepted (one window holds them all). The stream of a shared
    # gate is trimmed to its last checkpoint meanwhile, and a worker joining
    # only now learns the same belief from it.
    answers: list[str | float] = ["ok"] * 150 + [0.2]
    async with gate_of(kind, None, tmp_path, url, window=60.0) as gate:
        for answer in answers:
            with anyio.fail_after(10):
                await one_call(gate, answer)
        stats = await learned(gate)
        if kind == "shared":
            length = gate._link.client.xlen(gate._keys.events)
            (tmp_path / "late").mkdir()
            manifest = manifest_of(tmp_path / "late", 1)
            config = SchedulerConfig(rpm=None, window=60.0, margin=MARGIN, rpm_auto=True)
            async with workers(url, manifest, 1, tmp_path / "late", config=config) as (late,):
                joined = await late.gate.sync()
            # 301 events (150 calls started and answered, one refused): kept to
            # about one checkpoint's worth.
            assert length <= CHECKPOINT_EVERY + 10
            assert joined == stats
    assert (stats.limit, stats.learned, stats.cuts, stats.rate_limited) == (150, True, 1, 1)
