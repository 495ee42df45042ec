"""The dispatcher: pulls work items lazily and walks the run's limits for each.

Each limit is a small object with `wait` / `started` / `finished` (the
habit of aiometer's meters): `wait` blocks until the item may start and
takes what it needs (a credit reservation, a place in flight), or says the
run stops; `started` is told the job's task started; `finished` gives back
what `wait` took, when the job ends or when it never started. The loop only
walks the list, in order::

    price scout:  while a price class is unobserved, one job of it at a time
    credit guard: reserve the job's reservation (hold it for a re-attach), or stop
    in-flight cap: wait for a place

The scout comes before the guard: a job waiting for its class's scout is
reserved at what the scout taught, not at the guess made before it.

The rate gate is not a limit of the dispatcher: it paces each call of a job
(runner.scheduling.calls), not the start of jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import anyio
from anyio.abc import TaskGroup

from runner.money import Micros, format_usd
from runner.scheduling.context import RunContext
from runner.scheduling.credits import Credits
from runner.scheduling.inflight import InFlightCap
from runner.scheduling.lifecycle import Unsent
from runner.scheduling.prices import PriceBook
from runner.scheduling.source import SourceFeed, WorkItem
from runner.scheduling.stop import Stop


class Limit(Protocol):
    """One limit on starting jobs."""

    async def wait(self, item: WorkItem) -> bool:
        """Wait until `item` may start and take what it needs; False: the run stops."""
        ...

    def started(self, item: WorkItem) -> None:
        """The item's job task was started."""

    async def finished(self, item: WorkItem, *, ran: bool) -> None:
        """Give back what `wait` took: the job ended (`ran`) or never started."""


class ScoutLimit:
    """One job at a time of a price class no charge has been seen for (its scout).

    Until the scout's charge is known, a wrong price table costs at most
    that one job's overshoot (runner.scheduling.prices).
    """

    def __init__(self, book: PriceBook) -> None:
        self._book = book
        self._changed = anyio.Event()

    async def wait(self, item: WorkItem) -> bool:
        while not self._book.may_start(item.job):
            await self._changed.wait()
        return True

    def started(self, item: WorkItem) -> None:
        self._book.started(item.job)

    async def finished(self, item: WorkItem, *, ran: bool) -> None:
        if ran:
            # A no-op when the job's charge already ended its scouting.
            self._book.ended(item.job)
        self._changed.set()
        self._changed = anyio.Event()


class CreditLimit:
    """Reserves each new job's price (runner.scheduling.prices); a re-attached one's is held.

    A job that does not fit stops the run (`hold_submits=False`: jobs
    already reserved go on). A job that ran settles or refunds its own
    reservation; one that never started is refunded here.
    """

    def __init__(self, guard: Credits, stop: Stop, book: PriceBook | None = None) -> None:
        self._guard = guard
        self._stop = stop
        self._book = book

    async def wait(self, item: WorkItem) -> bool:
        guard = self._guard
        job = item.job
        # Without a book: the guard's table estimate.
        estimate = guard.estimate(job) if self._book is None else self._book.reservation(job)
        if item.resume is not None:
            await guard.hold(job.key, estimate)
            return True
        if await guard.reserve(job.key, estimate):
            return True
        stats = guard.stats()
        reason = guard.stopped or (
            f"credit budget reached: the next job needs {format_usd(estimate)} and "
            f"{format_usd(stats.committed)} of {format_usd(stats.budget or 0)} is committed"
        )
        if guard.stopped is None and stats.ambiguous > 0:
            # Possible spend (lost answers, a kill mid-submit) is bounded: say the way out.
            # Raised by what the next job lacks, the run would stop again at the one after;
            # raised by the possible spend, a cap that covered the jobs covers them again.
            short = Micros(stats.committed + estimate - (stats.budget or 0))
            reason += (
                f", {format_usd(stats.ambiguous)} of it possibly billed by lost or killed "
                f"submits: raise max_credits by {format_usd(max(short, stats.ambiguous))} "
                "to go on"
            )
        await guard.stop(reason)
        self._stop.request(reason, hold_submits=False)
        return False

    def started(self, item: WorkItem) -> None:
        return None

    async def finished(self, item: WorkItem, *, ran: bool) -> None:
        if not ran and item.resume is None:
            await self._guard.refund(item.job.key)


class InFlightLimit:
    """A place under the in-flight cap for each job, from its start to its end."""

    def __init__(self, cap: InFlightCap) -> None:
        self._cap = cap

    async def wait(self, item: WorkItem) -> bool:
        await self._cap.acquire()
        return True

    def started(self, item: WorkItem) -> None:
        return None

    async def finished(self, item: WorkItem, *, ran: bool) -> None:
        self._cap.release()


class Runs(Protocol):
    """What runs a job to its end (runner.scheduling.job.JobRunner)."""

    async def run_job(self, item: WorkItem) -> None:
        """Run `item` and publish its final record; never raises a RunnerError."""


def default_limits(ctx: RunContext) -> list[Limit]:
    """The limits of a run, in the order they are waited for."""
    return [
        ScoutLimit(ctx.prices),
        CreditLimit(ctx.guard, ctx.stop, ctx.prices),
        InFlightLimit(ctx.cap),
    ]


class Dispatcher:
    """Starts a task per admitted item until the source is empty or the run stops."""

    def __init__(
        self,
        stop: Stop,
        limits: Sequence[Limit],
        runner: Runs,
        feed: SourceFeed,
        drained: Callable[[], None] | None = None,
    ) -> None:
        """`drained` is told once the source has no more items (polling's end game)."""
        self._stop = stop
        self._limits = tuple(limits)
        self._runner = runner
        self._feed = feed
        self._drained = drained

    async def dispatch(self, tg: TaskGroup) -> None:
        """Pull, admit and start items in `tg`; returns when no more will start."""
        while not self._stop.state.stopped:
            item = await self._feed.source.next()
            if item is None:
                if self._drained is not None:
                    self._drained()
                return
            if not await self._admit(item):
                # Pulled, never started: only the source hears of it (the
                # ledger keeps whatever an earlier run left there).
                await self._feed.record(Unsent(item.job))
                break
            tg.start_soon(self._run, item)
        # Stopped. Jobs already paid for cost nothing more to finish: unless
        # the stop abandons polls (or is fatal), the source's leftovers of
        # them (a dead worker's, in a shared run) are re-attached.
        while (state := self._stop.state).stopped and not state.abandon_polls:
            if state.fatal is not None:
                return
            item = await self._feed.source.after_stop()
            if item is None:
                return
            if item.resume is None or not await self._admit(item, paid=True):
                await self._feed.record(Unsent(item.job))
                return
            tg.start_soon(self._run, item)

    async def _admit(self, item: WorkItem, *, paid: bool = False) -> bool:
        """Wait for every limit; `paid`: a re-attachment after the stop, admitted all the same."""
        taken: list[Limit] = []
        for limit in self._limits:
            if (self._stop.state.stopped and not paid) or not await limit.wait(item):
                await self._give_back(item, taken)
                return False
            taken.append(limit)
        if self._stop.state.stopped and not paid:  # it stopped while the last limit waited
            await self._give_back(item, taken)
            return False
        for limit in self._limits:
            limit.started(item)
        return True

    @staticmethod
    async def _give_back(item: WorkItem, taken: Sequence[Limit]) -> None:
        for limit in reversed(taken):
            await limit.finished(item, ran=False)

    async def _run(self, item: WorkItem) -> None:
        try:
            await self._runner.run_job(item)
        finally:
            # Shielded: a cancelled run still gives back what its jobs took.
            with anyio.CancelScope(shield=True):
                for limit in reversed(self._limits):
                    await limit.finished(item, ran=True)
