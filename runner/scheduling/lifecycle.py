"""One job's life as records: the one channel from the scheduler to the store and the source.

The scheduler produces exactly one record per transition of a job and hands
it, in this order, to each consumer:

1. the sink (`JobSink.record`, runner.recorder: ledger rows, sidecars),
   awaited: the record is durable when the call returns;
2. the source (`SourceFeed.record` over a `WorkSource`: the leases of a
   shared run), awaited; for `Submitted` the source comes first, so that
   the request id another worker needs is on the lease as soon as possible;
3. the listeners (progress bar, ``--json``), as a runner.events `Event` put
   on a memory stream: never awaited, so a listener never holds up a job.

A job's records, in order::

    [Reattached]            polling a request id an earlier run recorded
    (Submitting             the billed call (v2 submit, v1 sync) is about to go out
     [Refused]              the server surely did not take it (429, 5xx, no
                            connection); a retry sends Submitting again
     [Ambiguous])...        its answer was lost: it may have been billed
    [Submitted]             the server accepted the v2 submit (request id)
    one final record        Completed | Failed | Expired | Unsent | Left

Every job the scheduler starts ends with exactly one final record; its
`outcome` is what the source is told (`WorkSource.finished`). An item pulled
but never started (the run stopped first) has no life in this run: only the
source hears of it, as `Unsent`. Neither has a job finished before the
scheduler sees it: one an earlier run did (`Scheduler.skipped`) or one served
from the cache of finished jobs (`Scheduler.cached`, the outcome ``cached``:
the run's modes.py seam records it completed at no charge, runner/cache.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from runner.backends.base import Metrics, Submission
from runner.jobs import Job
from runner.money import Micros

Outcome = Literal["completed", "failed", "expired", "unsent", "left"]
"""How a job ended in this worker.

``completed`` / ``failed`` / ``expired``: final for the run. ``unsent``: stopped
before its submit went out (back to the pool as it was). ``left``: it may have
been submitted and was not finished here (a stop, a poll deadline, a fatal
error): back to the pool with what the lease recorded, so another worker (or
the next run) re-attaches to its request id instead of paying again.
"""


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


@dataclass(frozen=True, slots=True)
class Reattached:
    """Polling `submission`, which an earlier run (or worker) submitted."""

    job: Job
    submission: Submission


@dataclass(frozen=True, slots=True)
class Submitting:
    """The billed call is about to be sent (a crash from now on leaves it ambiguous).

    `estimate` is the job's estimate in µ$.
    """

    job: Job
    estimate: Micros


@dataclass(frozen=True, slots=True)
class Refused:
    """The server surely did not take the call marked `Submitting`: not billed."""

    job: Job


@dataclass(frozen=True, slots=True)
class Ambiguous:
    """The billed call's answer was lost: it may have been accepted and billed."""

    job: Job


@dataclass(frozen=True, slots=True)
class Submitted:
    """The server accepted the submit; `wall` is UTC epoch seconds. Durable before any poll."""

    job: Job
    submission: Submission
    wall: float


@dataclass(frozen=True, slots=True)
class Completed:
    """Images written; the sink writes the sidecars and records the job completed."""

    job: Job
    images: tuple[SavedImage, ...]
    completion: Completion

    @property
    def outcome(self) -> Outcome:
        return "completed"


@dataclass(frozen=True, slots=True)
class Failed:
    """A final failure for this job (`reason` says why).

    `paid`: the server billed it (a result that could not be used): the ledger
    records it as a billed failure, so a later run's budget (--retry-failed)
    counts it too; `charged` is what the answer said it cost, µ$ (None: it
    stated none we believe, and the estimate stands for it).
    """

    job: Job
    reason: str
    request_id: str | None = None
    paid: bool = False
    charged: Micros | None = None

    @property
    def outcome(self) -> Outcome:
        return "failed"


@dataclass(frozen=True, slots=True)
class Expired:
    """The server no longer holds the result of `request_id`."""

    job: Job
    request_id: str

    @property
    def outcome(self) -> Outcome:
        return "expired"


@dataclass(frozen=True, slots=True)
class Unsent:
    """Stopped before its billed call went out (or the server refused it for credits)."""

    job: Job

    @property
    def outcome(self) -> Outcome:
        return "unsent"


@dataclass(frozen=True, slots=True)
class Left:
    """Not finished here; the ledger keeps it submitted, to re-attach within the hour.

    With a `reason` (a poll deadline, a download broken past its retries) it
    counts as failed for this run; without one it was stopped (Ctrl-C, a fatal error).
    """

    job: Job
    reason: str = ""

    @property
    def outcome(self) -> Outcome:
        return "left"


JobEnd = Completed | Failed | Expired | Unsent | Left
"""A record that ends a job's life in this worker."""

JobEvent = Reattached | Submitting | Refused | Ambiguous | Submitted | JobEnd
"""Any record of a job's life (see the module docstring for their order)."""
