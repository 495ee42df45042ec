"""Where the scheduler puts what it learns: the JobSink protocol.

The scheduler does not import the store; the run wires a sink that writes
files and ledger rows. Every method is called from the event loop's thread,
in the job's order of events: submitting -> submitted -> (image...) ->
completed, or -> failed / expired / ambiguous at any point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from runner.backends.base import Metrics, Submission
from runner.jobs import Job
from runner.money import Micros


@dataclass(frozen=True, slots=True)
class SavedImage:
    """An image the sink checked and wrote; `path` is relative to the output folder."""

    path: str
    bytes: int


@dataclass(frozen=True, slots=True)
class Completion:
    """What the sink needs to finish a job. Wall times are UTC epoch seconds; money µ$."""

    request_id: str | None
    submitted_wall: float | None
    completed_wall: float
    wall_s: float | None
    metrics: Metrics
    estimate: Micros
    charged: Micros  # what the guard counted: the reported cost, else the estimate
    seed: int | None = None
    reported: Micros | None = None  # the answer's own cost (metrics.cost), converted once


class JobSink(Protocol):
    """Durable record of jobs. Raises runner.errors.StoreError on disk faults."""

    def submitting(self, job: Job, estimate: Micros) -> None:
        """About to send the submit (a crash after this is an ambiguous submit)."""

    def submitted(self, job: Job, submission: Submission, wall: float) -> None:
        """The server accepted it; must be durable before the first poll."""

    def save_image(self, job: Job, index: int, data: bytes) -> SavedImage:
        """Check (raises runner.errors.DownloadError) and atomically write one image."""
        ...

    def completed(self, job: Job, images: list[SavedImage], completion: Completion) -> None:
        """Write the sidecars (the "done" markers) and record the job completed."""

    def failed(self, job: Job, reason: str, *, request_id: str | None = None) -> None:
        """A final failure for this job."""

    def expired(self, job: Job) -> None:
        """The server no longer holds the job's result."""

    def ambiguous(self, job: Job) -> None:
        """A submit's answer was lost; the job may have been billed."""

    def unsent(self, job: Job) -> None:
        """The job was not submitted after all (stopped before sending): back to planned."""
