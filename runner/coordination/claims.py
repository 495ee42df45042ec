"""Dynamic job claiming: the WorkSource of a worker in a shared run.

`next()` claims one job at a time with a lease (CLAIM script): a lapsed
lease first, then a job handed back, then the next never-claimed index of
the manifest's expansion (every worker expands the same manifest the same
way, so an index names the same job everywhere). The session renews every
lease this worker holds on each heartbeat; a worker that dies stops
renewing, its leases lapse and the next claim hands its jobs to a live
worker, with the request id it recorded (`submitted`), so the taker
re-attaches instead of paying again.

`finished()` ends the job for the whole run exactly once: only the lease's
holder (its token) can record a final state, and a final state, once
recorded, is never replaced. Jobs handed back (`unsent`, `left`) go to the
front of the pool.

When every job is claimed but some are still leased, `next()` waits (a
lease may lapse); it returns None only when the whole run is done, the
budget stopped it, or the coordinator is lost.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anyio

from runner.backends.base import Submission
from runner.coordination.client import RedisLink, Unreachable
from runner.coordination.credits import SharedCreditGuard
from runner.coordination.handover import HandoverRules, LeaseRecord, handle
from runner.coordination.identity import RunKeys
from runner.coordination.scripts import CLAIM, FINISH, NOTE, RECONCILE
from runner.jobs import Job
from runner.resume import Skip, Submit, work_item
from runner.scheduling.source import Outcome, WorkItem
from runner.store import Ledger

# How often a worker with nothing to claim asks again while other workers'
# jobs are in flight (seconds of real time): short, so the run's end, or a
# job handed back, is seen quickly; one tiny script call each time.
IDLE_POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this worker holds: its index and the lease's token."""

    index: int
    token: str


class ClaimSource:
    """Implements runner.scheduling.source.WorkSource over the run's claims in Redis."""

    def __init__(
        self,
        link: RedisLink,
        keys: RunKeys,
        jobs: Sequence[Job],
        *,
        worker: str,
        lease: float,
        guard: SharedCreditGuard,
        ledger: Ledger,
        rules: HandoverRules,
        skip: Callable[[Job, str], None],
        wall: Callable[[], float],
    ) -> None:
        self._link = link
        self._keys = keys
        self._jobs = jobs
        self._worker = worker
        self._lease = lease
        self._guard = guard
        self._ledger = ledger
        self._rules = rules
        self._skip = skip
        self._wall = wall
        self._held: dict[str, Claim] = {}
        self.stop_reason: str | None = None
        self.takeovers = 0

    def held(self) -> list[Claim]:
        """The claims this worker holds now (for the heartbeat's renewals)."""
        return list(self._held.values())

    def forget(self, indexes: Sequence[int]) -> None:
        """Leases another worker took (this one stalled past its lease): no longer ours."""
        lost = set(indexes)
        for key, claim in list(self._held.items()):
            if claim.index in lost:
                del self._held[key]

    async def next(self) -> WorkItem | None:
        """Claim the next job to run here; None when this worker has no more to do."""
        while True:
            token = secrets.token_hex(8)
            try:
                reply = await self._link.script(
                    CLAIM,
                    [
                        self._keys.meta,
                        self._keys.cursor,
                        self._keys.returned,
                        self._keys.leases,
                        self._keys.lease,
                        self._keys.done,
                        self._keys.credits,
                    ],
                    [self._worker, token, self._lease],
                )
            except Unreachable:
                return None
            kind = str(reply[0])
            if kind == "done":
                return None
            if kind == "stopped":
                self.stop_reason = str(reply[1])
                await self._guard.refresh()
                return None
            if kind == "gone":
                self._link.lose(
                    f"the coordinator at {self._link.url} no longer holds this run's record "
                    "(was Redis restarted without persistence, or the key deleted?)"
                )
                return None
            if kind == "again":
                continue
            if kind == "wait":
                await anyio.sleep(min(float(reply[1]), IDLE_POLL_S))
                continue
            item = await self._take(int(reply[1]), token, str(reply[2] or ""), kind)
            if item is not None:
                return item

    async def _take(self, index: int, token: str, raw: str, kind: str) -> WorkItem | None:
        job = self._jobs[index]
        self._held[job.key] = Claim(index, token)
        lease = LeaseRecord.parse(raw)
        if kind == "lapsed":
            self.takeovers += 1
        decision = handle(
            job,
            lease,
            ledger=self._ledger,
            rules=self._rules,
            estimate=self._guard.estimate(job),
            wall=self._wall,
        )
        if isinstance(decision, Skip):
            await self._finish_known(job, decision)
            self._skip(job, decision.message)
            return None
        if isinstance(decision, Submit) and decision.ambiguous:
            # The dead worker's reservation becomes possible spend; the
            # scheduler reserves the new submit's cost as for any job.
            await self._guard.mark_ambiguous(job.key)
        return work_item(job, decision, self._rules.base_url)

    async def _finish_known(self, job: Job, skip: Skip) -> None:
        """A claimed job this folder already finished: tell the run, settle if still held."""
        claim = self._held.pop(job.key, None)
        if claim is None:
            return
        try:
            await self._link.script(
                RECONCILE,
                [
                    self._keys.meta,
                    self._keys.cursor,
                    self._keys.returned,
                    self._keys.leases,
                    self._keys.lease,
                    self._keys.done,
                ],
                [self._worker, str(claim.index), job.key, skip.outcome, "", ""],
            )
        except Unreachable:
            return
        await self._guard.reconcile(job.key, skip.outcome, skip.charged)

    async def submitting(self, job: Job) -> None:
        """Note on the lease that the submit is about to go out."""
        await self._note(job, "submitting", "", "")

    async def submitted(self, job: Job, submission: Submission, wall: float) -> None:
        """Note the request id on the lease, for a taker to re-attach to."""
        await self._note(job, "submitted", submission.request_id, f"{wall:.6f}")

    async def _note(self, job: Job, state: str, request_id: str, at: str) -> None:
        claim = self._held.get(job.key)
        if claim is None:
            return
        # Lost: the ledger has it; the next start of this worker tells the run.
        with contextlib.suppress(Unreachable):
            await self._link.script(
                NOTE, [self._keys.lease], [str(claim.index), claim.token, state, request_id, at]
            )

    async def finished(self, job: Job, outcome: Outcome) -> None:
        """Record the job's end for the run (once), or hand it back."""
        claim = self._held.pop(job.key, None)
        if claim is None:
            return
        # Lost: the ledger has it; reconciled when this worker starts again.
        with contextlib.suppress(Unreachable):
            await self._link.script(
                FINISH,
                [
                    self._keys.lease,
                    self._keys.leases,
                    self._keys.done,
                    self._keys.meta,
                    self._keys.returned,
                ],
                [str(claim.index), claim.token, outcome, job.key, self._worker],
            )
