"""Where the scheduler's work items come from: the WorkSource protocol.

The scheduler pulls one item at a time and tells the source what became of
each job, so one loop serves two cases:

- one process (`IterSource`, the default): a lazy iterator of the
  manifest's jobs; the notes are no-ops, the ledger is the only record;
- several workers (runner.coordination): the next job is *claimed* with a
  lease the source renews while the job is in flight; `submitting` and
  `submitted` record on the lease what another worker needs to take the job
  over if this one dies (the request id, or that a submit's answer is
  pending), and `finished` completes the job once for the whole run, or
  hands it back.

Order per job: `next` -> [`submitting` -> [`submitted`]] -> `finished`,
always exactly one `finished` per item `next` returned. The scheduler does
not call these itself: it produces the job's records
(runner.scheduling.lifecycle) and `SourceFeed` turns them into these calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import anyio.lowlevel

from runner.backends.base import Submission
from runner.jobs import Job
from runner.scheduling.lifecycle import (
    Completed,
    Expired,
    Failed,
    JobEvent,
    Left,
    Outcome,
    Submitted,
    Submitting,
    Unsent,
)

__all__ = ["IterSource", "Outcome", "SourceFeed", "WorkItem", "WorkSource"]


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A job to run; `resume` re-attaches to a request an earlier run submitted.

    `submitted_wall` is that submit's wall-clock epoch seconds.
    """

    job: Job
    resume: Submission | None = None
    submitted_wall: float | None = None


class WorkSource(Protocol):
    """The scheduler's supply of jobs, and the record of what became of each."""

    async def next(self) -> WorkItem | None:
        """The next item to run, or None when there is no more work for this worker."""
        ...

    async def after_stop(self) -> WorkItem | None:
        """After a stop that lets polls go on: a job already paid for, to re-attach to.

        Re-attaching costs nothing new, so a credit stop still finishes what
        was paid (a dead worker's submitted jobs in a shared run); None when
        there is none left.
        """
        ...

    async def submitting(self, job: Job) -> None:
        """The job's submit is about to go out (a death from now on leaves it ambiguous)."""

    async def submitted(self, job: Job, submission: Submission, wall: float) -> None:
        """The server accepted it (`wall`: epoch seconds); called before the first poll."""

    async def finished(self, job: Job, outcome: Outcome) -> None:
        """The job left this worker (see `Outcome`)."""


class IterSource:
    """A WorkSource over an iterable of items, pulled lazily: the single-process run.

    A None among the items is a checkpoint, not an item: a long synchronous
    stretch of the iterable (the resume walk skipping finished jobs) yields
    one now and then so that running jobs poll and a Ctrl-C lands.
    """

    def __init__(self, items: Iterable[WorkItem | None]) -> None:
        self._items: Iterator[WorkItem | None] = iter(items)

    async def next(self) -> WorkItem | None:
        for item in self._items:
            if item is not None:
                return item
            await anyio.lowlevel.checkpoint()
        return None

    async def after_stop(self) -> WorkItem | None:
        # The run's own re-attachments come first in its items: none is left over.
        return None

    async def submitting(self, job: Job) -> None:
        return None

    async def submitted(self, job: Job, submission: Submission, wall: float) -> None:
        return None

    async def finished(self, job: Job, outcome: Outcome) -> None:
        return None


class SourceFeed:
    """The source's view of a job's records: lease notes and the one `finished`."""

    def __init__(self, source: WorkSource) -> None:
        self.source = source

    async def record(self, event: JobEvent) -> None:
        """Tell the source what it needs of `event` (most records it does not need)."""
        match event:
            case Submitting(job=job):
                await self.source.submitting(job)
            case Submitted(job=job, submission=submission, wall=wall):
                await self.source.submitted(job, submission, wall)
            case Completed() | Failed() | Expired() | Unsent() | Left():
                await self.source.finished(event.job, event.outcome)
            case _:
                return
