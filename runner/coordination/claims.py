"""The job pool of a shared run on a Redis stream: the WorkSource of a worker.

Every job of the manifest's expansion is one entry of the run's stream
(`RunKeys.jobs`, written once when the run is created); every worker is a
consumer of one consumer group (`GROUP`). Redis's own primitives do the rest:

    claim        XAUTOCLAIM with min-idle = the lease: a dead worker's job, or
                 one handed back, first; then XREADGROUP ... > for a new one,
                 blocking while there is none (no polling), at most until the
                 first lease of another worker could lapse
    heartbeat    XCLAIM ... JUSTID of the entries this worker holds (session.py)
    take-overs   the entry's delivery count; `meta.takeovers`
    request ids  `RunKeys.requests`, written before the submit's answer is acted
                 on, so a taker re-attaches instead of paying again
    final state  HSETNX on `RunKeys.done` (once, whoever is first), then XACK
    hand back    XCLAIM to the `POOL` consumer, idle since long, so the next
                 XAUTOCLAIM takes it, and a `wake` entry for a blocked reader

A claimed job's fate is `runner.resume.decide`'s (through handover.handle),
as for one process. The end of the run is an `end` entry that each reader
passes on to the next. After a credit stop nothing new is read: a worker
still takes over the lapsed jobs whose request id is known (they are paid;
re-attaching costs nothing), releases the reservations of the lapsed jobs
without one (their worker died before or while submitting), and returns None
once no other worker holds a paid job.
"""

from __future__ import annotations

import functools
import json
import math
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import anyio

from runner.backends.base import Submission
from runner.coordination.client import BLOCK_MAX_S, RedisLink, Unreachable
from runner.coordination.credits import SharedCreditGuard
from runner.coordination.handover import HandoverRules, LeaseRecord, handle
from runner.coordination.identity import GROUP, POOL, RunKeys
from runner.jobs import Job
from runner.resume import Skip, Submit, work_item
from runner.scheduling.source import Outcome, WorkItem
from runner.store import Ledger

# XPENDING reads at most this many entries at once (a run's jobs in flight).
_PENDING: Final = 10_000
# A job handed back is made this many leases idle, so the next XAUTOCLAIM takes it.
_BACK_LEASES: Final = 1000


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this worker holds: its index and its stream entry's id."""

    index: int
    entry: str


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    entry: str
    taken: bool  # by XAUTOCLAIM or XCLAIM (lapsed, or handed back), not read new


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def done_entry(state: str, worker: str, key: str, at: float, request_id: str | None) -> str:
    """The JSON a job's final state is recorded as (`at`: wall-clock epoch seconds)."""
    doc: dict[str, Any] = {"state": state, "worker": worker, "key": key, "at": round(at, 3)}
    if request_id:
        doc["request_id"] = request_id
    return json.dumps(doc)


class ClaimSource:
    """Implements runner.scheduling.source.WorkSource over the run's stream in Redis."""

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
        self._lease_ms = _ms(lease)
        self._lease = lease
        self._guard = guard
        self._ledger = ledger
        self._rules = rules
        self._skip = skip
        self._wall = wall
        self._held: dict[str, Claim] = {}
        self._released: set[str] = set()  # entries whose dead worker's hold was released
        self._records: dict[str, str | None] = {}  # request records, as last read after a stop
        self.stop_reason: str | None = None
        self.takeovers = 0

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

    # -- claiming ------------------------------------------------------------

    async def _claim(self) -> _Entry | None:
        link = self._link
        while True:
            head = await link.run(self._head)
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
            got = await link.run(self._take_lapsed)
            if got is None:
                got = await link.run(lambda: self._read(None))
            if got is None:
                if await link.run(self._finished):
                    return None
                block = await link.run(self._until_lapse)
                got = await link.run(functools.partial(self._read, block), blocking=True)
            if isinstance(got, _Entry):
                return got
            if got == "end":
                return None

    def _head(self) -> str | None:
        """Blocking: 'gone' (no run record), the credit stop's reason, or None."""
        pipe = self._link.client.pipeline(transaction=False)
        pipe.exists(self._keys.meta)
        pipe.hget(self._keys.credits, "stopped")
        exists, stopped = pipe.execute()
        if not exists:
            return "gone"
        return str(stopped) if stopped else None

    def _take_lapsed(self) -> _Entry | str | None:
        """Blocking: an entry idle for a lease (its worker died, or it was handed back)."""
        client: Any = self._link.client
        start = "0-0"
        while True:
            start, entries, *_ = client.xautoclaim(
                self._keys.jobs, GROUP, self._worker, self._lease_ms, start, count=1
            )
            for entry, fields in entries:
                if "job" in fields:
                    return _Entry(int(fields["job"]), entry, taken=True)
                return self._control(entry, fields)
            if start == "0-0":
                return None

    def _read(self, block_ms: int | None) -> _Entry | str | None:
        """Blocking: the next entry nobody read (waiting up to `block_ms`); None: none."""
        client: Any = self._link.blocking if block_ms is not None else self._link.client
        got = client.xreadgroup(
            GROUP, self._worker, {self._keys.jobs: ">"}, count=1, block=block_ms
        )
        if not got:
            return None
        entry, fields = got[0][1][0]
        if "job" in fields:
            return _Entry(int(fields["job"]), entry, taken=False)
        return self._control(entry, fields)

    def _control(self, entry: str, fields: dict[str, str]) -> str:
        """Blocking: a wake-up or the run's end, read: drop it (pass the end on)."""
        client: Any = self._link.client
        pipe = client.pipeline(transaction=False)
        pipe.xack(self._keys.jobs, GROUP, entry)
        pipe.xdel(self._keys.jobs, entry)
        pipe.execute()
        if "end" in fields and self._finished():
            # The next blocked reader wakes on this one, and passes it on too.
            client.xadd(self._keys.jobs, {"end": "1"})
            return "end"
        return "again"

    def _finished(self) -> bool:
        """Blocking: every job of the run has its final state."""
        client: Any = self._link.client
        pipe = client.pipeline(transaction=False)
        pipe.hlen(self._keys.done)
        pipe.hget(self._keys.meta, "total")
        done, total = pipe.execute()
        return int(done) >= int(total or 0)

    def _until_lapse(self) -> int:
        """Blocking: ms until the first lease of another worker could lapse (capped)."""
        client: Any = self._link.client
        pending = client.xpending_range(self._keys.jobs, GROUP, "-", "+", _PENDING)
        wait = _ms(min(self._lease, BLOCK_MAX_S))
        for p in pending:
            if p["consumer"] != self._worker:
                wait = min(wait, max(1, self._lease_ms - int(p["time_since_delivered"]) + 1))
        return wait

    def _hand_to_pool(self, entries: Sequence[str]) -> None:
        """Blocking: entries this worker holds go back, idle since long (the next claim's)."""
        if not entries:
            return
        client: Any = self._link.client
        client.xclaim(
            self._keys.jobs,
            GROUP,
            POOL,
            0,
            list(entries),
            idle=self._lease_ms * _BACK_LEASES,
            justid=True,
        )

    async def _claim_stopped(self) -> _Entry | None:
        """After a credit stop: a lapsed paid job to re-attach to, or None when none is left."""
        while True:
            paid, unpaid = await self._link.run(self._pending_after_stop)
            for index, entry in unpaid:
                if entry not in self._released:
                    # Its worker died before its submit was answered: free (or, when
                    # the submit may have gone out, keep as ambiguous) its hold.
                    self._released.add(entry)
                    state = "expired" if self._submitting(index) else "failed"
                    await self._guard.reconcile(self._jobs[index].key, state, None)
            mine = {c.entry for c in self._held.values()}
            others = [(i, e, idle) for i, e, idle in paid if e not in mine]
            if not others:
                return None
            for index, entry, idle in others:
                if idle >= self._lease_ms:
                    taken = await self._link.run(functools.partial(self._xclaim, entry))
                    if taken:
                        return _Entry(index, entry, taken=True)
            soonest = min(self._lease_ms - idle for _, _, idle in others)
            await anyio.sleep(max(0.001, soonest / 1000) + 0.001)

    def _pending_after_stop(
        self,
    ) -> tuple[list[tuple[int, str, int]], list[tuple[int, str]]]:
        """Blocking: pending jobs with a request id (index, entry, idle ms) and lapsed
        ones without (index, entry), not yet final."""
        client: Any = self._link.client
        pending = client.xpending_range(self._keys.jobs, GROUP, "-", "+", _PENDING)
        if not pending:
            return [], []
        pipe = client.pipeline(transaction=False)
        for p in pending:
            pipe.xrange(self._keys.jobs, p["message_id"], p["message_id"])
        found = pipe.execute()
        rows: list[tuple[int, str, int]] = []
        for p, entries in zip(pending, found, strict=True):
            if entries and "job" in entries[0][1]:
                rows.append(
                    (int(entries[0][1]["job"]), p["message_id"], int(p["time_since_delivered"]))
                )
        if not rows:
            return [], []
        names = [str(i) for i, _, _ in rows]
        records = client.hmget(self._keys.requests, names)
        finals = client.hmget(self._keys.done, names)
        self._records = dict(zip(names, records, strict=True))
        paid: list[tuple[int, str, int]] = []
        unpaid: list[tuple[int, str]] = []
        for (index, entry, idle), raw, final in zip(rows, records, finals, strict=True):
            if final is not None:
                continue
            if LeaseRecord.parse(raw or "").request_id:
                paid.append((index, entry, idle))
            elif idle >= self._lease_ms:
                unpaid.append((index, entry))
        return paid, unpaid

    def _submitting(self, index: int) -> bool:
        return LeaseRecord.parse(self._records.get(str(index)) or "").state == "submitting"

    def _xclaim(self, entry: str) -> bool:
        """Blocking: take one lapsed entry (False: another worker was first)."""
        client: Any = self._link.client
        got = client.xclaim(self._keys.jobs, GROUP, self._worker, self._lease_ms, [entry])
        return bool(got)

    # -- a claimed job -------------------------------------------------------

    async def _take(self, entry: _Entry) -> WorkItem | None:
        index = entry.index
        job = self._jobs[index]
        keys = self._keys

        def look() -> tuple[str, bool, bool]:
            pipe = self._link.client.pipeline(transaction=False)
            pipe.hget(keys.requests, str(index))
            pipe.hexists(keys.done, str(index))
            pipe.srem(keys.back, str(index))
            pipe.hincrby(keys.meta, "claims", 1)
            raw, final, returned, _ = pipe.execute()
            if final:
                pipe.xack(keys.jobs, GROUP, entry.entry)
            elif entry.taken and not returned:
                pipe.hincrby(keys.meta, "takeovers", 1)
            pipe.execute()
            return str(raw or ""), bool(final), bool(returned)

        raw, final, returned = await self._link.run(look)
        if final:
            return None  # finished meanwhile (a restarted worker told the run)
        self._held[job.key] = Claim(index, entry.entry)
        if entry.taken and not returned:
            self.takeovers += 1
        decision = handle(
            job,
            LeaseRecord.parse(raw),
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
        if await self._final(job, skip.outcome):
            await self._guard.reconcile(job.key, skip.outcome, skip.charged)

    def _mine(self, entry: str) -> bool:
        """Blocking: whether this worker still holds `entry` (no other took it over)."""
        client: Any = self._link.client
        got = client.xpending_range(self._keys.jobs, GROUP, entry, entry, 1)
        return bool(got) and got[0]["consumer"] == self._worker

    async def submitting(self, job: Job) -> None:
        """Record that the submit is about to go out (a death from now on leaves it ambiguous)."""
        await self._note(job, {"state": "submitting"})

    async def submitted(self, job: Job, submission: Submission, wall: float) -> None:
        """Record the request id, for a taker to re-attach to."""
        record = {"state": "submitted", "request_id": submission.request_id, "submitted_at": wall}
        await self._note(job, record)

    async def _note(self, job: Job, record: dict[str, Any]) -> None:
        claim = self._held.get(job.key)
        if claim is None:
            return
        text = json.dumps({**record, "worker": self._worker})

        def note() -> None:
            if self._mine(claim.entry):
                self._link.client.hset(self._keys.requests, str(claim.index), text)

        # Lost: the ledger has it; the next start of this worker tells the run.
        try:
            await self._link.run(note)
        except Unreachable:
            return

    async def finished(self, job: Job, outcome: Outcome) -> None:
        """Record the job's end for the run (once), or hand it back."""
        if outcome in ("unsent", "left"):
            await self._hand_back(job, outcome)
        else:
            await self._final(job, outcome)

    async def _hand_back(self, job: Job, outcome: Outcome) -> None:
        claim = self._held.pop(job.key, None)
        if claim is None:
            return
        keys = self._keys

        def back() -> None:
            client: Any = self._link.client
            if not self._mine(claim.entry):
                return
            if outcome == "unsent":
                # The submit never went out: forget that it was about to.
                raw = client.hget(keys.requests, str(claim.index))
                if LeaseRecord.parse(raw or "").state == "submitting":
                    client.hdel(keys.requests, str(claim.index))
            self._hand_to_pool([claim.entry])
            pipe = client.pipeline(transaction=False)
            pipe.sadd(keys.back, str(claim.index))
            pipe.hincrby(keys.meta, "returns", 1)
            pipe.xadd(keys.jobs, {"wake": secrets.token_hex(2)})
            pipe.execute()

        try:
            await self._link.run(back)
        except Unreachable:
            return  # its entry lapses: the next claim after a lease takes it

    async def _final(self, job: Job, state: str) -> bool:
        """Record the job's final state for the run; whether it was this worker's to record."""
        claim = self._held.pop(job.key, None)
        if claim is None:
            return False
        keys = self._keys

        def final() -> bool:
            client: Any = self._link.client
            if not self._mine(claim.entry):
                return False  # another worker took it over: its record stands
            raw = client.hget(keys.requests, str(claim.index))
            rid = LeaseRecord.parse(raw or "").request_id
            text = done_entry(state, self._worker, job.key, self._wall(), rid)
            first = bool(client.hsetnx(keys.done, str(claim.index), text))
            pipe = client.pipeline(transaction=False)
            if first:
                pipe.hincrby(keys.meta, state, 1)
            pipe.xack(keys.jobs, GROUP, claim.entry)
            pipe.execute()
            if first and self._finished():
                client.xadd(keys.jobs, {"end": "1"})  # wakes the idle readers
            return first

        # Lost: the ledger has it; reconciled when this worker starts again.
        try:
            return bool(await self._link.run(final))
        except Unreachable:
            return False
