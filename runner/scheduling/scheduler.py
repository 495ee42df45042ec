"""The scheduler: runs work items against a backend under a run's limits.

It only wires the parts, each in its own module:

    dispatch.py   pulls items lazily, walks the limits (credit guard, in-flight
                  cap), starts a task per job
    job.py        one job to its final record: billed call, poll, download
    calls.py      calls through the rate gate with retries; the one billed send
    stop.py       the stop state (budget, 406, interrupt, fatal error)
    lifecycle.py  the records of a job's life, the one channel to the sink,
                  the source and the listeners
    broadcast.py  listeners, fed through memory streams, their failures contained

The rate gate, the credit guard and the source of work items are injected
behind small protocols (`RateLimit`, `Credits`, `WorkSource`): one process
uses the local ones, several workers sharing a budget use
runner.coordination's, which live in Redis.

Each record of a job goes, in order, to the sink (awaited: durable on
return), to the source (awaited) and, as an `Event` with a stats snapshot,
to the listeners (never awaited). A job never waits for a listener, and a
listener that fails is dropped without touching a job.

Stopping (stop.py): `request_stop(reason)` (the budget, a 406) lets no new
job start and lets submitted jobs finish; with `abandon_polls` (Ctrl-C, a
refused key, a disk fault) polling jobs stop too and are left in the ledger
as submitted, to be re-attached by the next run while the server keeps them.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable

import anyio

from runner.backends.base import Backend
from runner.clock import wall_time
from runner.errors import RunnerError
from runner.events import Event, EventKind, Listener, RateInfo, RunStats
from runner.jobs import Job
from runner.money import to_usd
from runner.scheduling.broadcast import Broadcast
from runner.scheduling.calls import call
from runner.scheduling.config import DEFAULT_MAX_DOWNLOAD, RateScope, SchedulerConfig
from runner.scheduling.context import RunContext, Tally
from runner.scheduling.credits import Credits
from runner.scheduling.dispatch import Dispatcher, default_limits
from runner.scheduling.inflight import InFlightCap, auto_cap
from runner.scheduling.job import JobRunner
from runner.scheduling.lifecycle import (
    Ambiguous,
    Completed,
    Expired,
    Failed,
    JobEnd,
    JobEvent,
    Left,
    Reattached,
    Refused,
    Submitted,
    Submitting,
)
from runner.scheduling.polling import Polling
from runner.scheduling.prices import PriceBook, book_for
from runner.scheduling.rate import RateGate, RateLimit
from runner.scheduling.sink import JobSink
from runner.scheduling.source import IterSource, SourceFeed, WorkItem, WorkSource
from runner.scheduling.stop import Stop

__all__ = ["DEFAULT_MAX_DOWNLOAD", "RateScope", "Scheduler", "SchedulerConfig", "WorkItem"]


class Scheduler:
    """Runs work items against a backend under a rate gate, a credit guard and a cap.

    `gate` defaults to a local `RateGate` built from `config`; `wall` gives
    UTC epoch seconds; `prices` (what jobs are reserved at, see
    runner.scheduling.prices) defaults to a book of the default price table.
    """

    def __init__(
        self,
        backend: Backend,
        sink: JobSink,
        guard: Credits,
        config: SchedulerConfig,
        *,
        listeners: Iterable[Listener] = (),
        wall: Callable[[], float] = wall_time,
        gate: RateLimit | None = None,
        prices: PriceBook | None = None,
    ) -> None:
        self._sink = sink
        # Jobs whose billed call went out (or re-attached): what "in flight"
        # counts. A job holding the cap but not yet sent waits for the rate window.
        self._sent: set[str] = set()
        self._listeners = list(listeners)
        self._broadcast: Broadcast | None = None
        # Events before the run starts (a stop asked early), sent when it does.
        self._early: list[tuple[Event, RunStats]] = []
        self._feed = SourceFeed(IterSource(()))
        self._start: float | None = None
        rng = random.Random(config.seed)
        polls = Polling(config.poll, rng, retention=config.retention)
        first_cap = config.max_in_flight or auto_cap(config.rpm, config.window, polls.expected())
        self._ctx = RunContext(
            backend=backend,
            guard=guard,
            config=config,
            gate=gate
            or RateGate(
                config.rpm,
                config.window,
                margin=config.margin,
                model=config.rate_model,
                auto=config.rpm_auto,
                seed=config.seed,
            ),
            wall=wall,
            rng=rng,
            polls=polls,
            cap=InFlightCap(first_cap),
            stop=Stop(lambda reason: self._emit("stopping", None, reason)),
            tally=Tally(),
            publish=self._publish,
            emit=self._emit,
            prices=prices or book_for(budget=guard.stats().budget),
            submits=anyio.CapacityLimiter(config.max_submits_in_flight),
        )

    # -- public ------------------------------------------------------------

    @property
    def stop_reason(self) -> str | None:
        """Why new submits stopped, or None."""
        return self._ctx.stop.state.reason

    def request_stop(
        self, reason: str, *, hold_submits: bool = True, abandon_polls: bool = False
    ) -> None:
        """No new job starts.

        `hold_submits`: jobs dispatched but not yet sent are not sent (a 406,
        an interrupt); without it they go on (the budget: they are reserved).
        `abandon_polls` (an interrupt, a fatal error): submitted jobs stop
        polling and stay re-attachable by the next run; without it they finish.
        """
        self._ctx.stop.request(reason, hold_submits=hold_submits, abandon_polls=abandon_polls)

    def stats(self) -> RunStats:
        """A frozen snapshot of the counters. Credits in USD, `elapsed` in seconds."""
        ctx = self._ctx
        counts = ctx.tally.counts
        credit = ctx.guard.stats()
        sent = len(self._sent)
        # A job that has ended may hold its cap slot a moment longer: never
        # count more jobs waiting than are left.
        waiting = ctx.cap.used - sent
        unsent = None
        if ctx.tally.planned is not None:
            ended = sum(counts[k] for k in ("completed", "failed", "skipped", "cached", "expired"))
            waiting = min(waiting, ctx.tally.planned - ended - sent)
            unsent = ctx.tally.planned - ended - sent
        next_slot, eta = rate_wait(ctx.gate, waiting=waiting, unsent=unsent)
        return RunStats(
            planned=ctx.tally.planned,
            completed=counts["completed"],
            failed=counts["failed"],
            skipped=counts["skipped"],
            cached=counts["cached"],
            expired=counts["expired"],
            in_flight=sent,
            waiting=max(0, waiting),
            images=counts["images"],
            ambiguous=counts["ambiguous"],
            rate_limited=counts["rate_limited"],
            retries=counts["retry"],
            credits_spent=to_usd(credit.spent),
            credits_earlier=to_usd(credit.earlier),
            credits_reserved=to_usd(credit.reserved),
            credits_ambiguous=to_usd(credit.ambiguous),
            calls=dict(ctx.tally.calls),
            stopped=ctx.stop.state.reason or credit.stopped,
            elapsed=anyio.current_time() - self._start if self._start is not None else 0.0,
            rate=rate_info(ctx.gate, config=ctx.config),
            next_slot_s=next_slot,
            rate_eta_s=eta,
            price_surprises=ctx.prices.surprises,
        )

    def skipped(self, job: Job | None, detail: str = "", *, count: int = 1) -> None:
        """Count `count` jobs an earlier run finished (the caller decided to skip them).

        One event for all of them: `job` is the one job of a single skip
        (a shared run's claim), None for a batch of the resume walk.
        """
        self._ctx.tally.counts["skipped"] += count
        self._emit("skipped", job, detail, count=count)

    def cached(self, job: Job) -> None:
        """Count a job the caller served from the cache of finished jobs (nothing sent)."""
        self._ctx.tally.counts["cached"] += 1
        self._emit("cached", job, "served from the cache")

    async def balance(self) -> float | None:
        """The account's balance in USD (None where the API does not say or cannot now).

        Goes through the rate gate like any call, since a budget that counts
        every call counts this one too.
        """
        try:
            return await call(self._ctx, "credits", None, self._ctx.backend.credits, priority=0)
        except RunnerError:
            return None  # advice only: a run does not fail over it

    async def run(
        self, items: Iterable[WorkItem] | WorkSource, planned: int | None = None
    ) -> RunStats:
        """Run every item (pulled lazily) to its end; returns the final stats.

        `items` is an iterable of work items, or a WorkSource (claims shared
        with other workers). Raises AuthError (the key was refused) and
        StoreError (a disk fault) after letting other in-flight jobs stop cleanly.
        """
        ctx = self._ctx
        # A WorkSource is not iterable; an iterable of items is pulled by an IterSource.
        self._feed = SourceFeed(IterSource(items) if isinstance(items, Iterable) else items)
        ctx.tally.planned = planned
        self._start = anyio.current_time()
        dispatcher = Dispatcher(
            ctx.stop, default_limits(ctx), JobRunner(ctx, self._sink), self._feed, ctx.polls.drained
        )
        broadcast = Broadcast(self._listeners)
        async with anyio.create_task_group() as listening:
            broadcast.start(listening)
            self._broadcast = broadcast
            for event, stats in self._early:
                broadcast.send(event, stats)
            self._early.clear()
            try:
                self._emit("started", None, f"{planned} jobs" if planned is not None else "")
                async with anyio.create_task_group() as tg:
                    await dispatcher.dispatch(tg)
                self._emit("finished", None, ctx.stop.state.reason or "")
            finally:
                self._broadcast = None
                broadcast.close()  # the listener tasks drain what was sent, then end
        fatal = ctx.stop.state.fatal
        if fatal is not None:
            raise fatal
        return self.stats()

    # -- the one channel of a job's life ----------------------------------------

    async def _publish(self, event: JobEvent) -> None:
        """Hand `event` to the sink, count it, then hand it to the source and the listeners.

        `Submitted` goes to the source first: the request id on the lease is
        what another worker needs to re-attach instead of paying again, and
        the ledger's commit may wait for its group. A worker that dies
        between the two leaves its own row `submitting`: counted as possibly
        billed, never paid twice.
        """
        if isinstance(event, Submitted):
            await self._feed.record(event)
        try:
            await self._sink.record(event)
        except RunnerError as err:
            if not isinstance(event, JobEnd):
                raise
            # The job's end could not be recorded: the run stops, and the
            # source is told it was left (re-attachable), not finished.
            self._ctx.stop.fail(err)
            await self._feed.record(Left(event.job))
            return
        # Counted once recorded, so the counters never run ahead of the ledger.
        _count(self._ctx.tally.counts, event)
        if isinstance(event, Submitting | Reattached):
            self._sent.add(event.job.key)
        elif isinstance(event, Refused | JobEnd):
            self._sent.discard(event.job.key)
        if not isinstance(event, Submitted):
            await self._feed.record(event)
        kind_detail = _listener_event(event)
        if kind_detail is not None:
            kind, detail = kind_detail
            credits = to_usd(event.completion.charged) if isinstance(event, Completed) else None
            self._emit(kind, event.job, detail, credits=credits)

    def _emit(
        self,
        kind: EventKind,
        job: Job | None = None,
        detail: str = "",
        *,
        credits: float | None = None,
        count: int = 1,
    ) -> None:
        if not self._listeners:
            return
        event = Event(
            kind=kind,
            at=anyio.current_time(),
            wall=self._ctx.wall(),
            key=job.key if job else None,
            prompt_id=job.prompt_id if job else None,
            detail=detail,
            credits=credits,
            count=count,
        )
        if self._broadcast is not None:
            self._broadcast.send(event, self.stats())
        elif self._start is None:
            self._early.append((event, self.stats()))


def _count(counts: Counter[str], event: JobEvent) -> None:
    """The run's counters a record moves."""
    if isinstance(event, Completed):
        counts["completed"] += 1
        counts["images"] += len(event.images)
    elif isinstance(event, Failed) or (isinstance(event, Left) and event.reason):
        counts["failed"] += 1
    elif isinstance(event, Expired):
        counts["expired"] += 1
    elif isinstance(event, Ambiguous):
        counts["ambiguous"] += 1


def _listener_event(event: JobEvent) -> tuple[EventKind, str] | None:
    """What the listeners are told of a job's record (kind, detail), if anything."""
    match event:
        case Reattached(submission=submission):
            return "reattached", submission.request_id
        case Submitted(submission=submission):
            return "submitted", submission.request_id
        case Ambiguous():
            return "ambiguous", "the submit's answer was lost; it may have been billed"
        case Completed(completion=completion):
            return "completed", completion.request_id or ""
        case Failed(reason=reason) | Left(reason=reason) if reason:
            return "failed", reason
        case Expired(request_id=request_id):
            return "expired", f"request {request_id} is gone from the server"
        case _:
            return None


def rate_wait(
    gate: RateLimit, *, waiting: int, unsent: int | None
) -> tuple[float | None, float | None]:
    """For the progress while jobs wait on a local gate: (seconds until it admits the
    next call, seconds until it has admitted all `unsent` jobs), on the run's clock.

    (None, None) when nothing waits or the gate cannot say (a shared gate);
    the second is None when the count is unknown or no limit applies; the
    first is infinite while the gate waits for a call on the wire to end.
    """
    if waiting <= 0 or not isinstance(gate, RateGate):
        return None, None
    now = anyio.current_time()
    wait = max(0.0, gate.next_slot(now) - now)
    if not math.isfinite(wait):
        return math.inf, None
    limit = gate.effective_limit
    if unsent is None or not limit:
        return wait, None
    # The next call at `wait`, then `limit` more per window: a lower bound
    # (it leaves out each job's own latency after its send).
    return wait, wait + max(0, -(-unsent // limit) - 1) * gate.span


def rate_info(gate: RateLimit, *, config: SchedulerConfig) -> RateInfo | None:
    """What a local gate learned of the server's limit, its window in real seconds."""
    if not isinstance(gate, RateGate):
        return None  # a shared gate keeps its belief in Redis
    quota = gate.quota()
    return RateInfo(
        limit=quota.limit,
        # The config's window is a scaled minute.
        window_s=round(quota.window * 60.0 / config.window, 3),
        learned=quota.learned,
        rate_limited=quota.rate_limited,
        declared=quota.declared,
    )
