"""Where the scheduler puts what it learns: the JobSink protocol.

The scheduler does not import the store; the run wires a sink that writes
files and ledger rows (runner.recorder). The sink consumes the records of
runner.scheduling.lifecycle, one call per transition of a job, in the job's
order; each call returns when what it records is durable, so the scheduler
awaits `Submitting` before the billed call and `Submitted` before the first
poll. A sink does its blocking I/O off the event loop.
"""

from __future__ import annotations

from typing import Protocol

from runner.jobs import Job
from runner.scheduling.lifecycle import Completion, JobEvent, SavedImage

__all__ = ["Completion", "JobSink", "SavedImage"]


class JobSink(Protocol):
    """Durable record of jobs. Raises runner.errors.StoreError on disk faults."""

    async def record(self, event: JobEvent) -> None:
        """Record one transition of a job's life; durable on return."""

    async def save_image(self, job: Job, index: int, data: bytes) -> SavedImage:
        """Check (raises runner.errors.DownloadError) and atomically write one image.

        Its sidecar comes with the job's `Completed` record.
        """
        ...
