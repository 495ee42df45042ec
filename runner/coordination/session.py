"""A worker's membership of a shared run: join, heartbeat, reconcile, leave.

`join_run` connects to Redis (an unreachable or unusable coordinator is a
UsageError, exit 2, before anything is written), creates the run's record
or checks that this worker agrees with it (same jobs, same budget), and
registers the worker. While the run goes on, one background task beats
every lease/3 seconds: it renews the leases this worker holds and counts
the live workers (the rate gate's fallback share). On leaving, the worker
is marked ended.

`Coordination.work` is called once the worker's ledger is open: it first
tells the run what that ledger knows (jobs finished here that the run has
not recorded, request ids to re-attach to), puts failed or expired jobs
back in the pool when asked (--retry-failed, --resubmit-expired), and
returns the claim source the scheduler pulls from.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread

from runner.clock import WallClock, wall_time
from runner.coordination.claims import ClaimSource
from runner.coordination.client import RedisLink, Unreachable
from runner.coordination.credits import SharedCreditGuard
from runner.coordination.gate import SharedRateGate
from runner.coordination.handover import HandoverRules, LeaseRecord
from runner.coordination.identity import (
    GROUP,
    RunKeys,
    check_run_id,
    rate_keys,
    run_keys,
)
from runner.coordination.pool import PENDING, done_entry
from runner.coordination.record import init_run
from runner.errors import UsageError
from runner.jobs import Job
from runner.manifest import Manifest
from runner.money import Micros
from runner.params import DEFAULT_PRICES
from runner.scheduling.scheduler import SchedulerConfig
from runner.store import JobRow, Ledger

DEFAULT_LEASE_S: Final = 15.0
"""Seconds a claimed job stays this worker's without a heartbeat (real time, not scaled)."""
MIN_LEASE_S: Final = 1.0
_BATCH: Final = 200
_UNFINISHED: Final = ("planned", "submitting", "submitted")


@dataclass(frozen=True, slots=True)
class CoordinatorSpec:
    """Where to coordinate and as which run: `url` of Redis, `run_id`, `lease` in seconds."""

    url: str
    run_id: str | None = None
    lease: float = DEFAULT_LEASE_S

    def __post_init__(self) -> None:
        if self.run_id is not None:
            check_run_id(self.run_id)
        if not self.lease >= MIN_LEASE_S:
            raise UsageError(
                f"coordinator lease {self.lease} s is too short: at least {MIN_LEASE_S:.0f} s "
                f"(default {DEFAULT_LEASE_S:.0f})"
            )


class Coordination:
    """This worker's view of the shared run; see the module docstring."""

    def __init__(
        self,
        link: RedisLink,
        keys: RunKeys,
        jobs: Sequence[Job],
        *,
        worker: str,
        lease: float,
        guard: SharedCreditGuard,
        gate: SharedRateGate,
        peers: list[int],
    ) -> None:
        self.link = link
        self.keys = keys
        self.jobs = jobs
        self.worker = worker
        self.lease = lease
        self.guard = guard
        self.gate = gate
        self._peers = peers
        self.source: ClaimSource | None = None
        self.reconciled = 0
        self.requeued = 0

    @property
    def lost(self) -> str | None:
        """Why the coordinator was lost during the run, or None."""
        return self.link.lost

    @property
    def peers(self) -> int:
        """Workers alive at the last heartbeat (this one included)."""
        return self._peers[0]

    async def work(
        self,
        ledger: Ledger,
        rules: HandoverRules,
        *,
        skip: Callable[[Job, str], None],
        stop: Callable[[str], None],
        wall: WallClock = wall_time,
    ) -> ClaimSource:
        """Reconcile `ledger` with the run, then the claim source to run from.

        `skip(job, why)` counts a claimed job this folder already finished;
        `stop(reason)` is called once if the coordinator is lost mid-run
        (the scheduler stops new submits and finishes what is in flight).
        Raises UsageError when the coordinator is lost already.
        """
        self.link.on_lost(stop)
        try:
            await self._reconcile(ledger, wall)
            states = [s for s, on in (("failed", rules.retry_failed),) if on]
            if rules.resubmit_expired:
                states.append("expired")
            if states:
                await self._requeue(states)
        except Unreachable as err:
            raise UsageError(f"{err}; run again once it is reachable") from None
        self.source = ClaimSource(
            self.link,
            self.keys,
            self.jobs,
            worker=self.worker,
            lease=self.lease,
            guard=self.guard,
            ledger=ledger,
            rules=rules,
            skip=skip,
            wall=wall,
        )
        return self.source

    async def _reconcile(self, ledger: Ledger, wall: WallClock) -> None:
        finals: list[tuple[int, str, str]] = []  # index, state, done entry
        flying: list[tuple[int, str]] = []  # index, request record
        now = wall()
        for row in ledger.rows():
            if not (0 <= row.idx < len(self.jobs)) or self.jobs[row.idx].key != row.key:
                continue  # a row of another manifest that used this folder
            if row.state in ("completed", "failed", "expired"):
                entry = done_entry(row.state, self.worker, row.key, now, row.request_id)
                finals.append((row.idx, row.state, entry))
            elif row.state == "submitted" and row.request_id and row.submitted_at:
                record = {
                    "state": "submitted",
                    "request_id": row.request_id,
                    "submitted_at": row.submitted_at,
                    "worker": self.worker,
                }
                flying.append((row.idx, json.dumps(record)))
        keys = self.keys

        def tell(finals: list[tuple[int, str, str]], flying: list[tuple[int, str]]) -> list[bool]:
            client: Any = self.link.client
            # A request id the run does not know yet (none, or only a submit on
            # the wire): whoever claims the job re-attaches to it. A known one
            # is the same, or newer.
            known = client.hmget(keys.requests, [str(idx) for idx, _ in flying]) if flying else []
            pipe = client.pipeline(transaction=False)
            for (idx, record), raw in zip(flying, known, strict=True):
                if not LeaseRecord.parse(raw or "").request_id:
                    pipe.hset(keys.requests, str(idx), record)
            pipe.execute()
            for idx, _, entry in finals:
                pipe.hsetnx(keys.done, str(idx), entry)
            marked = [bool(x) for x in pipe.execute()]
            for (_, state, _), first in zip(finals, marked, strict=True):
                if first:
                    pipe.hincrby(keys.meta, state, 1)
            pipe.execute()
            return marked

        for start in range(0, max(len(finals), len(flying)), _BATCH):
            part = finals[start : start + _BATCH]
            marked = await self.link.run(
                functools.partial(tell, part, flying[start : start + _BATCH])
            )
            for (idx, state, _), first in zip(part, marked, strict=True):
                if first:
                    self.reconciled += 1
                    known = ledger.get(self.jobs[idx].key)
                    charged = known.charged if known is not None else None
                    await self.guard.reconcile(self.jobs[idx].key, state, charged)

    async def finished_elsewhere(self, ledger: Ledger) -> dict[str, int]:
        """Jobs this folder left unfinished whose end another worker recorded, by folder state.

        A job this worker claimed and lost (it stalled past its lease, and the
        taker finished it) stays planned, submitting or submitted here; the
        run's `done` hash (set once, HSETNX) says it ended. Such a job counts
        as done for this worker's exit code (runner/modes.py feeds it there).
        Empty when the coordinator is lost: the run's record cannot be read.
        """
        unfinished = [
            row
            for row in ledger.rows()
            if row.state in _UNFINISHED
            and 0 <= row.idx < len(self.jobs)
            and self.jobs[row.idx].key == row.key
        ]
        if not unfinished or self.link.lost is not None:
            return {}
        keys = self.keys

        def read(part: list[JobRow]) -> list[Any]:
            client: Any = self.link.client
            found: list[Any] = client.hmget(keys.done, [str(row.idx) for row in part])
            return found

        by_state: dict[str, int] = {}
        for start in range(0, len(unfinished), _BATCH):
            part = unfinished[start : start + _BATCH]
            try:
                found = await self.link.run(functools.partial(read, part))
            except Unreachable:
                return {}
            for row, raw in zip(part, found, strict=True):
                if raw:
                    by_state[row.state] = by_state.get(row.state, 0) + 1
        return by_state

    async def _requeue(self, states: list[str]) -> None:
        keys = self.keys

        def requeue() -> int:
            client: Any = self.link.client
            n = 0
            for idx, raw in client.hgetall(keys.done).items():
                state = json.loads(raw).get("state")
                # HDEL answers 1 to one worker only: only that one adds the job again.
                if state in states and client.hdel(keys.done, idx):
                    pipe = client.pipeline(transaction=False)
                    pipe.hdel(keys.requests, idx)
                    pipe.hincrby(keys.meta, state, -1)
                    pipe.xadd(keys.jobs, {"job": idx})
                    pipe.execute()
                    n += 1
            return n

        self.requeued += await self.link.run(requeue)

    async def heartbeat(self) -> None:
        """Renew this worker's claims every lease/3 seconds, until cancelled or lost."""
        while True:
            await anyio.sleep(self.lease / 3)
            if not await self.beat():
                return

    async def beat(self) -> bool:
        """One heartbeat; False once the coordinator is lost.

        XCLAIM ... JUSTID of the entries this worker holds resets their idle
        time (the lease); an entry another worker took over meanwhile (this
        one stalled past its lease) is not renewed but forgotten. Between
        reading the owners and renewing, a taker may still take one: only a
        worker already late by a whole lease can lose a job so, and the
        job's final state is set once whoever finishes it.
        """
        claims = self.source.held() if self.source is not None else []
        held = {c.entry for c in claims}
        keys = self.keys

        def beat() -> tuple[int, set[str]]:
            client: Any = self.link.client
            seconds, micros = client.time()
            now = float(seconds) + float(micros) / 1e6  # Redis's clock, not money
            client.hset(keys.seen, self.worker, f"{now:.6f}")
            alive = sum(1 for t in client.hvals(keys.seen) if now - float(t) <= self.lease)
            mine = {
                p["message_id"]
                for p in client.xpending_range(
                    keys.jobs, GROUP, "-", "+", PENDING, consumername=self.worker
                )
            }
            renew = sorted(held & mine)
            if renew:
                client.xclaim(keys.jobs, GROUP, self.worker, 0, renew, justid=True)
            return alive, held - mine

        try:
            alive, gone = await self.link.run(beat)
        except Unreachable:
            return False
        self._peers[0] = max(1, alive)
        if gone and self.source is not None:
            self.source.forget(c.index for c in claims if c.entry in gone)
        return True


def _worker_info(worker: str, out: Path, lease: float) -> str:
    return json.dumps(
        {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "out": str(out),
            "lease": lease,  # `runner status` judges the worker's silence by it
            "started": round(wall_time(), 3),
        }
    )


@asynccontextmanager
async def join_run(
    spec: CoordinatorSpec,
    *,
    manifest: Manifest,
    jobs: Sequence[Job],
    budget: Micros | None,
    config: SchedulerConfig,
    base_url: str,
    api_key: str | None,
    out: Path,
    prices: Mapping[str, Mapping[str, float]] = DEFAULT_PRICES,
) -> AsyncIterator[Coordination]:
    """Join (or start) the run of `manifest` on the coordinator; see the module docstring.

    `jobs` is the manifest's whole expansion; `config` gives the rate
    budget (already time-scaled); `base_url` and `api_key` name the shared
    rate gate (the key only hashed). Raises UsageError (exit 2) when the
    coordinator cannot be used.
    """
    link = await anyio.to_thread.run_sync(RedisLink.connect, spec.url)
    try:
        keys = run_keys(manifest.sha256, spec.run_id)
        await init_run(link, keys, manifest, run_id=spec.run_id, jobs=jobs, budget=budget)
        from runner.coordination.identity import new_worker_id

        worker = new_worker_id()
        peers = [1]
        async with anyio.create_task_group() as tg:

            def spawn(fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
                tg.start_soon(fn)

            guard = SharedCreditGuard(link, keys, budget, prices)
            gate = SharedRateGate(
                link,
                rate_keys(base_url, api_key),
                config.rpm,
                config.window,
                margin=config.margin,
                model=config.rate_model,
                member=worker,
                spawn=spawn,
                peers=lambda: peers[0],
                auto=config.rpm_auto,
            )
            coord = Coordination(
                link,
                keys,
                jobs,
                worker=worker,
                lease=spec.lease,
                guard=guard,
                gate=gate,
                peers=peers,
            )
            info = _worker_info(worker, out, spec.lease)
            try:
                await link.run(lambda: link.client.hset(keys.workers, worker, info))
                await guard.refresh()
                await coord.beat()
            except Unreachable as err:
                raise UsageError(f"{err}; check that it is up, then run again") from None
            tg.start_soon(coord.heartbeat)
            failure: Exception | None = None
            try:
                yield coord
            except Exception as err:
                # Raised below, outside the task group, so callers get the
                # error itself rather than an exception group.
                failure = err
            finally:
                tg.cancel_scope.cancel()
        with anyio.CancelScope(shield=True):
            await _leave(link, keys, worker, info)
        if failure is not None:
            raise failure
    finally:
        link.close()


async def _leave(link: RedisLink, keys: RunKeys, worker: str, info: str) -> None:
    if link.lost is not None:
        return
    ended = {**json.loads(info), "ended": round(wall_time(), 3)}

    def leave() -> None:
        pipe = link.client.pipeline()
        pipe.hset(keys.workers, worker, json.dumps(ended))
        pipe.hdel(keys.seen, worker)
        pipe.execute()

    # Lost: its heartbeat stops, so it drops out of the live count within a lease.
    with contextlib.suppress(Unreachable):
        await link.run(leave)
