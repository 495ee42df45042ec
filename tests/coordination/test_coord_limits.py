"""The shared rate gate and credit guard against a real Redis, several workers in-process.

Every assertion is on what Redis recorded (admission times from its own
clock, the run's credit figures), never on how long something took.
"""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import pytest
from coord_helpers import manifest_of, workers

from benchmarks.local_redis import LocalRedis
from runner.emulator.log import most_in_window
from runner.money import micros
from runner.scheduling.scheduler import SchedulerConfig

pytestmark = pytest.mark.anyio

WINDOW = 0.4
MARGIN = 0.05


max_in_window = most_in_window


async def test_three_workers_never_pass_the_limit_together(tmp_path: Path, redis_url: str) -> None:
    config = SchedulerConfig(rpm=3, window=WINDOW, margin=MARGIN)
    manifest = manifest_of(tmp_path, 1)
    admitted: list[float] = []
    async with workers(redis_url, manifest, 3, tmp_path, config=config) as joined:

        async def caller(i: int) -> None:
            at = await joined[i % 3].gate.admit(priority=i % 2)
            assert at is not None
            admitted.append(at)

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(caller, i)
    assert len(admitted) == 10
    # Windows of the budget's own length: at most 3 admissions, whoever made them.
    assert max_in_window(admitted, WINDOW + MARGIN) <= 3
    # ... and a whole window's allowance may go at once (a burst of R).
    assert max_in_window(admitted, WINDOW / 4) == 3


async def test_a_call_counts_from_its_end_however_late_it_went_out(
    tmp_path: Path, redis_url: str
) -> None:
    config = SchedulerConfig(rpm=1, window=1.0, margin=MARGIN)
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 2, tmp_path, config=config) as (a, b):
        first = await a.gate.admit()
        await anyio.sleep(0.3)  # the call itself: a slow network, a busy machine
        a.gate.finished()
        second = await b.gate.admit()
    assert first is not None and second is not None
    # The server saw the first call at some time up to its end: one span after that.
    assert second - first >= 0.3 + 1.0 + MARGIN


async def test_smooth_model_spaces_admissions_across_workers(
    tmp_path: Path, redis_url: str
) -> None:
    config = SchedulerConfig(rpm=4, window=WINDOW, margin=MARGIN, rate_model="smooth")
    manifest = manifest_of(tmp_path, 1)
    admitted: list[float] = []
    async with workers(redis_url, manifest, 2, tmp_path, config=config) as joined:

        async def caller(i: int) -> None:
            at = await joined[i % 2].gate.admit()
            assert at is not None
            admitted.append(at)

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(caller, i)
    gaps = [b - a for a, b in zip(sorted(admitted), sorted(admitted)[1:], strict=False)]
    assert min(gaps) >= (WINDOW + MARGIN) / 4 - 1e-6


async def test_a_429_met_by_one_worker_pauses_the_others(tmp_path: Path, redis_url: str) -> None:
    config = SchedulerConfig(rpm=50, window=WINDOW, margin=MARGIN)
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 2, tmp_path, config=config) as (one, two):
        first = await one.gate.admit()
        one.gate.rate_limited(0.3)
        one.gate.finished()
        await one.gate.recorded()  # the refusal is in the key's stream
        second = await two.gate.admit()
    assert first is not None and second is not None
    assert second - first >= 0.3


async def test_what_one_worker_learns_every_worker_applies(tmp_path: Path, redis_url: str) -> None:
    # A longer window than the other tests: the learned quota counts the calls of
    # the window before the 429, which a busy machine must not stretch past it.
    window = 3.0
    config = SchedulerConfig(rpm=8, window=window, margin=MARGIN)
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 2, tmp_path, config=config) as (one, two):
        # Three accepted calls of the second worker, then a 429 storm met by the
        # first: two calls in flight together, answered 429 (one signal).
        for _ in range(3):
            await two.gate.acquire()
            two.gate.finished()
        both_sent = anyio.Event()
        sent = [0]

        async def refused() -> None:
            await one.gate.acquire()
            sent[0] += 1
            if sent[0] == 2:
                both_sent.set()
            await both_sent.wait()
            one.gate.rate_limited(0.05)
            one.gate.finished()

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(refused)
                tg.start_soon(refused)
        await one.gate.recorded()
        await two.gate.recorded()
        taught = [(await w.gate.sync()).limit for w in (one, two)]
        # Under the learned quota, the two together admit 3 per span, not 8.
        admitted: list[float] = []

        async def caller(i: int) -> None:
            gate = (one, two)[i % 2].gate
            at = await gate.admit()
            assert at is not None
            admitted.append(at)
            applied.append(gate.effective_limit or 0)
            gate.finished()

        applied: list[int] = []
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(caller, i)
        await one.gate.recorded()
        await two.gate.recorded()
        after = {(await w.gate.sync()).limit for w in (one, two)}
    assert taught == [3, 3]  # the calls both workers got accepted before the 429
    # Both workers hold the same quota (4 when the growth's extra call was accepted).
    assert len(after) == 1 and after <= {3, 4}
    # Two quiet windows after the 429 the learner tries one call more (quota.py's
    # careful growth): the limit each admission was made under, never the declared 8.
    assert max(applied) <= 4
    # The learned window may be shorter than the declared one (quota.py learns it
    # from the accepted calls and the reset hint), so the declared span holds at
    # most the declared cap, the hard limit of every window of its length.
    assert max_in_window(admitted, window + MARGIN) <= config.rpm


async def test_reservations_of_all_workers_stay_within_one_budget(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 1)
    outcomes: list[bool] = []
    async with workers(redis_url, manifest, 3, tmp_path, budget=0.15) as joined:

        async def reserve(i: int) -> None:
            outcomes.append(await joined[i % 3].guard.reserve(f"job{i}", micros(0.02)))

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(reserve, i)
        assert outcomes.count(True) == 7  # 7 x $0.02 = $0.14 <= $0.15 < 8 x $0.02
        run = joined[0].guard
        await run.refresh()
        assert run.stats().reserved == micros(0.14)
        assert run.stats().budget == micros(0.15)


async def test_settle_refund_and_ambiguity_are_counted_once_for_the_run(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 2, tmp_path, budget=1.0) as (a, b):
        for key in ("j1", "j2", "j3", "j4"):
            assert await a.guard.reserve(key, micros(0.02))
        # The job taken over by b is settled against a's reservation.
        assert await b.guard.settle("j1", micros(0.015)) == micros(0.015)
        assert await a.guard.settle("j2", None) == micros(0.02)
        await b.guard.refund("j3")
        await a.guard.mark_ambiguous("j4")
        # Reconciling an outcome already counted changes nothing.
        await b.guard.reconcile("j1", "completed", micros(0.015))
        s = b.guard.stats()
    assert (s.reserved, s.spent, s.ambiguous, s.refunded) == (0, 35_000, 20_000, 20_000)


async def test_a_stop_reaches_every_worker(tmp_path: Path, redis_url: str) -> None:
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 2, tmp_path) as (a, b):
        await a.guard.stop("the API refused a submit for lack of credits (406)")
        assert not await b.guard.reserve("j", micros(0.01))
        assert b.guard.stopped == "the API refused a submit for lack of credits (406)"
        assert b.guard.stats().stopped == b.guard.stopped


async def test_random_operations_of_three_workers_never_commit_past_the_budget(
    tmp_path: Path, redis_url: str
) -> None:
    rng = random.Random(7)
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 3, tmp_path, budget=0.2) as joined:

        async def worker(guard_index: int) -> None:
            guard = joined[guard_index].guard
            for _ in range(40):
                key = f"j{rng.randrange(12)}"
                op = rng.choice(["reserve", "reserve", "settle", "refund", "ambiguous"])
                if op == "reserve":
                    await guard.reserve(key, micros(rng.choice([0.02, 0.03, 0.05])))
                elif op == "settle":
                    await guard.settle(key, None)
                elif op == "refund":
                    await guard.refund(key)
                else:
                    await guard.mark_ambiguous(key)
                s = guard.stats()
                assert s.committed <= micros(0.2)  # exact
                assert s.reserved >= 0

        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(worker, i)


async def test_losing_redis_degrades_to_a_local_share(
    tmp_path: Path, redis_url: str, redis_server: LocalRedis
) -> None:
    config = SchedulerConfig(rpm=4, window=WINDOW, margin=MARGIN)
    manifest = manifest_of(tmp_path, 1)
    stops: list[str] = []
    async with workers(redis_url, manifest, 2, tmp_path, config=config, budget=1.0) as (a, _):
        a.link.on_lost(stops.append)
        await a.beat()  # sees b alive
        assert a.peers == 2
        assert await a.guard.reserve("j1", micros(0.02))
        redis_server.kill()
        # No new reservation without the coordinator; a settlement is kept locally.
        assert not await a.guard.reserve("j2", micros(0.02))
        assert await a.guard.settle("j1", None) == micros(0.02)
        assert a.lost is not None and "lost the coordinator" in a.lost
        assert stops == [a.lost]
        assert a.guard.stats().stopped is None  # not a credit stop: exit 1, not 3
        # The gate falls back to this worker's share (4 // 2 live workers = 2).
        assert await a.gate.admit() is None
        assert a.gate.local_share == 2
