"""The ledger's values and their codec: a job's row, the folder's meta, totals per state.

Pure: no connection here. `decode_row` turns one row of `SELECT`
(or of `select_sql` for an older runner's folder) into a `JobRow`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from runner.money import ZERO, Micros

State = Literal["planned", "submitting", "submitted", "completed", "failed", "expired"]
STATES: Final[tuple[State, ...]] = (
    "planned",
    "submitting",
    "submitted",
    "completed",
    "failed",
    "expired",
)
IN_FLIGHT: Final[tuple[State, ...]] = ("submitting", "submitted")


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job's ledger row. Times are wall-clock epoch seconds; money is µ$."""

    key: str
    idx: int
    prompt_id: str
    state: State
    request_id: str | None
    submitted_at: float | None
    completed_at: float | None
    estimate: Micros
    charged: Micros | None
    reason: str | None
    attempts: int
    ambiguous: int
    files: tuple[str, ...]
    updated_at: float
    billed_failures: int = 0
    """Failures of this job the server billed (a result it could not use), over all runs."""
    billed_failed: Micros = ZERO
    """What those billed failures cost, µ$ (the reported charge, else the estimate)."""


@dataclass(frozen=True, slots=True)
class LedgerMeta:
    """What a folder was made with: backend name and base URL, when, by which runner."""

    backend: str
    base_url: str
    created_at: float
    runner_version: str


@dataclass(frozen=True, slots=True)
class StateTotals:
    """Aggregates of the rows in one state (µ$, wall-clock epoch seconds)."""

    state: State
    jobs: int
    estimate: Micros
    charged: Micros
    charged_jobs: int
    ambiguous: int
    oldest_submitted_at: float | None
    oldest_updated_at: float | None
    billed_failures: int = 0
    billed_failed: Micros = ZERO


@dataclass(frozen=True, slots=True)
class Columns:
    """What the `jobs` table of a ledger opened read-only holds, when an older runner
    wrote it (a read-only open never migrates): `usd`, money still USD REAL (before
    m004_money_micros: converted as read); `billed`, the billed-failure columns
    (from m005_billed_failures on: without them they read as 0)."""

    usd: bool = False
    billed: bool = True

    def money(self, column: str) -> str:
        """The SQL of money `column` in µ$."""
        return f"usd_to_micros({column})" if self.usd else column

    def billed_column(self, column: str) -> str:
        """The SQL of billed-failure `column` (``billed_failures``, ``billed_failed``)."""
        return column if self.billed else "0"


CURRENT: Final = Columns()
"""The columns of a ledger this runner has migrated."""


def select_sql(columns: Columns = CURRENT) -> str:
    """``SELECT`` of every column of `jobs`, in `JobRow` order, as `columns` has them."""
    return (
        "SELECT key, idx, prompt_id, state, request_id, submitted_at, completed_at, "  # noqa: S608
        f"{columns.money('estimate')}, {columns.money('charged')}, reason, attempts, "
        f"ambiguous, files, updated_at, {columns.billed_column('billed_failures')}, "
        f"{columns.billed_column('billed_failed')} FROM jobs"
    )


SELECT: Final = select_sql()
"""Every column of `jobs`, in `JobRow` order."""


def decode_row(values: tuple[Any, ...]) -> JobRow:
    """The `JobRow` of one row selected by `select_sql`."""
    # Positional, in the columns' order: the resume scan builds 100k of these.
    (key, idx, prompt_id, state, request_id, submitted_at, completed_at) = values[:7]
    (estimate, charged, reason, attempts, ambiguous, files, updated_at) = values[7:14]
    (billed_failures, billed_failed) = values[14:]
    decoded = () if files == "[]" else tuple(json.loads(files))
    return JobRow(
        key,
        idx,
        prompt_id,
        state,
        request_id,
        submitted_at,
        completed_at,
        estimate,
        charged,
        reason,
        attempts,
        ambiguous,
        decoded,
        updated_at,
        billed_failures,
        billed_failed,
    )


def json_list(values: Sequence[str]) -> str:
    """A list column's JSON text: a row's `files` (relative to OUT), a run's `argv`."""
    return json.dumps(list(values))
