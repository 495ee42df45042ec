"""The ledger's file: where it lives, how it is opened, what it records about the folder.

``OUT/.runner/ledger.sqlite`` in WAL mode with ``synchronous=FULL``
(`connect_writable`), or opened read-only (`connect_readonly`); a SQLite
failure becomes our error naming the cause and the fix (`sqlite_error`);
``--fresh`` moves an old ledger aside, never deleting it (`move_aside`);
the folder's backend is recorded on first use and checked on every later
one (`folder_meta`). The schema is migrations.py's.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Final

from runner.clock import WallClock, utc_datetime
from runner.errors import RunnerError, StoreError, UsageError
from runner.store.atomic import fsync_dir, store_error
from runner.store.ledger_rows import Columns, LedgerMeta
from runner.store.migrations import (
    BILLED_FAILURES,
    MONEY_MICROS,
    applied_migrations,
    check_migrations,
    migrate,
    register_functions,
)
from runner.store.sidecar import public_url

RUNNER_DIR: Final = ".runner"
LEDGER_NAME: Final = "ledger.sqlite"


def ledger_path(out_dir: Path) -> Path:
    """Where the ledger of an output folder lives."""
    return out_dir / RUNNER_DIR / LEDGER_NAME


def sqlite_error(err: sqlite3.Error, path: Path) -> RunnerError:
    """Our error for a SQLite failure on the ledger at `path`: the cause and the fix."""
    code = getattr(err, "sqlite_errorcode", None)
    base = None if code is None else code & 0xFF
    if base == sqlite3.SQLITE_FULL:
        text = "no space left on device; free space or use --out elsewhere"
    elif base == sqlite3.SQLITE_READONLY:
        text = "the file or its folder is read-only; use --out elsewhere"
    elif base in (sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_AUTH):
        text = "cannot open it (permission denied or missing folder); use --out elsewhere"
    elif base in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        text = "another process holds it locked; wait for it to finish"
    elif base in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return UsageError(
            f"{path} is not a usable runner ledger ({err}); move it aside, "
            "or use --fresh (keeps it as ledger.<time>.sqlite)"
        )
    else:
        text = f"{err}"
    return StoreError(f"ledger {path}: {text}")


def move_aside(path: Path) -> Path | None:
    """Rename a ledger (and its WAL files) to ledger.<UTC time>.sqlite; never delete it."""
    if not path.exists():
        return None
    stamp = utc_datetime().strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"ledger.{stamp}.sqlite")
    try:
        # The WAL may hold committed rows not yet in the main file: it moves with it.
        for suffix in ("-wal", "-shm", ""):
            old = path.with_name(path.name + suffix)
            if old.exists():
                os.replace(old, target.with_name(target.name + suffix))
        fsync_dir(path.parent)
    except OSError as err:
        raise store_error(err, path, action="move aside") from None
    return target


def connect_writable(path: Path) -> sqlite3.Connection:
    """A connection to the ledger at `path` for a run: WAL, every commit fsynced, migrated.

    Raises StoreError where the file system has no WAL, sqlite3.Error on any other
    fault (for the caller to translate); the connection is closed before either.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(
                f"ledger {path}: this file system does not support SQLite's WAL mode; "
                "use --out on a local disk"
            )
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_readonly(path: Path) -> tuple[sqlite3.Connection, LedgerMeta, Columns]:
    """A read-only connection to an existing ledger, its meta, and the columns its
    `jobs` table has (an older runner's folder is read as it is, not migrated).

    Raises UsageError for a ledger this runner cannot read (a newer one's, or one
    never used by a run), and our error for any SQLite failure.
    """
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as err:
        raise sqlite_error(err, path) from None
    try:
        conn.execute("PRAGMA busy_timeout=5000")
        applied = applied_migrations(conn)
        check_migrations(path, applied=applied)
        register_functions(conn)
        meta = read_meta(conn)
        if meta is None:
            raise UsageError(f"{path} records no backend; it was never used by a run")
        return conn, meta, Columns(MONEY_MICROS not in applied, BILLED_FAILURES in applied)
    except BaseException as err:
        conn.close()
        if isinstance(err, sqlite3.Error):
            raise sqlite_error(err, path) from None
        raise


def read_meta(conn: sqlite3.Connection) -> LedgerMeta | None:
    """What the ledger records about its folder; None before a run has used it."""
    values = dict(conn.execute("SELECT name, value FROM meta").fetchall())
    if "backend" not in values:
        return None
    return LedgerMeta(
        backend=values["backend"],
        base_url=values["base_url"],
        created_at=float(values.get("created_at", "0")),
        runner_version=values.get("runner_version", "?"),
    )


def folder_meta(
    conn: sqlite3.Connection, out_dir: Path, *, backend: str, base_url: str, wall: WallClock
) -> LedgerMeta:
    """Record the folder's backend on first use; refuse another one later."""
    base_url = public_url(base_url, keep_query=False).rstrip("/")
    meta = read_meta(conn)
    if meta is None:
        from runner import __version__

        meta = LedgerMeta(
            backend=backend, base_url=base_url, created_at=wall(), runner_version=__version__
        )
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO meta (name, value) VALUES (?, ?)",
            [
                ("backend", meta.backend),
                ("base_url", meta.base_url),
                ("created_at", repr(meta.created_at)),
                ("runner_version", meta.runner_version),
            ],
        )
        conn.execute("COMMIT")
        return meta
    if (meta.backend, meta.base_url) != (backend, base_url):
        raise UsageError(
            f"{out_dir} was made with backend {meta.backend!r} ({meta.base_url}); this run "
            f"uses {backend!r} ({base_url}). Use --out elsewhere or --fresh"
        )
    return meta
