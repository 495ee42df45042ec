"""The ledger's schema as ordered, named migrations (after simonw/llm's migrations.py).

Each step runs in its own transaction and is recorded in the ``migrations``
table. Append new steps at the end; never edit, rename or reorder one that
has shipped: folders made by older runners replay only the steps they lack.
A ledger with a step this runner does not know was made by a newer one and
is refused rather than misread.

A step may call ``usd_to_micros(x)``: `migrate` registers it on the
connection as runner.money.micros, so the SQL rounds money by the same rule
as the code (nearest µ$, half to even).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from runner.clock import utc_datetime
from runner.errors import UsageError
from runner.money import micros


@dataclass(frozen=True, slots=True)
class Migration:
    """One named schema step: its SQL statements run in one transaction."""

    name: str
    statements: tuple[str, ...]


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        "m001_meta",
        ("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",),
    ),
    Migration(
        "m002_jobs",
        (
            """CREATE TABLE jobs (
                key TEXT PRIMARY KEY,
                idx INTEGER NOT NULL,
                prompt_id TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN
                    ('planned', 'submitting', 'submitted', 'completed', 'failed', 'expired')),
                request_id TEXT,
                submitted_at REAL,
                completed_at REAL,
                estimate REAL NOT NULL,
                charged REAL,
                reason TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                ambiguous INTEGER NOT NULL DEFAULT 0,
                files TEXT NOT NULL DEFAULT '[]',
                updated_at REAL NOT NULL
            ) WITHOUT ROWID""",
            # The resume scan reads by state, in expansion order.
            "CREATE INDEX jobs_state_idx ON jobs (state, idx)",
        ),
    ),
    Migration(
        "m003_runs",
        (
            """CREATE TABLE runs (
                id INTEGER PRIMARY KEY,
                started_at REAL NOT NULL,
                ended_at REAL,
                manifest_sha256 TEXT,
                argv TEXT NOT NULL,
                outcome TEXT
            )""",
        ),
    ),
    # Money as integer micro-dollars: a REAL column summed a million $0.02
    # estimates with float drift. SQLite cannot change a column's type, so
    # the table is rebuilt: same columns, estimate and charged INTEGER µ$.
    Migration(
        "m004_money_micros",
        (
            """CREATE TABLE jobs_micros (
                key TEXT PRIMARY KEY,
                idx INTEGER NOT NULL,
                prompt_id TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN
                    ('planned', 'submitting', 'submitted', 'completed', 'failed', 'expired')),
                request_id TEXT,
                submitted_at REAL,
                completed_at REAL,
                estimate INTEGER NOT NULL,
                charged INTEGER,
                reason TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                ambiguous INTEGER NOT NULL DEFAULT 0,
                files TEXT NOT NULL DEFAULT '[]',
                updated_at REAL NOT NULL
            ) WITHOUT ROWID""",
            """INSERT INTO jobs_micros SELECT
                key, idx, prompt_id, state, request_id, submitted_at, completed_at,
                usd_to_micros(estimate), usd_to_micros(charged),
                reason, attempts, ambiguous, files, updated_at
            FROM jobs""",
            "DROP TABLE jobs",
            "ALTER TABLE jobs_micros RENAME TO jobs",
            "CREATE INDEX jobs_state_idx ON jobs (state, idx)",
        ),
    ),
    # A failed job the server billed (a result too short, with no image, or
    # whose download failed for good) has its own record: how many such
    # failures and what they cost (µ$), kept across --retry-failed as
    # `ambiguous` is. Before it, a billed failure was counted ambiguous, and
    # reported as a possible duplicate it was not.
    Migration(
        "m005_billed_failures",
        (
            "ALTER TABLE jobs ADD COLUMN billed_failures INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE jobs ADD COLUMN billed_failed INTEGER NOT NULL DEFAULT 0",
        ),
    ),
)

MONEY_MICROS: Final = "m004_money_micros"
"""The step after which the ledger's money columns hold integer µ$ (before it: USD REAL)."""

BILLED_FAILURES: Final = "m005_billed_failures"
"""The step that adds ``billed_failures`` and ``billed_failed`` (before it: no such columns)."""


def register_functions(conn: sqlite3.Connection) -> None:
    """Give `conn` the SQL functions the steps call (``usd_to_micros``)."""
    conn.create_function("usd_to_micros", 1, _usd_to_micros, deterministic=True)


def _usd_to_micros(value: float | int | None) -> int | None:
    # A NULL charge (none reported) stays NULL.
    return None if value is None else micros(value)


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations applied to `conn`'s database, in order."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrations'"
    ).fetchone()
    if not exists:
        return []
    return [name for (name,) in conn.execute("SELECT name FROM migrations ORDER BY seq")]


def check_migrations(
    path: Path, *, applied: list[str], migrations: tuple[Migration, ...] = MIGRATIONS
) -> None:
    """Raise UsageError unless `applied` is a prefix of `migrations` (the ledger at `path`)."""
    known = [m.name for m in migrations]
    for position, name in enumerate(applied):
        if position >= len(known) or known[position] != name:
            raise UsageError(
                f"{path} was written by a newer or different runner (schema step {name!r} "
                "is unknown here); upgrade runner, or use --out elsewhere"
            )


def migrate(
    conn: sqlite3.Connection, path: Path, migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[str]:
    """Apply the `migrations` not applied yet, in order, each in its own transaction.

    Returns the names applied now. `conn` must be in autocommit mode
    (``isolation_level=None``); `path` names the ledger in messages.
    """
    register_functions(conn)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS migrations "
        "(seq INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, applied_at TEXT NOT NULL)"
    )
    applied = applied_migrations(conn)
    check_migrations(path, applied=applied, migrations=migrations)
    done: list[str] = []
    for migration in migrations[len(applied) :]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, ?)",
                (migration.name, utc_datetime().isoformat()),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
                conn.execute("ROLLBACK")
            raise
        done.append(migration.name)
    return done
