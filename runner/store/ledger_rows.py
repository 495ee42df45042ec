"""The ledger's values and their codec: a job's row, the folder's meta, totals per state.

Pure: no connection here. `decode_row` turns one row of `SELECT`
(or `SELECT_USD` on an older runner's folder) into a `JobRow`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from runner.money import Micros

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


def _columns(estimate: str, charged: str) -> str:
    return (
        "key, idx, prompt_id, state, request_id, submitted_at, completed_at, "
        f"{estimate}, {charged}, reason, attempts, ambiguous, files, updated_at"
    )


SELECT: Final = f"SELECT {_columns('estimate', 'charged')} FROM jobs"  # noqa: S608 (constant)
"""Every column of `jobs`, in `JobRow` order."""

SELECT_USD: Final = (
    f"SELECT {_columns('usd_to_micros(estimate)', 'usd_to_micros(charged)')} FROM jobs"  # noqa: S608
)
"""As `SELECT`, for a ledger before m004_money_micros opened read-only: its USD REAL
columns are converted as they are read, by the migration's own function."""


def decode_row(values: tuple[Any, ...]) -> JobRow:
    """The `JobRow` of one row selected by `SELECT` (or `SELECT_USD`)."""
    # Positional, in the columns' order: the resume scan builds 100k of these.
    (key, idx, prompt_id, state, request_id, submitted_at, completed_at) = values[:7]
    (estimate, charged, reason, attempts, ambiguous, files, updated_at) = values[7:]
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
    )


def json_list(values: Sequence[str]) -> str:
    """A list column's JSON text: a row's `files` (relative to OUT), a run's `argv`."""
    return json.dumps(list(values))
