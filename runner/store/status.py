"""`runner status OUT`: what the ledger says about a folder, without touching the API.

Counts by state, credits estimated and charged, and how old the oldest
in-flight job is against the server's retention window (1 hour on Segmind):
past it, a result can no longer be fetched and resume marks the job expired.
Reads the ledger read-only and without its lock, so it works during a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from runner.clock import wall_time
from runner.money import format_usd, micros, to_usd, total
from runner.store.ledger import IN_FLIGHT, STATES, Ledger, State, StateTotals

RETENTION_S: Final = 3600.0
"""How long the API keeps a submitted request's result, in seconds (Segmind: 1 hour)."""


@dataclass(frozen=True, slots=True)
class FolderStatus:
    """The figures of `runner status` (its ``--json`` form). Money in USD, ages in seconds.

    The ledger's µ$ are summed exactly and become USD floats here, where
    they leave for JSON and text.

    `estimate_by_state` sums the price-table estimate of the jobs in each
    state (expired: what ``--resubmit-expired`` would cost again; failed: what
    ``--retry-failed`` would). `charged_usd` sums what the API reported over
    `charged_jobs` jobs. `oldest_in_flight_s` is the age of the oldest
    submitting or submitted job; `overdue` counts those past `retention_s`.
    `billed_failures` counts the failures the server billed (a result that
    could not be used), over every run of the folder, and `billed_failures_usd`
    what they cost; they are not in `ambiguous` (possible duplicates).
    """

    out_dir: Path
    backend: str
    base_url: str
    counts: dict[State, int]
    estimate_by_state: dict[State, float]
    charged_usd: float
    charged_jobs: int
    ambiguous: int
    in_flight: int
    oldest_in_flight_s: float | None
    overdue: int
    retention_s: float
    billed_failures: int = 0
    billed_failures_usd: float = 0.0

    @property
    def jobs(self) -> int:
        """All jobs in the ledger."""
        return sum(self.counts.values())

    @property
    def estimated_usd(self) -> float:
        """The estimate of every job in the ledger."""
        return sum(self.estimate_by_state.values())


def folder_status(
    out_dir: Path, *, retention_s: float = RETENTION_S, now: float | None = None
) -> FolderStatus:
    """The status of `out_dir` from its ledger; `now` is wall-clock epoch seconds.

    Raises UsageError when `out_dir` has no ledger.
    """
    now = wall_time() if now is None else now
    with Ledger.open_readonly(out_dir) as ledger:
        meta = ledger.meta
        totals = ledger.totals()
        flying = ledger.in_flight()
    # A submit with no answer yet has no submitted_at; its last update is when it began.
    ages = [now - (row.submitted_at or row.updated_at) for row in flying]
    billed = billed_totals(totals.values())
    return FolderStatus(
        out_dir=out_dir,
        backend=meta.backend,
        base_url=meta.base_url,
        counts={state: totals[state].jobs for state in STATES},
        estimate_by_state={state: to_usd(totals[state].estimate) for state in STATES},
        charged_usd=to_usd(total(t.charged for t in totals.values())),
        charged_jobs=sum(t.charged_jobs for t in totals.values()),
        ambiguous=sum(t.ambiguous for t in totals.values()),
        in_flight=sum(totals[state].jobs for state in IN_FLIGHT),
        oldest_in_flight_s=max(ages) if ages else None,
        overdue=sum(age > retention_s for age in ages),
        retention_s=retention_s,
        billed_failures=billed[0],
        billed_failures_usd=billed[1],
    )


def billed_totals(totals: Iterable[StateTotals]) -> tuple[int, float]:
    """(billed failures, what they cost in USD) over a ledger's totals per state."""
    rows = list(totals)
    return sum(t.billed_failures for t in rows), to_usd(total(t.billed_failed for t in rows))


def with_billed(reason: str, usd: float) -> str:
    """A failed job's reason with what the server billed for it, as every report says it."""
    return f"{reason} (billed {format_usd(micros(usd))})" if usd else reason


def billed_failures_text(count: int, usd: float) -> str:
    """The words every report uses for billed failures: "2 failed jobs were billed ($0.08)"."""
    were = "failed job was" if count == 1 else "failed jobs were"
    return f"{count:,} {were} billed ({format_usd(micros(usd))})"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def render_status(status: FolderStatus) -> str:
    """A text table of `status` for the terminal."""
    lines = [
        f"{status.out_dir}  backend {status.backend} ({status.base_url})",
        "",
        f"{'state':<12}{'jobs':>8}{'estimate USD':>15}",
    ]
    for state in STATES:
        lines.append(
            f"{state:<12}{status.counts[state]:>8}{status.estimate_by_state[state]:>15.4f}"
        )
    lines.append(f"{'total':<12}{status.jobs:>8}{status.estimated_usd:>15.4f}")
    lines.append("")
    lines.append(
        f"charged (reported by the API): ${status.charged_usd:.4f} over "
        f"{status.charged_jobs} job(s)"
    )
    if status.billed_failures:
        lines.append(billed_failures_text(status.billed_failures, status.billed_failures_usd))
    if status.ambiguous:
        lines.append(f"ambiguous submits (answer lost, may have been billed): {status.ambiguous}")
    if status.oldest_in_flight_s is None:
        lines.append("in flight: none")
    else:
        window = _duration(status.retention_s)
        age = _duration(status.oldest_in_flight_s)
        if status.overdue:
            tail = (
                f"{status.overdue} past the {window} retention window: resume marks them "
                "expired (--resubmit-expired pays again)"
            )
        else:
            left = _duration(status.retention_s - status.oldest_in_flight_s)
            tail = f"within the {window} retention window, {left} left: resume re-attaches"
        lines.append(f"in flight: {status.in_flight}, oldest {age} old; {tail}")
    return "\n".join(lines)
