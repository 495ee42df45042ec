"""The ledger's reads: rows by key, by state, streamed in batches; counts and totals.

Every query runs under the ledger's lock and returns `JobRow` values
(ledger_rows.py) or sums of integer µ$: nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, cast

from runner.money import ZERO, Micros
from runner.store.ledger_core import LedgerCore
from runner.store.ledger_rows import STATES, JobRow, State, StateTotals, decode_row
from runner.store.migrations import applied_migrations

# SQLite's own limit on bound parameters is 32766 since 3.32; stay far below.
_CHUNK: Final = 500


class LedgerReads(LedgerCore):
    """The read half of `Ledger`."""

    def get(self, key: str) -> JobRow | None:
        """The row of `key`, or None."""
        with self._db() as db:
            found = db.execute(f"{self._select} WHERE key = ?", (key,)).fetchone()
        return decode_row(found) if found else None

    def get_many(self, keys: Iterable[str]) -> dict[str, JobRow]:
        """Rows of the known ones among `keys`, by key (for a batch of expanded jobs)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, JobRow] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            with self._db() as db:
                rows = db.execute(f"{self._select} WHERE key IN ({marks})", chunk).fetchall()
            for values in rows:
                row = decode_row(values)
                found[row.key] = row
        return found

    def rows(self, state: State | None = None) -> Iterator[JobRow]:
        """All rows, or those in `state`, in expansion order (idx)."""
        with self._db() as db:
            if state is None:
                fetched = db.execute(f"{self._select} ORDER BY idx, key").fetchall()
            else:
                fetched = db.execute(
                    f"{self._select} WHERE state = ? ORDER BY idx, key", (state,)
                ).fetchall()
        return map(decode_row, fetched)

    def stream_rows(self, *, batch: int = 1000) -> Iterator[JobRow]:
        """All rows in expansion order (idx), read `batch` at a time: a report over a big
        ledger holds one batch, not every row.

        The lock is held while a batch is read, not while it is used: a write
        between two batches goes ahead (the next batches may or may not show
        it; a write moves a row's state, never its place in the order).
        """
        with self._db() as db:
            # One statement for the whole walk: ORDER BY idx sorts the table once
            # (no index has idx first), and later batches come from that sort.
            cursor = db.execute(f"{self._select} ORDER BY idx, key")
            fetched = cursor.fetchmany(batch)
        while fetched:
            yield from map(decode_row, fetched)
            del fetched  # else it lives on while the next batch is fetched: two in memory
            with self._db():
                fetched = cursor.fetchmany(batch)

    def in_flight(self) -> list[JobRow]:
        """Rows in submitting or submitted, oldest submit first (unconfirmed ones first)."""
        with self._db() as db:
            fetched = db.execute(
                f"{self._select} WHERE state IN ('submitting', 'submitted') "
                "ORDER BY submitted_at IS NOT NULL, submitted_at, idx"
            ).fetchall()
        return [decode_row(values) for values in fetched]

    def counts(self) -> dict[State, int]:
        """Number of jobs in each state (every state present, zeros included)."""
        counts: dict[State, int] = dict.fromkeys(STATES, 0)
        with self._db() as db:
            for state, count in db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
                counts[cast(State, state)] = count
        return counts

    def last_charged_index(self) -> int:
        """The expansion index (idx) of the last completed row with a charge; -1 if none."""
        with self._db() as db:
            (last,) = db.execute(
                "SELECT MAX(idx) FROM jobs WHERE state = 'completed' AND charged IS NOT NULL"
            ).fetchone()
        return -1 if last is None else int(last)

    def totals(self) -> dict[State, StateTotals]:
        """Aggregates per state (every state present) for `runner status`."""
        totals = {state: StateTotals(state, 0, ZERO, ZERO, 0, 0, None, None) for state in STATES}
        estimate, charged = self._money("estimate"), self._money("charged")
        failures, failed = self._billed("billed_failures"), self._billed("billed_failed")
        with self._db() as db:
            # SUM of INTEGER is an exact integer (TOTAL would be a float).
            fetched = db.execute(
                f"SELECT state, COUNT(*), COALESCE(SUM({estimate}), 0), "  # noqa: S608 (constant)
                f"COALESCE(SUM({charged}), 0), COUNT(charged), TOTAL(ambiguous), "
                f"MIN(submitted_at), MIN(updated_at), COALESCE(SUM({failures}), 0), "
                f"COALESCE(SUM({failed}), 0) FROM jobs GROUP BY state"
            ).fetchall()
        for (
            state,
            jobs,
            estimates,
            charges,
            charged_jobs,
            ambiguous,
            oldest,
            updated,
            *billed,
        ) in fetched:
            totals[state] = StateTotals(
                state=state,
                jobs=jobs,
                estimate=Micros(estimates),
                charged=Micros(charges),
                charged_jobs=charged_jobs,
                ambiguous=int(ambiguous),
                oldest_submitted_at=oldest,
                oldest_updated_at=updated,
                billed_failures=int(billed[0]),
                billed_failed=Micros(billed[1]),
            )
        return totals

    def possible_extra_spend(self, per_kill: int | None = None) -> Micros:
        """µ$ that earlier runs were or may have been billed without a result to show for it.

        A billed failure (a result that could not be used) was: its cost. Each
        ambiguous submit (its answer lost) may have been accepted, and so
        may a job left `submitting` by a crash: their estimates. A resumed
        run's budget counts all of them. `per_kill` (the runs' max_submits_in_flight)
        bounds the `submitting` rows counted: a killed run (one never ended)
        had at most that many sends on the wire, so only the `per_kill`
        dearest rows per killed run count (None: every row). Then a folder can
        always be finished by raising the cap by at most that much.
        """
        estimate, billed = self._money("estimate"), self._billed("billed_failed")
        with self._db() as db:
            (extra,) = db.execute(
                f"SELECT COALESCE(SUM(ambiguous * {estimate} + {billed}), 0) FROM jobs"  # noqa: S608
            ).fetchone()
            rows = [
                int(value)
                for (value,) in db.execute(
                    f"SELECT {estimate} FROM jobs WHERE state = 'submitting' "  # noqa: S608
                    f"ORDER BY {estimate} DESC"
                )
            ]
            (killed,) = db.execute("SELECT COUNT(*) FROM runs WHERE ended_at IS NULL").fetchone()
        if per_kill is not None and rows:
            # A row left submitting is a kill's, even without its run's row (older folders).
            rows = rows[: per_kill * max(1, int(killed))]
        return Micros(int(extra) + sum(rows))

    def migrations(self) -> list[str]:
        """Names of the applied migrations, in order."""
        with self._db() as db:
            return applied_migrations(db)
