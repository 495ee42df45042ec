"""What a worker does with a job it claimed, given its own folder and the lease's record.

The rules are runner/resume.py's, the same as one process's (docs/store.md):
the lease adds what a job's last worker recorded before it died (the request
id of its submit, or that a submit was on the wire). `handle` reads this
worker's ledger row and folder, asks `runner.resume.decide`, and applies
the decision's ledger moves through `runner.resume.apply`, as the
single-process run does. The ledger calls are the store's own, synchronous
and quick.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner.jobs import Job
from runner.resume import Action, LeaseRecord, Rules, apply, decide, look
from runner.store import Ledger

__all__ = ["HandoverRules", "LeaseRecord", "handle"]


@dataclass(frozen=True, slots=True)
class HandoverRules:
    """The run's options that bear on a claimed job. `retention` in seconds."""

    out: Path
    base_url: str
    pattern: str | None
    retention: float
    retry_failed: bool = False
    resubmit_expired: bool = False

    @property
    def rules(self) -> Rules:
        """The resume decision's part of them."""
        return Rules(self.retention, self.retry_failed, self.resubmit_expired)


def handle(
    job: Job,
    lease: LeaseRecord,
    *,
    ledger: Ledger,
    rules: HandoverRules,
    estimate: float,
    wall: Callable[[], float],
) -> Action:
    """Decide what to do with claimed `job` and record it in `ledger`; return the decision.

    `estimate` is the job's estimated USD (for a row planned here).
    """
    row = ledger.get(job.key)
    files = look(rules.out, job, rules.pattern, row, lease)
    now = wall()
    action = decide(row, files, lease, now, rules.rules)
    apply(action, job, ledger, estimate=estimate, now=now)
    return action
