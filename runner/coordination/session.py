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
import hashlib
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread

from runner.coordination.claims import ClaimSource
from runner.coordination.client import RedisLink, Unreachable
from runner.coordination.credits import SharedCreditGuard, to_micro
from runner.coordination.gate import SharedRateGate
from runner.coordination.handover import HandoverRules
from runner.coordination.identity import (
    LAYOUT,
    RUNS_INDEX,
    RunKeys,
    check_run_id,
    rate_keys,
    run_keys,
)
from runner.coordination.scripts import INIT_RUN, RECONCILE, RENEW, REQUEUE
from runner.errors import UsageError
from runner.jobs import Job
from runner.manifest import Manifest
from runner.params import DEFAULT_PRICES
from runner.scheduling.scheduler import SchedulerConfig
from runner.store import Ledger

DEFAULT_LEASE_S: Final = 15.0
"""Seconds a claimed job stays this worker's without a heartbeat (real time, not scaled)."""
MIN_LEASE_S: Final = 1.0
_BATCH: Final = 200


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


def jobs_digest(jobs: Sequence[Job]) -> str:
    """A digest of the expansion (every job key in order): workers must agree on it."""
    digest = hashlib.sha256()
    for job in jobs:
        digest.update(job.key.encode("ascii"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


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
        wall: Callable[[], float] = time.time,
    ) -> ClaimSource:
        """Reconcile `ledger` with the run, then the claim source to run from.

        `skip(job, why)` counts a claimed job this folder already finished;
        `stop(reason)` is called once if the coordinator is lost mid-run
        (the scheduler stops new submits and finishes what is in flight).
        Raises UsageError when the coordinator is lost already.
        """
        self.link.on_lost(stop)
        try:
            await self._reconcile(ledger)
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

    async def _reconcile(self, ledger: Ledger) -> None:
        rows = {}
        for row in ledger.rows():
            if not (0 <= row.idx < len(self.jobs)) or self.jobs[row.idx].key != row.key:
                continue  # a row of another manifest that used this folder
            final = row.state in ("completed", "failed", "expired")
            flying = row.state == "submitted" and row.request_id and row.submitted_at
            if final or flying:
                rows[row.idx] = row
        items = sorted(rows.items())
        for start in range(0, len(items), _BATCH):
            args: list[str] = [self.worker]
            for idx, row in items[start : start + _BATCH]:
                at = "" if row.submitted_at is None else f"{row.submitted_at:.6f}"
                args += [str(idx), row.key, row.state, row.request_id or "", at]
            marked = await self.link.script(
                RECONCILE,
                [
                    self.keys.meta,
                    self.keys.cursor,
                    self.keys.returned,
                    self.keys.leases,
                    self.keys.lease,
                    self.keys.done,
                ],
                args,
            )
            for pos in range(0, len(marked), 2):
                row = rows[int(marked[pos])]
                self.reconciled += 1
                await self.guard.reconcile(row.key, str(marked[pos + 1]), row.charged)

    async def _requeue(self, states: list[str]) -> None:
        done = await self.link.run(lambda: self.link.client.hgetall(self.keys.done))
        wanted = [str(idx) for idx, raw in done.items() if json.loads(raw).get("state") in states]
        for start in range(0, len(wanted), _BATCH):
            self.requeued += int(
                await self.link.script(
                    REQUEUE,
                    [self.keys.done, self.keys.returned, self.keys.meta],
                    [",".join(states), *wanted[start : start + _BATCH]],
                )
            )

    async def heartbeat(self) -> None:
        """Renew this worker's leases every lease/3 seconds, until cancelled or lost."""
        while True:
            await anyio.sleep(self.lease / 3)
            if not await self.beat():
                return

    async def beat(self) -> bool:
        """One heartbeat; False once the coordinator is lost."""
        held = self.source.held() if self.source is not None else []
        args: list[str | float] = [self.worker, self.lease]
        for claim in held:
            args += [str(claim.index), claim.token]
        try:
            reply = await self.link.script(
                RENEW, [self.keys.leases, self.keys.lease, self.keys.seen], args
            )
        except Unreachable:
            return False
        self._peers[0] = max(1, int(reply[0]))
        if len(reply) > 1 and self.source is not None:
            self.source.forget([int(idx) for idx in reply[1:]])
        return True


async def _init_run(
    link: RedisLink,
    keys: RunKeys,
    manifest: Manifest,
    *,
    spec: CoordinatorSpec,
    jobs: Sequence[Job],
    budget: float | None,
) -> None:
    fields = {
        "total": str(len(jobs)),
        "jobs_digest": jobs_digest(jobs),
        "budget": "" if budget is None else str(to_micro(budget)),
        "layout": LAYOUT,
        "manifest_sha256": manifest.sha256,
        "name": manifest.name,
        "path": manifest.path,
        "run_id": spec.run_id or "",
        "created": f"{time.time():.3f}",
    }
    args: list[str] = []
    for name, value in fields.items():
        args += [name, value]
    try:
        reply = await link.script(INIT_RUN, [keys.meta, keys.credits], args)
        # Apart from the script: the index lives outside the run's hash tag.
        await link.run(lambda: link.client.sadd(RUNS_INDEX, keys.run))
    except Unreachable as err:
        raise UsageError(f"{err}; check that it is up, then run again") from None
    flat = [str(v) for v in reply[1:]]
    meta = dict(zip(flat[::2], flat[1::2], strict=True))
    where = f"run {keys.run} on {link.url}"
    if meta.get("layout") != LAYOUT:
        raise UsageError(
            f"{where} was made by another runner version (layout {meta.get('layout')!r}, "
            f"this one {LAYOUT!r}): run the same runner version everywhere, or use another --run-id"
        )
    if (meta.get("total"), meta.get("jobs_digest")) != (fields["total"], fields["jobs_digest"]):
        raise UsageError(
            f"{where} has {meta.get('total')} jobs that differ from this worker's "
            f"{fields['total']}: every worker needs the same manifest and input images "
            "(and runner version); or use another --run-id"
        )
    if meta.get("budget", "") != fields["budget"]:

        def usd(micro: str) -> str:
            return "no cap" if not micro else f"${int(micro) / 1_000_000:.2f}"

        raise UsageError(
            f"{where} has a budget of {usd(meta.get('budget', ''))}; this worker asks for "
            f"{usd(fields['budget'])}: give every worker the same --max-credits "
            "(or budget.max_credits), or use another --run-id"
        )


def _worker_info(worker: str, out: Path, lease: float) -> str:
    return json.dumps(
        {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "out": str(out),
            "lease": lease,  # `runner status` judges the worker's silence by it
            "started": round(time.time(), 3),
        }
    )


@asynccontextmanager
async def join_run(
    spec: CoordinatorSpec,
    *,
    manifest: Manifest,
    jobs: Sequence[Job],
    budget: float | None,
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
        await _init_run(link, keys, manifest, spec=spec, jobs=jobs, budget=budget)
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
    ended = {**json.loads(info), "ended": round(time.time(), 3)}

    def leave() -> None:
        pipe = link.client.pipeline()
        pipe.hset(keys.workers, worker, json.dumps(ended))
        pipe.hdel(keys.seen, worker)
        pipe.execute()

    # Lost: its heartbeat stops, so it drops out of the live count within a lease.
    with contextlib.suppress(Unreachable):
        await link.run(leave)
