"""Faults of a shared run with a defined outcome, against a real Redis (workers in-process).

Each test holds one fix of issue #18: it failed before the fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import pytest
from coord_helpers import BASE_URL, manifest_of, workers

from benchmarks.local_redis import LocalRedis
from runner.backends.base import Submission, submission_for
from runner.coordination import Coordination
from runner.coordination.claims import ClaimSource
from runner.coordination.handover import HandoverRules
from runner.coordination.status import coordinator_status
from runner.money import micros
from runner.scheduling.calls import Stopped
from runner.scheduling.scheduler import SchedulerConfig
from runner.store import Ledger

pytestmark = pytest.mark.anyio

WATCHDOG_S = 20.0  # far beyond what each test needs; a hang fails instead of blocking the suite
LEASE = 1.0  # the shortest allowed: take-overs in about a second of real time
WINDOW = 0.4
MARGIN = 0.05


async def test_the_fallback_gate_frees_a_slot_when_each_call_ends(
    tmp_path: Path, redis_url: str, redis_server: LocalRedis
) -> None:
    config = SchedulerConfig(rpm=4, window=0.3, margin=0.05)
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 2, tmp_path, config=config) as (a, _):
        await a.beat()
        redis_server.kill()
        calls = 0
        with anyio.fail_after(WATCHDOG_S):
            # Three times the fallback's share (4 // 2): each call's end frees its slot.
            for _ in range(6):
                assert await a.gate.admit() is None
                a.gate.finished()
                calls += 1
        assert a.gate.local_share == 2
    assert calls == 6


async def test_a_zero_hold_is_settled_and_refunded_without_losing_the_coordinator(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 1, tmp_path, budget=1.0) as (coord,):
        assert await coord.guard.reserve("free", micros(0.0))
        assert await coord.guard.settle("free", micros(0.0)) == 0
        await coord.guard.refund("never-reserved")  # holds nothing: "-0" before the fix
        await coord.guard.mark_ambiguous("never-reserved-either")
        assert coord.lost is None
        assert await coord.guard.reserve("next", micros(0.02))
        s = coord.guard.stats()
    assert (s.reserved, s.spent, s.ambiguous) == (micros(0.02), 0, 0)


async def test_status_judges_silence_by_the_workers_own_lease(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 1, tmp_path) as (coord,):
        client = coord.link.client
        seconds, _ = client.time()  # type: ignore[misc]
        # Two workers as they registered, both last seen 3 s ago (Redis time):
        # past a 1 s lease, within a 15 s one.
        for worker, lease in (("short", 1.0), ("long", 15.0)):
            info = {"host": "h", "pid": 1, "out": "o", "lease": lease, "started": 0}
            client.hset(coord.keys.workers, worker, json.dumps(info))
            client.hset(coord.keys.seen, worker, f"{int(seconds) - 3}.0")
        (run,) = coordinator_status(redis_url)
        states = {w.worker: w.state for w in run.workers}
    assert states == {"short": "silent", "long": "alive", coord.worker: "alive"}


def submission(request_id: str) -> Submission:
    return submission_for(BASE_URL, request_id)


@contextmanager
def ledgers(tmp: Path, count: int) -> Iterator[list[Ledger]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(Ledger.open(tmp / f"w{i}", backend="segmind", base_url=BASE_URL))
            for i in range(count)
        ]


async def source_of(coord: Coordination, ledger: Ledger, out: Path) -> ClaimSource:
    rules = HandoverRules(out=out, base_url=BASE_URL, pattern=None, retention=3600.0)
    return await coord.work(ledger, rules, skip=lambda job, why: None, stop=lambda why: None)


async def test_after_a_budget_stop_a_dead_workers_paid_job_is_finished_and_its_holds_freed(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 4)
    async with workers(redis_url, manifest, 2, tmp_path, lease=LEASE, budget=1.0) as (dead, alive):
        with ledgers(tmp_path, 2) as (dead_ledger, alive_ledger):
            lost = await source_of(dead, dead_ledger, tmp_path / "w0")
            taker = await source_of(alive, alive_ledger, tmp_path / "w1")
            paid, unsent, on_wire = [await lost.next() for _ in range(3)]
            assert paid is not None and unsent is not None and on_wire is not None
            for item in (paid, unsent, on_wire):
                assert await dead.guard.reserve(item.job.key, micros(0.02))
            await lost.submitting(paid.job)
            await lost.submitted(paid.job, submission("req-paid"), 1_800_000_000.0)
            await lost.submitting(on_wire.job)
            lost.forget([paid.job.index, unsent.job.index, on_wire.job.index])  # it died
            await alive.guard.stop("credit budget reached")
            with anyio.fail_after(WATCHDOG_S):
                taken = await taker.next()  # once the dead worker's entries lapse
            assert taken is not None and taken.job.key == paid.job.key
            assert taken.resume is not None and taken.resume.request_id == "req-paid"
            await alive.guard.hold(taken.job.key, micros(0.02))
            assert await alive.guard.settle(taken.job.key, micros(0.018)) == micros(0.018)
            await taker.finished(taken.job, "completed")
            with anyio.fail_after(WATCHDOG_S):
                assert await taker.next() is None  # no paid job left anywhere
            assert taker.stop_reason == "credit budget reached"
            await alive.guard.refresh()
            s = alive.guard.stats()
    # The unsent job's hold is refunded, the one on the wire may have been billed.
    assert (s.reserved, s.spent, s.refunded, s.ambiguous) == (
        0,
        micros(0.018),
        micros(0.02),
        micros(0.02),
    )


async def test_losing_redis_ends_a_worker_waiting_for_a_job(
    tmp_path: Path, redis_url: str, redis_server: LocalRedis
) -> None:
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 2, tmp_path, lease=LEASE) as (a, b):
        with ledgers(tmp_path, 2) as (la, lb):
            holder = await source_of(a, la, tmp_path / "w0")
            waiter = await source_of(b, lb, tmp_path / "w1")
            assert await holder.next() is not None  # the only job, held and renewed
            got: list[object] = []
            with anyio.fail_after(LEASE + 10):
                async with anyio.create_task_group() as tg:

                    async def wait() -> None:
                        got.append(await waiter.next())

                    tg.start_soon(wait)
                    await blocked_reader(a)
                    redis_server.kill()
    assert got == [None]
    assert b.lost is not None and "lost the coordinator" in b.lost


async def blocked_reader(coord: Coordination) -> None:
    """Until some client of Redis waits in XREADGROUP (a condition, not a guess of time)."""
    while True:
        clients: list[dict[str, str]] = coord.link.client.client_list()  # type: ignore[assignment]
        if any(c.get("cmd") == "xreadgroup" for c in clients):
            return
        await anyio.sleep(0.01)


async def test_a_redis_back_empty_admits_nobody_for_a_whole_span(
    tmp_path: Path, redis_url: str, redis_server: LocalRedis
) -> None:
    config = SchedulerConfig(rpm=3, window=WINDOW, margin=MARGIN)
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 1, tmp_path, config=config) as (coord,):
        before = []
        for _ in range(3):
            at = await coord.gate.admit()
            assert at is not None
            coord.gate.finished()
            before.append(at)
        redis_server.kill()
        redis_server.start()  # empty, and redis-py reconnects without a word
        after = await coord.gate.admit()
        assert coord.lost is None
    assert after is not None
    # The restarted Redis forgot the three calls; the gate still kept the window.
    assert after - max(before) >= WINDOW + MARGIN


async def test_a_stalled_workers_late_finish_and_settle_are_refused(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 2, tmp_path, lease=LEASE, budget=1.0) as (a, b):
        with ledgers(tmp_path, 2) as (la, lb):
            stalled = await source_of(a, la, tmp_path / "w0")
            taker = await source_of(b, lb, tmp_path / "w1")
            item = await stalled.next()
            assert item is not None
            assert await a.guard.reserve(item.job.key, micros(0.02))
            await stalled.submitted(item.job, submission("req-1"), 1_800_000_000.0)
            stalled.forget([item.job.index])  # stopped: no heartbeat renews it
            with anyio.fail_after(WATCHDOG_S):
                taken = await taker.next()
            assert taken is not None and taken.resume is not None
            await b.guard.hold(taken.job.key, micros(0.02))
            await b.guard.settle(taken.job.key, micros(0.02))
            await taker.finished(taken.job, "completed")
            # It wakes (SIGCONT) and ends the job too: refused, counted once, no error.
            assert await a.guard.settle(item.job.key, micros(0.02)) == 0
            await stalled.finished(item.job, "completed")
            assert a.lost is None
            s = a.guard.stats()
    assert s.spent == micros(0.02)


async def test_a_restarted_workers_request_id_replaces_a_submit_left_on_the_wire(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 2, tmp_path) as (back, other):
        job = back.jobs[0]
        # Redis was lost after the note "submitting" and before the request id
        # reached it; the worker's ledger has the id.
        back.link.client.hset(back.keys.requests, "0", json.dumps({"state": "submitting"}))
        with ledgers(tmp_path, 2) as (mine, theirs):
            mine.plan(job.key, job.index, job.prompt_id, 0.02)
            mine.submitted(job.key, "req-7", 4_000_000_000.0)
            await source_of(back, mine, tmp_path / "w0")  # tells the run what it knows
            taker = await source_of(other, theirs, tmp_path / "w1")
            with anyio.fail_after(WATCHDOG_S):
                taken = await taker.next()
    assert taken is not None and taken.resume is not None
    assert taken.resume.request_id == "req-7"  # re-attached: not submitted again


async def test_a_stalled_workers_submit_of_a_job_taken_over_is_not_sent(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 2, tmp_path, lease=LEASE, budget=1.0) as (a, b):
        with ledgers(tmp_path, 2) as (la, lb):
            stalled = await source_of(a, la, tmp_path / "w0")
            taker = await source_of(b, lb, tmp_path / "w1")
            item = await stalled.next()
            assert item is not None
            assert await a.guard.reserve(item.job.key, micros(0.02))
            stalled.forget([item.job.index])  # stopped while it waited for its rate slot
            with anyio.fail_after(WATCHDOG_S):
                taken = await taker.next()
            assert taken is not None and taken.resume is None  # nothing was sent: submit it
            assert await b.guard.reserve(taken.job.key, micros(0.02))  # the job's one hold
            # It wakes (SIGCONT) and would send the submit: refused, so nothing is paid
            # twice, and its job runner's refund leaves the taker's hold alone.
            with pytest.raises(Stopped):
                await stalled.submitting(item.job)
            await a.guard.refund(item.job.key)
            await stalled.finished(item.job, "unsent")
            await taker.submitting(taken.job)
            await taker.submitted(taken.job, submission("req-1"), 1_800_000_000.0)
            assert await b.guard.settle(taken.job.key, micros(0.02)) == micros(0.02)
            job = item.job
            la.plan(job.key, job.index, job.prompt_id, 0.02)  # back to planned in its folder
            assert await a.finished_elsewhere(la) == {}  # not ended yet: work left
            await taker.finished(taken.job, "completed")
            assert a.lost is None
            # Its taker's end is in the run's record: done, for its exit code too.
            elsewhere = await a.finished_elsewhere(la)
            await b.guard.refresh()
            s = b.guard.stats()
    assert elsewhere == {"planned": 1}
    assert (s.reserved, s.spent, s.refunded) == (0, micros(0.02), 0)
