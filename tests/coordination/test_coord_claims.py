"""Claiming jobs with leases against a real Redis: several workers in-process, real ledgers.

No HTTP here: the tests play the scheduler's part (claim, note, finish) and
check what the run recorded in Redis and what each worker's ledger says.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import pytest
from coord_helpers import BASE_URL, manifest_of, workers

from runner.backends.base import Submission, submission_for
from runner.coordination import Coordination
from runner.coordination.claims import ClaimSource
from runner.coordination.handover import HandoverRules
from runner.jobs import Job
from runner.money import micros
from runner.scheduling.source import WorkItem
from runner.store import Ledger

pytestmark = pytest.mark.anyio

LEASE = 1.0  # the shortest allowed: takeovers in about a second of real time


@contextmanager
def ledgers(tmp: Path, count: int) -> Iterator[list[Ledger]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(Ledger.open(tmp / f"w{i}", backend="segmind", base_url=BASE_URL))
            for i in range(count)
        ]


async def sources(
    joined: list[Coordination], opened: list[Ledger], tmp: Path, **rules: bool
) -> tuple[list[ClaimSource], list[list[str]]]:
    skipped: list[list[str]] = [[] for _ in joined]
    made = []
    for i, (coord, ledger) in enumerate(zip(joined, opened, strict=True)):
        made.append(
            await coord.work(
                ledger,
                HandoverRules(
                    out=tmp / f"w{i}", base_url=BASE_URL, pattern=None, retention=3600.0, **rules
                ),
                skip=lambda job, why, i=i: skipped[i].append(f"{job.index}:{why}"),
                stop=lambda reason: None,
            )
        )
    return made, skipped


def done_entries(coord: Coordination) -> dict[int, dict[str, object]]:
    raw = coord.link.client.hgetall(coord.keys.done)
    return {int(k): json.loads(v) for k, v in raw.items()}  # type: ignore[union-attr]


def submission(request_id: str) -> Submission:
    return submission_for(BASE_URL, request_id)


async def test_every_job_is_claimed_and_finished_exactly_once(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 30)
    claimed: list[list[int]] = [[], [], []]
    async with workers(redis_url, manifest, 3, tmp_path) as joined:
        with ledgers(tmp_path, 3) as opened:
            made, _ = await sources(joined, opened, tmp_path)

            async def worker(i: int) -> None:
                while (item := await made[i].next()) is not None:
                    claimed[i].append(item.job.index)
                    await made[i].finished(item.job, "completed")

            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(worker, i)
        done = done_entries(joined[0])
    every = sorted(claimed[0] + claimed[1] + claimed[2])
    assert every == list(range(30))
    assert sorted(done) == list(range(30))
    assert {entry["state"] for entry in done.values()} == {"completed"}


async def test_a_dead_workers_job_is_taken_over_with_its_request_id(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 2, tmp_path, lease=LEASE) as (dead, alive):
        with ledgers(tmp_path, 2) as (dead_ledger, alive_ledger):
            (lost, taker), _ = await sources([dead, alive], [dead_ledger, alive_ledger], tmp_path)
            item = await lost.next()
            assert item is not None
            await lost.submitting(item.job)
            await lost.submitted(item.job, submission("req-1"), 1_800_000_000.0 + 0)
            # `dead` stops renewing (its heartbeat runs every LEASE/3: cancel it by
            # forgetting its claims, as a dead process would).
            lost.forget([item.job.index])
            taken = await taker.next()  # waits for the lease to lapse
            assert isinstance(taken, WorkItem)
            assert taken.job.key == item.job.key
            assert taken.resume is not None and taken.resume.request_id == "req-1"
            row = alive_ledger.get(item.job.key)
            assert row is not None and (row.state, row.request_id) == ("submitted", "req-1")
            # The dead worker cannot finish it any more; the taker does, once.
            await lost.finished(item.job, "completed")  # its claim is forgotten: no effect
            await taker.finished(taken.job, "completed")
            assert await taker.next() is None
        done = done_entries(alive)
    assert list(done) == [0]
    assert done[0]["worker"] == alive.worker
    assert done[0]["request_id"] == "req-1"


async def test_a_submit_in_flight_when_its_worker_died_is_ambiguous(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 2, tmp_path, lease=LEASE, budget=1.0) as (dead, alive):
        with ledgers(tmp_path, 2) as (dead_ledger, alive_ledger):
            (lost, taker), _ = await sources([dead, alive], [dead_ledger, alive_ledger], tmp_path)
            item = await lost.next()
            assert item is not None
            assert await dead.guard.reserve(item.job.key, micros(0.02))
            await lost.submitting(item.job)
            lost.forget([item.job.index])
            taken = await taker.next()
            assert taken is not None and taken.resume is None  # submitted again ...
            row = alive_ledger.get(taken.job.key)
            assert row is not None and row.ambiguous == 1  # ... and counted
            # The dead worker's reservation is possible spend now.
            assert alive.guard.stats().ambiguous == micros(0.02)
            assert alive.guard.stats().reserved == 0


async def test_a_job_handed_back_goes_first_and_keeps_its_request_id(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 5)
    async with workers(redis_url, manifest, 2, tmp_path) as (a, b):
        with ledgers(tmp_path, 2) as opened:
            (one, two), _ = await sources([a, b], opened, tmp_path)
            first = await one.next()
            assert first is not None and first.job.index == 0
            await one.submitting(first.job)
            await one.submitted(first.job, submission("req-9"), 1_800_000_000.0)
            await one.finished(first.job, "left")  # an interrupted worker hands it back
            again = await two.next()
            assert again is not None and again.job.index == 0
            assert again.resume is not None and again.resume.request_id == "req-9"
            unsent = await two.next()
            assert unsent is not None and unsent.job.index == 1
            await two.finished(unsent.job, "unsent")
            back = await one.next()
            assert back is not None and back.job.index == 1 and back.resume is None


async def test_a_worker_restarting_tells_the_run_what_its_folder_finished(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 4)
    async with workers(redis_url, manifest, 1, tmp_path, budget=1.0) as (coord,):
        jobs: list[Job] = list(coord.jobs)
        with ledgers(tmp_path, 1) as (ledger,):
            # What this folder's ledger kept from a run whose coordinator was lost:
            # job 0 completed (its reservation still held in Redis), job 1 failed,
            # job 2 submitted as req-2.
            assert await coord.guard.reserve(jobs[0].key, micros(0.02))
            for job in jobs[:3]:
                ledger.plan(job.key, job.index, job.prompt_id, micros(0.02))
            ledger.completed(jobs[0].key, micros(0.018), [], 1_800_000_000.0)
            ledger.failed(jobs[1].key, "blocked")
            ledger.submitted(jobs[2].key, "req-2", 4_000_000_000.0)
            (source,), _ = await sources([coord], [ledger], tmp_path)
            assert coord.reconciled == 2
            assert coord.guard.stats().spent == micros(0.018)
            got = []
            while (item := await source.next()) is not None:
                got.append((item.job.index, item.resume.request_id if item.resume else None))
                await source.finished(item.job, "completed")
        done = done_entries(coord)
    assert got == [(2, "req-2"), (3, None)]
    assert {i: done[i]["state"] for i in done} == {
        0: "completed",
        1: "failed",
        2: "completed",
        3: "completed",
    }


async def test_retry_failed_puts_failed_jobs_back_in_the_pool(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 3)
    async with workers(redis_url, manifest, 1, tmp_path) as (coord,):
        with ledgers(tmp_path, 1) as (ledger,):
            (source,), _ = await sources([coord], [ledger], tmp_path)
            while (item := await source.next()) is not None:
                outcome = "failed" if item.job.index == 1 else "completed"
                await source.finished(item.job, outcome)
            (again,), _ = await sources([coord], [ledger], tmp_path, retry_failed=True)
            assert coord.requeued == 1
            item = await again.next()
            assert item is not None and item.job.index == 1
            await again.finished(item.job, "completed")
            assert await again.next() is None
        done = done_entries(coord)
    assert {entry["state"] for entry in done.values()} == {"completed"}


async def test_after_a_credit_stop_only_reattachable_jobs_are_handed_out(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 4)
    async with workers(redis_url, manifest, 2, tmp_path, budget=1.0) as (a, b):
        with ledgers(tmp_path, 2) as opened:
            (one, two), _ = await sources([a, b], opened, tmp_path)
            first = await one.next()
            second = await one.next()
            assert first is not None and second is not None
            await one.submitted(first.job, submission("req-a"), 4_000_000_000.0)
            await one.finished(first.job, "left")
            await one.finished(second.job, "unsent")
            await a.guard.stop("credit budget reached")
            again = await two.next()
            assert again is not None and again.job.index == first.job.index
            assert again.resume is not None
            assert await two.next() is None  # nothing else: every new submit would pay
            assert two.stop_reason == "credit budget reached"
