"""What a worker does with a job it claimed, given its own folder and the lease's record.

The resume rules of docs/store.md, for a job that may have been another
worker's a moment ago:

1. all its images and sidecars are in this folder: it is done (recorded
   completed if the ledger missed it); nothing is sent.
2. a request id younger than the server's retention is known, this
   worker's own (its ledger) or the lease's (a dead worker's): re-attach
   to it, recording it in this ledger first; never submit again.
3. only older request ids: expired; submitted again only with
   ``--resubmit-expired``.
4. failed or expired here earlier: skipped unless ``--retry-failed`` /
   ``--resubmit-expired``.
5. the lease says a submit was on the wire when its worker died: the
   submit is ambiguous (it may have been billed); counted, and the job is
   submitted again, as one process does with a job left ``submitting``.
6. otherwise: submit it.

The ledger calls are the store's own, synchronous and quick.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runner.backends.base import submission_for
from runner.jobs import Job
from runner.money import Micros
from runner.scheduling.source import WorkItem
from runner.store import JobRow, Ledger, finished_files

FinalState = Literal["completed", "failed", "expired"]


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What the run's lease of a job says: its last known submit, if any."""

    state: str | None = None
    request_id: str | None = None
    submitted_at: float | None = None

    @classmethod
    def parse(cls, raw: str) -> LeaseRecord:
        """From the lease hash's JSON (empty text: no record)."""
        if not raw:
            return cls()
        doc = json.loads(raw)
        at = doc.get("submitted_at")
        rid = doc.get("request_id")
        return cls(
            state=doc.get("state") if isinstance(doc.get("state"), str) else None,
            request_id=rid if isinstance(rid, str) and rid else None,
            submitted_at=float(at) if isinstance(at, int | float) else None,
        )


@dataclass(frozen=True, slots=True)
class Run:
    """Run the item; `ambiguous`: a dead worker's submit of it may have been billed."""

    item: WorkItem
    ambiguous: bool = False


@dataclass(frozen=True, slots=True)
class Skip:
    """Do not run it: it ended `state` (`charged` µ$ when completed and reported)."""

    detail: str
    state: FinalState
    charged: Micros | None = None


@dataclass(frozen=True, slots=True)
class HandoverRules:
    """The run's options that bear on a claimed job. `retention` in seconds."""

    out: Path
    base_url: str
    pattern: str | None
    retention: float
    retry_failed: bool = False
    resubmit_expired: bool = False


def decide(
    job: Job,
    lease: LeaseRecord,
    *,
    ledger: Ledger,
    rules: HandoverRules,
    estimate: Micros,
    wall: Callable[[], float],
) -> Run | Skip:
    """What to do with claimed `job` (see the module docstring); records it in `ledger`.

    `estimate` is the job's estimated µ$ (for a row planned here).
    """
    row = ledger.get(job.key)
    files = finished_files(rules.out, job, pattern=rules.pattern)
    if files is not None:
        charged = row.charged if row is not None else None
        if row is None:
            ledger.plan(job.key, job.index, job.prompt_id, estimate)
        if row is None or row.state != "completed":
            ledger.completed(job.key, charged, files, wall())
        return Skip("completed earlier", "completed", charged)
    known = _known_requests(row, lease)
    for request_id, at in known:
        if wall() - at < rules.retention:
            _record_submitted(ledger, job, row, (request_id, at), estimate)
            return Run(WorkItem(job, submission_for(rules.base_url, request_id), at))
    skip = _skipped(job, row, ledger, rules, expired=bool(known))
    if skip is not None:
        return skip
    ambiguous = lease.state == "submitting"
    if ambiguous:
        if row is None:
            ledger.plan(job.key, job.index, job.prompt_id, estimate)
        ledger.ambiguous(job.key)
    return Run(WorkItem(job), ambiguous)


def _known_requests(row: JobRow | None, lease: LeaseRecord) -> list[tuple[str, float]]:
    """Request ids of the job with their submit times: this worker's first, then the lease's."""
    known: list[tuple[str, float]] = []
    own = row is not None and row.state in ("submitted", "completed")
    if own and row is not None and row.request_id and row.submitted_at is not None:
        known.append((row.request_id, row.submitted_at))
    if lease.request_id and lease.submitted_at is not None:
        known.append((lease.request_id, lease.submitted_at))
    return known


def _skipped(
    job: Job, row: JobRow | None, ledger: Ledger, rules: HandoverRules, *, expired: bool
) -> Skip | None:
    """Rules 3 and 4: a job not to run again without the matching option; else None."""
    if expired:
        # Every known request is past the retention window.
        if row is not None and row.state == "submitted":
            ledger.expired(job.key)
        elif row is not None and row.state == "completed":
            ledger.lost(job.key)
        if not rules.resubmit_expired:
            return Skip("expired (--resubmit-expired submits it again)", "expired")
        return None
    if row is not None and row.state == "failed" and not rules.retry_failed:
        return Skip(f"failed earlier: {row.reason} (--retry-failed)", "failed")
    if row is not None and row.state == "expired" and not rules.resubmit_expired:
        return Skip("expired (--resubmit-expired submits it again)", "expired")
    return None


def _record_submitted(
    ledger: Ledger, job: Job, row: JobRow | None, request: tuple[str, float], estimate: Micros
) -> None:
    """Make this ledger show `job` submitted as `request` (id, at), as the scheduler expects."""
    request_id, at = request
    if row is None:
        ledger.plan(job.key, job.index, job.prompt_id, estimate)
    elif row.state == "submitted":
        if row.request_id == request_id:
            return
        # Another, newer request of the job supersedes this one.
        ledger.expired(job.key)
        ledger.reset(job.key)
    elif row.state not in ("planned", "submitting"):
        ledger.reset(job.key)
    ledger.submitted(job.key, request_id, at)
