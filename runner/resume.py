"""What a run does with a job its folder or its shared run already knows: the resume rules.

One pure decision, `decide`, for both modes (docs/store.md "Resume"): the
single-process run asks it for every job of the manifest, a worker of a
shared run for every job it claims (then the lease's record is known too).
In the order the rules apply, the first match wins:

1. all the job's images and sidecars are in the folder: it is done. A
   ledger row that missed it (a crash after the sidecars, before the commit)
   is recorded completed, with the row's charge when known; nothing is sent.
2. a request id younger than the server's retention is known, the folder's
   own (a row submitted, or completed with its files gone) or the lease's (a
   dead worker's): re-attach to it, recording it in the ledger first; never
   submit again.
3. only older request ids are known: the job is expired (a completed row
   whose files are gone is "lost"); submitted again only with
   ``--resubmit-expired``. A completed row whose files are gone and that has
   no request id at all is lost the same way.
4. failed or expired earlier: skipped unless ``--retry-failed`` /
   ``--resubmit-expired``.
5. a submit was on the wire when its run (or its worker) died: the row or the
   lease says ``submitting``. It may have been accepted and billed: counted
   as ambiguous once, and the job is submitted again.
6. otherwise (a new or planned job): submit it.

`decide` returns an `Action` with the ledger moves to make; `apply` makes
them. `look` is the one place that reads the folder for the decision.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from runner.backends.base import submission_for
from runner.jobs import Job
from runner.money import Micros
from runner.scheduling.source import WorkItem
from runner.store import JobRow, Ledger, finished_files, recorded_files

FinalState = Literal["completed", "failed", "expired"]

Move = Literal["plan", "reset", "expire", "lose", "ambiguous", "submitted", "completed"]
"""One ledger write, in `apply`'s terms.

``plan``: add the row (a job this ledger never saw); ``reset``: back to
planned; ``expire``: an in-flight row is past the retention; ``lose``: a
completed row whose files are gone; ``ambiguous``: count a submit that may
have been billed; ``submitted``: record the action's request id;
``completed``: record the action's files and charge.
"""

# One message per outcome: what the run's progress says of a skipped job.
COMPLETED: Final = "completed earlier"
RECORDED: Final = "completed earlier (recorded now)"
EXPIRED: Final = "expired (--resubmit-expired submits it again)"
LOST: Final = "its files are gone and the server's copy expired (--resubmit-expired)"


def failed_message(reason: str | None) -> str:
    """The message of a job skipped because it failed earlier for `reason`."""
    return f"failed earlier: {reason} (--retry-failed)"


_BATCH_MESSAGES: Final = 5  # distinct messages one batch's text names; the rest are counted


def batch_message(messages: Mapping[str, int]) -> str:
    """The text of one event for a batch of skipped jobs: `messages` -> how many. Pure.

    Each message with its count, in the order given: ``"498 completed
    earlier; 2 failed earlier: ... (--retry-failed)"``; past five distinct
    messages (failure reasons differ), the rest as one count.
    """
    shown = list(messages.items())[:_BATCH_MESSAGES]
    parts = [f"{count:,} {message}" for message, count in shown]
    rest = sum(messages.values()) - sum(count for _, count in shown)
    if rest:
        parts.append(f"{rest:,} skipped for other reasons")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Rules:
    """The run's options that bear on resuming. `retention` in seconds (time-scaled)."""

    retention: float
    retry_failed: bool = False
    resubmit_expired: bool = False


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What a shared run's lease of a job says: its last known submit, if any.

    `submitted_at` is wall-clock epoch seconds.
    """

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
class Submit:
    """Submit the job; `ambiguous`: an earlier submit of it may have been billed."""

    ambiguous: bool = False
    moves: tuple[Move, ...] = ()


@dataclass(frozen=True, slots=True)
class Reattach:
    """Poll `request_id`, submitted at `at` (wall-clock epoch seconds); never submit again."""

    request_id: str
    at: float
    moves: tuple[Move, ...] = ()


@dataclass(frozen=True, slots=True)
class Skip:
    """Do not run it: it ended `outcome`, shown as `message`.

    `charged` (USD, when reported) and `files` (relative to OUT) are the
    completed job's, for the ``completed`` move and for the shared run's record.
    """

    outcome: FinalState
    message: str
    charged: Micros | None = None
    files: tuple[str, ...] = ()
    moves: tuple[Move, ...] = ()


Action = Submit | Reattach | Skip
_NEW: Final = Submit()  # frozen, so one value serves every new job


def wants_files(row: JobRow | None, lease: LeaseRecord | None) -> bool:
    """Whether the decision looks at the folder: for a job the ledger or the lease knows.

    A job known to neither is new to this folder (a first run, or after
    ``--fresh``): it is submitted, and whatever old file has its name is
    overwritten, so a first run of 100,000 jobs reads no file.
    """
    return row is not None or (lease is not None and lease != LeaseRecord())


def look(
    out: Path, job: Job, pattern: str | None, row: JobRow | None, lease: LeaseRecord | None
) -> list[str] | None:
    """The job's finished files in `out` (relative names), or None; read only when wanted.

    A row the ledger shows completed is trusted for what its files are and
    only checked to be there (`recorded_files`: two stats per image), so a
    resume over 100,000 finished jobs reads no sidecar; any other known job
    has its sidecars read and matched (`finished_files`).
    """
    if not wants_files(row, lease):
        return None
    if row is not None and row.state == "completed" and row.files:
        return recorded_files(out, job, row.files)
    return finished_files(out, job, pattern=pattern)


def decide(
    row: JobRow | None,
    files: Sequence[str] | None,
    lease: LeaseRecord | None,
    now: float,
    rules: Rules,
) -> Action:
    """What to do with one job (the rules of the module docstring). Pure.

    `row` is the job's ledger row (None: never planned here); `files` its
    finished files in the folder (None: not all there; see `look`); `lease`
    what a shared run's lease says (None alone); `now` wall-clock epoch seconds.
    """
    state = row.state if row is not None else None
    if files is not None:
        if state == "completed":
            return Skip("completed", COMPLETED, row.charged if row else None, tuple(files))
        moves: tuple[Move, ...] = ("completed",) if row is not None else ("plan", "completed")
        charged = row.charged if row is not None else None
        return Skip("completed", RECORDED, charged, tuple(files), moves)
    known = _known_requests(row, lease)
    for request_id, at in known:
        if now - at < rules.retention:
            return Reattach(request_id, at, _adopt(row, request_id))
    if state == "completed" or known:
        # Every known request is past the retention window (or none is known).
        lost = state == "completed"
        moves = ("lose",) if lost else ("expire",) if state in ("submitting", "submitted") else ()
        if rules.resubmit_expired:
            return Submit(moves=moves)
        return Skip("expired", LOST if lost else EXPIRED, moves=moves)
    if state == "failed" and not rules.retry_failed:
        return Skip("failed", failed_message(row.reason if row else None))
    if state == "expired" and not rules.resubmit_expired:
        return Skip("expired", EXPIRED)
    if state == "submitting" or (lease is not None and lease.state == "submitting"):
        return Submit(True, ("plan", "ambiguous") if row is None else ("ambiguous",))
    return _NEW


def _known_requests(row: JobRow | None, lease: LeaseRecord | None) -> list[tuple[str, float]]:
    """Request ids of the job with their submit times: the folder's first, then the lease's."""
    known: list[tuple[str, float]] = []
    if (
        row is not None
        and row.state in ("submitted", "completed")
        and row.request_id
        and row.submitted_at is not None
    ):
        known.append((row.request_id, row.submitted_at))
    if lease is not None and lease.request_id and lease.submitted_at is not None:
        known.append((lease.request_id, lease.submitted_at))
    return known


def _adopt(row: JobRow | None, request_id: str) -> tuple[Move, ...]:
    """The moves that make the ledger show the job submitted as `request_id`."""
    if row is None:
        return ("plan", "submitted")
    if row.state == "submitted":
        if row.request_id == request_id:
            return ()
        # Another, newer request of the job supersedes this one.
        return ("expire", "reset", "submitted")
    if row.state in ("planned", "submitting"):
        return ("submitted",)
    return ("reset", "submitted")


def apply(action: Action, job: Job, ledger: Ledger, *, estimate: Micros, now: float) -> None:
    """Make the action's ledger moves, in order.

    `estimate` is the job's micro-dollars (for a row planned here); `now` wall-clock
    epoch seconds (a completed row's time).
    """
    for move in action.moves:
        if move == "plan":
            ledger.plan(job.key, job.index, job.prompt_id, estimate)
        elif move == "reset":
            ledger.reset(job.key)
        elif move == "expire":
            ledger.expired(job.key)
        elif move == "lose":
            ledger.lost(job.key)
        elif move == "ambiguous":
            ledger.ambiguous(job.key)
        elif move == "submitted":
            assert isinstance(action, Reattach)
            ledger.submitted(job.key, action.request_id, action.at)
        else:
            assert isinstance(action, Skip)
            ledger.completed(job.key, action.charged, action.files, now)


def work_item(job: Job, action: Submit | Reattach, base_url: str) -> WorkItem:
    """The scheduler's item for a job to run: re-attached to its request, or new."""
    if isinstance(action, Reattach):
        return WorkItem(
            job, submission_for(base_url, action.request_id, n=job.request.n), action.at
        )
    return WorkItem(job)


def settle_killed_submits(ledger: Ledger, per_kill: int) -> int:
    """Count the `submitting` rows of killed runs as possible spend once, at the bound; how
    many rows were counted.

    `Ledger.possible_extra_spend(per_kill)` counts only the `per_kill` dearest
    such rows per killed run (a kill had no more sends on the wire), but rule 5
    counted each row ambiguous as the walk reached it, so a folder left with
    more rows than that (an older runner's, or a disk that lost the marks)
    counted every one once they were all sent again: each resume said "raise
    the cap by $X" and then asked for more. Here, before the run's budget is
    read, the rows that bound counts (the dearest, as the ledger picks them)
    are counted ambiguous and every such row goes back to planned, in one
    transaction: the possible spend stays what the ledger said, and later
    resumes count it once. The shared mode keeps rule 5 (its leases say
    `submitting` too).
    """
    rows = sorted(ledger.rows("submitting"), key=lambda row: row.estimate, reverse=True)
    if not rows:
        return 0
    # What the bound counts of these rows: the ledger's rule, read back, not copied.
    left = ledger.possible_extra_spend(per_kill) - ledger.possible_extra_spend(0)
    counted = 0
    with ledger.transaction():
        for row in rows:
            if left >= row.estimate > 0:
                ledger.ambiguous(row.key)
                left -= row.estimate
                counted += 1
            ledger.reset(row.key)
    return counted
