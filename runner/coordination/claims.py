"""Dynamic job claiming: the WorkSource of a worker in a shared run.

`next()` claims one job at a time from the run's job pool, a Redis stream
with one consumer group (pool.py): a dead worker's job or one handed back
first (XAUTOCLAIM, min-idle = the lease), then one nobody read
(XREADGROUP), blocking while there is none, until the run ends. The
session's heartbeat keeps this worker's entries its own (XCLAIM JUSTID); a
worker that dies stops renewing, and a live one takes its jobs with the
request ids they recorded, so it re-attaches instead of paying again.

A claimed job's fate is `runner.resume.decide`'s (through handover.handle),
as for one process. `finished()` records the job's end for the whole run
once (HSETNX), or hands it back (`unsent`, `left`) to the front of the pool.

After a credit stop nothing new is read: a worker still takes over the
lapsed jobs whose request id is known (they are paid; re-attaching costs
nothing), releases the reservations of lapsed jobs without one (their worker
died before or while submitting), and returns None once no other worker
holds a paid job or a hold not released yet.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from runner.backends.base import Submission
from runner.coordination.client import RedisLink, Unreachable
from runner.coordination.credits import SharedCreditGuard
from runner.coordination.handover import HandoverRules, LeaseRecord, handle
from runner.coordination.identity import RunKeys
from runner.coordination.pool import Entry, JobPool
from runner.jobs import Job
from runner.resume import Skip, Submit, work_item
from runner.scheduling.calls import Stopped
from runner.scheduling.source import Outcome, WorkItem
from runner.store import Ledger


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this worker holds: its index and its stream entry's id."""

    index: int
    entry: str


class ClaimSource:
    """Implements runner.scheduling.source.WorkSource over the run's job pool in Redis."""

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
        self._pool = JobPool(link, keys, worker, lease)
        self._jobs = jobs
        self._worker = worker
        self._guard = guard
        self._ledger = ledger
        self._rules = rules
        self._skip = skip
        self._wall = wall
        self._held: dict[str, Claim] = {}
        self._released: set[str] = set()  # entries whose dead worker's hold was released
        self.stop_reason: str | None = None

    def held(self) -> list[Claim]:
        """The claims this worker holds now (for the heartbeat's renewals)."""
        return list(self._held.values())

    def forget(self, indexes: Iterable[int]) -> None:
        """Jobs another worker took (this one stalled past its lease): no longer ours."""
        lost = set(indexes)
        for key, claim in list(self._held.items()):
            if claim.index in lost:
                del self._held[key]

    async def next(self) -> WorkItem | None:
        """Claim the next job to run here; None when this worker has no more to do."""
        try:
            while True:
                entry = await self._claim()
                if entry is None:
                    return None
                item = await self._take(entry)
                if item is not None:
                    return item
        except Unreachable:
            return None

    async def after_stop(self) -> WorkItem | None:
        """After the run's stop: a dead worker's paid job to re-attach to, once its lease lapses.

        `next()` after a credit stop hands out only those (and releases the
        holds of lapsed jobs without a request id); None once no other worker
        holds a paid job or a hold not released yet.
        """
        return await self.next()

    async def _claim(self) -> Entry | None:
        link, pool = self._link, self._pool
        while True:
            head = await link.run(pool.head)
            if head == "gone":
                link.lose(
                    f"the coordinator at {link.url} no longer holds this run's record "
                    "(was Redis restarted without persistence, or the key deleted?)"
                )
                return None
            if head is not None:
                self.stop_reason = head
                await self._guard.refresh()
                return await self._claim_stopped()
            got = await link.run(pool.take_lapsed)
            if got is None:
                got = await link.run(functools.partial(pool.read, None))
            if got is None:
                if await link.run(pool.finished):
                    return None
                block = await link.run(pool.until_lapse)
                got = await link.run(functools.partial(pool.read, block), blocking=True)
            if isinstance(got, Entry):
                return got
            if got == "end":
                return None

    async def _claim_stopped(self) -> Entry | None:
        """After a credit stop: a lapsed paid job to re-attach to, or None when none is left."""
        pool = self._pool
        while True:
            pending = await self._link.run(pool.pending)
            for p in pending:
                if not p.paid and p.idle_ms >= pool.lease_ms and p.entry not in self._released:
                    # Its worker died before its submit was answered: free (or, when
                    # the submit may have gone out, keep as ambiguous) its hold.
                    self._released.add(p.entry)
                    state = "expired" if p.submitting else "failed"
                    await self._guard.reconcile(self._jobs[p.index].key, state, None)
            mine = {c.entry for c in self._held.values()}
            lapsed = [
                p for p in pending if p.paid and p.entry not in mine and p.idle_ms >= pool.lease_ms
            ]
            for p in lapsed:
                if await self._link.run(functools.partial(pool.claim, p.entry)):
                    return Entry(p.index, p.entry, taken=True)
            # Wait while another worker holds a paid job (it may die: take it
            # over then) or one whose hold is not released yet (it lapses).
            waits = [
                p
                for p in pending
                if p.entry not in mine and (p.paid or p.entry not in self._released)
            ]
            if not waits:
                return None
            soonest = min(pool.lease_ms - p.idle_ms for p in waits)
            await anyio.sleep(max(0.001, soonest / 1000) + 0.001)

    async def _take(self, entry: Entry) -> WorkItem | None:
        job = self._jobs[entry.index]
        raw, final = await self._link.run(functools.partial(self._pool.look, entry))
        if final:
            return None  # finished meanwhile (a restarted worker told the run)
        self._held[job.key] = Claim(entry.index, entry.entry)
        decision = handle(
            job,
            LeaseRecord.parse(raw),
            ledger=self._ledger,
            rules=self._rules,
            estimate=self._guard.estimate(job),
            wall=self._wall,
        )
        if isinstance(decision, Skip):
            if await self._final(job, decision.outcome):
                await self._guard.reconcile(job.key, decision.outcome, decision.charged)
            self._skip(job, decision.message)
            return None
        if isinstance(decision, Submit) and decision.ambiguous:
            # The dead worker's reservation becomes possible spend; the
            # scheduler reserves the new submit's cost as for any job.
            await self._guard.mark_ambiguous(job.key)
        return work_item(job, decision, self._rules.base_url)

    async def submitting(self, job: Job) -> None:
        """Record that the submit is about to go out (a death from now on leaves it ambiguous).

        Raises `Stopped` (the job goes back to planned here, not sent) when
        the job is no longer this worker's: it stalled past its lease (a
        SIGSTOP, a frozen VM) and another worker took the job over, so a
        submit now would pay for it twice. While the taker runs it, the job's
        one reservation is the taker's (this worker's refund must not free
        it); once the job is final, a reservation left is this worker's own,
        made after the taker settled, and its refund frees it.
        """
        if await self._note(job, {"state": "submitting"}):
            return
        self._held.pop(job.key, None)
        try:
            final = await self._link.run(functools.partial(self._pool.is_final, job.index))
        except Unreachable:
            final = False
        if not final:
            self._guard.disown(job.key)
        raise Stopped

    async def submitted(self, job: Job, submission: Submission, wall: float) -> None:
        """Record the request id, for a taker to re-attach to."""
        record = {"state": "submitted", "request_id": submission.request_id, "submitted_at": wall}
        await self._note(job, record)

    async def _note(self, job: Job, record: dict[str, Any]) -> bool:
        """Write the job's request record; False when another worker holds the job now."""
        claim = self._held.get(job.key)
        if claim is None:
            return False  # the heartbeat found it taken over
        text = json.dumps({**record, "worker": self._worker})
        # Lost: the ledger has it; the next start of this worker tells the run.
        try:
            return await self._link.run(
                functools.partial(self._pool.note, claim.index, claim.entry, text)
            )
        except Unreachable:
            return True

    async def finished(self, job: Job, outcome: Outcome) -> None:
        """Record the job's end for the run (once), or hand it back."""
        if outcome not in ("unsent", "left"):
            await self._final(job, outcome)
            return
        claim = self._held.pop(job.key, None)
        if claim is None:
            return
        back = functools.partial(
            self._pool.hand_back, claim.index, claim.entry, unsent=outcome == "unsent"
        )
        try:
            await self._link.run(back)
        except Unreachable:
            return  # its entry lapses: the next claim after a lease takes it

    async def _final(self, job: Job, state: str) -> bool:
        """Record the job's final state for the run; whether it was this worker's to record."""
        claim = self._held.pop(job.key, None)
        if claim is None:
            return False
        final = functools.partial(
            self._pool.final, claim.index, claim.entry, state, job.key, self._wall()
        )
        # Lost: the ledger has it; reconciled when this worker starts again.
        try:
            return await self._link.run(final)
        except Unreachable:
            return False
