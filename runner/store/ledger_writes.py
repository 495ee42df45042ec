"""The ledger's writes: each state move of a job, and a run's start and end.

Every method is one committed, fsynced transaction before it returns (or
part of the caller's `transaction`, one fsync for a group). A move the
table in ledger.py does not allow changes nothing and raises ValueError:
it would pay twice or drop a result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, cast

from runner.money import Micros
from runner.store.ledger_core import LedgerCore
from runner.store.ledger_rows import State, json_list

# Planned rows are committed this many at a time (`plan_many`).
_PLAN_BATCH: Final = 1000


class LedgerWrites(LedgerCore):
    """The write half of `Ledger` (see ledger.py for the states and their moves)."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Make the writes inside one committed transaction: one fsync for all of them.

        If anything inside raises, none of them is kept. Other threads wait meanwhile.
        """
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _write(self, sql: str, args: Sequence[object], *, key: str, to: State) -> None:
        self._check_writable()
        with self._db() as db:
            changed = db.execute(sql, args).rowcount
            if changed:
                return
            found = db.execute("SELECT state FROM jobs WHERE key = ?", (key,)).fetchone()
        if found is None:
            raise ValueError(f"ledger has no job {key}; plan it first")
        raise ValueError(f"job {key} is {found[0]}; it cannot become {to}")

    def plan_many(self, items: Iterable[tuple[str, int, str, Micros]]) -> int:
        """Plan many jobs ((key, idx, prompt_id, estimate µ$) each); return how many were new.

        Committed in batches: a planned row is cheap to redo, so it does not
        need a transaction of its own.
        """
        self._check_writable()
        now = self._wall()
        inserted = 0
        batch: list[tuple[str, int, str, Micros, float]] = []

        def flush() -> None:
            nonlocal inserted
            with self._db() as db:
                own = not db.in_transaction  # inside `transaction`, that one commits
                if own:
                    db.execute("BEGIN IMMEDIATE")
                try:
                    before = db.total_changes
                    db.executemany(
                        "INSERT INTO jobs (key, idx, prompt_id, state, estimate, updated_at) "
                        "VALUES (?, ?, ?, 'planned', ?, ?) ON CONFLICT (key) DO NOTHING",
                        batch,
                    )
                    inserted += db.total_changes - before
                    if own:
                        db.execute("COMMIT")
                except BaseException:
                    if own and db.in_transaction:  # SQLite may have rolled back (SQLITE_FULL)
                        db.execute("ROLLBACK")
                    raise
            batch.clear()

        for key, idx, prompt_id, estimate in items:
            batch.append((key, idx, prompt_id, estimate, now))
            if len(batch) >= _PLAN_BATCH:
                flush()
        if batch:
            flush()
        return inserted

    def submitting(self, key: str) -> None:
        """Mark a job as being submitted (before the POST); counts an attempt."""
        self._write(
            "UPDATE jobs SET state = 'submitting', attempts = attempts + 1, request_id = NULL, "
            "submitted_at = NULL, reason = NULL, updated_at = ? "
            "WHERE key = ? AND state IN ('planned', 'submitting', 'failed', 'expired')",
            (self._wall(), key),
            key=key,
            to="submitting",
        )

    def submitted(self, key: str, request_id: str, at: float) -> None:
        """Record an accepted submit: its request id and wall-clock epoch seconds `at`.

        Committed and fsynced on return: call it before the first poll.
        """
        self._write(
            "UPDATE jobs SET state = 'submitted', request_id = ?, submitted_at = ?, "
            "updated_at = ? WHERE key = ? AND state IN ('planned', 'submitting')",
            (request_id, at, self._wall(), key),
            key=key,
            to="submitted",
        )

    def ambiguous(self, key: str) -> None:
        """Count a submit whose answer was lost (it may have been accepted and billed)."""
        self._write(
            "UPDATE jobs SET ambiguous = ambiguous + 1, updated_at = ? WHERE key = ?",
            (self._wall(), key),
            key=key,
            to="submitting",
        )

    def completed(
        self,
        key: str,
        charged: Micros | None,
        files: Sequence[str],
        at: float,
        *,
        reason: str | None = None,
    ) -> None:
        """Record a finished job: µ$ charged (if reported), its image files relative to OUT
        (``/``-separated), wall-clock epoch seconds `at`. Call after the sidecars are written.
        `reason` notes how it finished when not by this folder's request (``cached``).
        """
        self._write(
            "UPDATE jobs SET state = 'completed', charged = ?, files = ?, completed_at = ?, "
            "reason = ?, updated_at = ? WHERE key = ?",
            (charged, json_list(files), at, reason, self._wall(), key),
            key=key,
            to="completed",
        )

    def failed(
        self, key: str, reason: str, *, billed: bool = False, charged: Micros | None = None
    ) -> None:
        """Record a final failure and why (retried only with --retry-failed).

        `billed`: the server charged for it (a result that could not be used):
        one more billed failure, costing `charged` µ$ (the reported charge;
        None: the job's estimate). Kept across later runs (`reset` leaves it),
        so the folder's budget counts it (`possible_extra_spend`).
        """
        self._write(
            "UPDATE jobs SET state = 'failed', reason = ?, billed_failures = billed_failures + ?, "
            "billed_failed = billed_failed + CASE WHEN ? THEN COALESCE(?, estimate) ELSE 0 END, "
            "updated_at = ? WHERE key = ? AND state != 'completed'",
            (reason, int(billed), billed, charged, self._wall(), key),
            key=key,
            to="failed",
        )

    def add_billed(self, key: str, failures: int, amount: Micros) -> None:
        """Add `failures` billed failures costing `amount` µ$ to a job in any state
        (a merge brings a row up to its source's record)."""
        self._write(
            "UPDATE jobs SET billed_failures = billed_failures + ?, "
            "billed_failed = billed_failed + ?, updated_at = ? WHERE key = ?",
            (failures, amount, self._wall(), key),
            key=key,
            to="failed",
        )

    def expired(self, key: str) -> None:
        """Record that an in-flight job's result is beyond the server's retention window."""
        self._write(
            "UPDATE jobs SET state = 'expired', updated_at = ? "
            "WHERE key = ? AND state IN ('submitting', 'submitted')",
            (self._wall(), key),
            key=key,
            to="expired",
        )

    def lost(self, key: str) -> None:
        """A completed job whose files are gone and whose server copy expired.

        It becomes expired, so only --resubmit-expired pays for it again.
        """
        self._write(
            "UPDATE jobs SET state = 'expired', reason = 'files missing after completion', "
            "updated_at = ? WHERE key = ? AND state = 'completed'",
            (self._wall(), key),
            key=key,
            to="expired",
        )

    def reset(self, key: str) -> None:
        """Put a job back to planned (--retry-failed, --resubmit-expired, a file gone bad).

        Refused for a submitted job: its paid result may still come; expire it first.
        """
        self._write(
            "UPDATE jobs SET state = 'planned', request_id = NULL, submitted_at = NULL, "
            "completed_at = NULL, charged = NULL, reason = NULL, files = '[]', updated_at = ? "
            "WHERE key = ? AND state != 'submitted'",
            (self._wall(), key),
            key=key,
            to="planned",
        )

    def start_run(self, *, argv: Sequence[str], manifest_sha256: str | None, at: float) -> int:
        """Record a run's start (argv must hold no secrets); returns its id."""
        self._check_writable()
        with self._db() as db:
            cursor = db.execute(
                "INSERT INTO runs (started_at, manifest_sha256, argv) VALUES (?, ?, ?)",
                (at, manifest_sha256, json_list(argv)),
            )
            return cast(int, cursor.lastrowid)

    def end_run(self, run_id: int, *, outcome: str, at: float) -> None:
        """Record a run's end and its outcome (e.g. an exit code's name)."""
        self._check_writable()
        with self._db() as db:
            db.execute(
                "UPDATE runs SET ended_at = ?, outcome = ? WHERE id = ?", (at, outcome, run_id)
            )
