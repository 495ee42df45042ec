"""The ledger: one SQLite row per job, so a re-run skips what is done and never pays twice.

``OUT/.runner/ledger.sqlite``, WAL mode with ``synchronous=FULL``: every
state change is its own committed, fsynced transaction before the method
returns. That is what lets a crash lose nothing paid for: ``submitted``
(with its request id) is on disk before the first poll.

States and the moves each method allows (anything else raises ValueError,
a bug in the caller, because it could pay twice or drop a result)::

    plan        (absent)                              -> planned
    submitting  planned | submitting | failed | expired -> submitting   (attempts + 1)
    submitted   planned | submitting                  -> submitted     (request_id, at)
    completed   any                                   -> completed     (charged, files)
    failed      any but completed                     -> failed        (reason)
    expired     submitting | submitted                -> expired
    reset       any but submitted                     -> planned       (--retry-failed, ...)

One process owns a folder at a time: `Ledger.open` takes an exclusive lock
on ``OUT/.runner/lock`` (released by the OS if the process dies).
`Ledger.open_readonly` takes no lock, for `runner status` and `runner
verify` while a run goes on.

The schema is in migrations.py: ordered, named steps applied on open.
Money is integer micro-dollars (`runner.money.Micros`) in the file, in every
sum and in every row returned; times are wall-clock epoch seconds from
`runner.clock.wall_time`. A read-only open of a folder an older runner
wrote (money still USD REAL: not migrated, since it is not ours to write)
converts on read, by the same rule.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast

from runner.clock import WallClock, utc_datetime, wall_time
from runner.errors import RunnerError, StoreError, UsageError
from runner.money import ZERO, Micros
from runner.store.atomic import ensure_dir, fsync_dir, store_error
from runner.store.journal import read_journal, unrecorded_ids
from runner.store.lock import FolderLock, release_folder_lock, take_folder_lock
from runner.store.migrations import (
    MONEY_MICROS,
    applied_migrations,
    check_migrations,
    migrate,
    register_functions,
)
from runner.store.sidecar import public_url

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

RUNNER_DIR: Final = ".runner"
LEDGER_NAME: Final = "ledger.sqlite"

# SQLite's own limit on bound parameters is 32766 since 3.32; stay far below.
_CHUNK: Final = 500


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


def ledger_path(out_dir: Path) -> Path:
    """Where the ledger of an output folder lives."""
    return out_dir / RUNNER_DIR / LEDGER_NAME


def _columns(estimate: str, charged: str) -> str:
    return (
        "key, idx, prompt_id, state, request_id, submitted_at, completed_at, "
        f"{estimate}, {charged}, reason, attempts, ambiguous, files, updated_at"
    )


_SELECT: Final = f"SELECT {_columns('estimate', 'charged')} FROM jobs"  # noqa: S608 (constant)
# A ledger before m004_money_micros, opened read-only: its USD REAL columns
# are converted as they are read, by the migration's own function.
_SELECT_USD: Final = (
    f"SELECT {_columns('usd_to_micros(estimate)', 'usd_to_micros(charged)')} FROM jobs"  # noqa: S608
)


def _row(values: tuple[Any, ...]) -> JobRow:
    # Positional, in _COLUMNS order: the resume scan builds 100k of these.
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


def _sqlite_error(err: sqlite3.Error, path: Path) -> RunnerError:
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


def _move_aside(path: Path) -> Path | None:
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


class Ledger:
    """The job ledger of one output folder. Create with `open` or `open_readonly`.

    Every method is synchronous and quick, one committed transaction each,
    and safe to call from any thread (a lock serialises them). `wall` stamps
    ``updated_at``.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        meta: LedgerMeta,
        *,
        lock_fd: FolderLock | None,
        readonly: bool,
        usd_columns: bool = False,
        wall: WallClock = wall_time,
    ) -> None:
        self._conn = conn
        # Re-entrant: `transaction` holds it around writes that take it again.
        self._lock = threading.RLock()
        self._lock_fd = lock_fd
        self._wall = wall
        # Money columns still USD REAL (an older runner's folder, read-only).
        self._usd = usd_columns
        self._select = _SELECT_USD if usd_columns else _SELECT
        self.path = path
        self.meta = meta
        self.readonly = readonly

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        out_dir: Path,
        *,
        backend: str,
        base_url: str,
        fresh: bool = False,
        wall: WallClock = wall_time,
    ) -> Ledger:
        """Open (or create) the ledger of `out_dir` for a run with `backend` at `base_url`.

        Takes the folder's lock (UsageError if another runner holds it). A
        folder made with another backend or base URL is refused with a
        UsageError, unless `fresh`: then the old ledger is renamed to
        ``ledger.<time>.sqlite`` (images stay) and a new one starts.
        Disk faults raise StoreError.
        """
        runner_dir = out_dir / RUNNER_DIR
        ensure_dir(runner_dir)
        lock_fd = take_folder_lock(runner_dir, out_dir)
        path = runner_dir / LEDGER_NAME
        conn: sqlite3.Connection | None = None
        try:
            if fresh:
                _move_aside(path)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"ledger {path}: this file system does not support SQLite's WAL mode; "
                    "use --out on a local disk"
                )
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            migrate(conn, path)
            meta = _meta(conn, out_dir, backend=backend, base_url=base_url, wall=wall)
            ledger = cls(conn, path, meta, lock_fd=lock_fd, readonly=False, wall=wall)
            ledger.replay_journal(out_dir)
            return ledger
        except BaseException as err:
            if conn is not None:
                conn.close()
            release_folder_lock(lock_fd)
            if isinstance(err, sqlite3.Error):
                raise _sqlite_error(err, path) from None
            raise

    @classmethod
    def open_readonly(cls, out_dir: Path) -> Ledger:
        """Open an existing ledger for reading only, without the lock (status, verify).

        Raises UsageError when `out_dir` has no ledger or one this runner
        cannot read.
        """
        path = ledger_path(out_dir)
        if not path.is_file():
            raise UsageError(
                f"{out_dir} has no ledger ({path}): it is not a runner output folder, "
                "or nothing has run there yet"
            )
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as err:
            raise _sqlite_error(err, path) from None
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            applied = applied_migrations(conn)
            check_migrations(path, applied=applied)
            register_functions(conn)
            meta = _read_meta(conn)
            if meta is None:
                raise UsageError(f"{path} records no backend; it was never used by a run")
            usd = MONEY_MICROS not in applied
            return cls(conn, path, meta, lock_fd=None, readonly=True, usd_columns=usd)
        except BaseException as err:
            conn.close()
            if isinstance(err, sqlite3.Error):
                raise _sqlite_error(err, path) from None
            raise

    def close(self) -> None:
        """Close the connection and release the folder lock. Idempotent."""
        with self._lock:
            self._conn.close()
            if self._lock_fd is not None:
                release_folder_lock(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as err:
                raise _sqlite_error(err, self.path) from None

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
        if self.readonly:
            raise ValueError(f"ledger {self.path} is open read-only")
        with self._db() as db:
            changed = db.execute(sql, args).rowcount
            if changed:
                return
            found = db.execute("SELECT state FROM jobs WHERE key = ?", (key,)).fetchone()
        if found is None:
            raise ValueError(f"ledger has no job {key}; plan it first")
        raise ValueError(f"job {key} is {found[0]}; it cannot become {to}")

    # -- writes: one committed transaction each ----------------------------------------------

    def plan(self, key: str, idx: int, prompt_id: str, estimate: Micros) -> JobRow:
        """Record a job as planned unless it is known already; return its row.

        `estimate` is µ$ for the whole request.
        """
        self.plan_many([(key, idx, prompt_id, estimate)])
        row = self.get(key)
        assert row is not None
        return row

    def plan_many(self, items: Iterable[tuple[str, int, str, Micros]]) -> int:
        """Plan many jobs ((key, idx, prompt_id, estimate µ$) each); return how many were new.

        Committed in batches: a planned row is cheap to redo, so it does not
        need a transaction of its own.
        """
        if self.readonly:
            raise ValueError(f"ledger {self.path} is open read-only")
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
            if len(batch) >= 1000:
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
            (charged, json.dumps(list(files)), at, reason, self._wall(), key),
            key=key,
            to="completed",
        )

    def failed(self, key: str, reason: str) -> None:
        """Record a final failure and why (retried only with --retry-failed)."""
        self._write(
            "UPDATE jobs SET state = 'failed', reason = ?, updated_at = ? "
            "WHERE key = ? AND state != 'completed'",
            (reason, self._wall(), key),
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
        if self.readonly:
            raise ValueError(f"ledger {self.path} is open read-only")
        with self._db() as db:
            cursor = db.execute(
                "INSERT INTO runs (started_at, manifest_sha256, argv) VALUES (?, ?, ?)",
                (at, manifest_sha256, json.dumps(list(argv))),
            )
            return cast(int, cursor.lastrowid)

    def end_run(self, run_id: int, *, outcome: str, at: float) -> None:
        """Record a run's end and its outcome (e.g. an exit code's name)."""
        if self.readonly:
            raise ValueError(f"ledger {self.path} is open read-only")
        with self._db() as db:
            db.execute(
                "UPDATE runs SET ended_at = ?, outcome = ? WHERE id = ?", (at, outcome, run_id)
            )

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str) -> JobRow | None:
        """The row of `key`, or None."""
        with self._db() as db:
            found = db.execute(f"{self._select} WHERE key = ?", (key,)).fetchone()
        return _row(found) if found else None

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
                row = _row(values)
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
        return map(_row, fetched)

    def stream_rows(self, *, batch: int = 1000) -> Iterator[JobRow]:
        """All rows in expansion order (idx), read `batch` at a time: a report over a big
        ledger holds one batch, not every row. Holds this ledger's lock until the
        iteration ends, so use it on a ledger of your own (`open_readonly`), as reports do.
        """
        with self._db() as db:
            cursor = db.execute(f"{self._select} ORDER BY idx, key")
            while fetched := cursor.fetchmany(batch):
                yield from map(_row, fetched)
                del fetched  # else it lives on while the next batch is fetched: two in memory

    def in_flight(self) -> list[JobRow]:
        """Rows in submitting or submitted, oldest submit first (unconfirmed ones first)."""
        with self._db() as db:
            fetched = db.execute(
                f"{self._select} WHERE state IN ('submitting', 'submitted') "
                "ORDER BY submitted_at IS NOT NULL, submitted_at, idx"
            ).fetchall()
        return [_row(values) for values in fetched]

    def counts(self) -> dict[State, int]:
        """Number of jobs in each state (every state present, zeros included)."""
        counts: dict[State, int] = dict.fromkeys(STATES, 0)
        with self._db() as db:
            for state, count in db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
                counts[cast(State, state)] = count
        return counts

    def totals(self) -> dict[State, StateTotals]:
        """Aggregates per state (every state present) for `runner status`."""
        totals = {state: StateTotals(state, 0, ZERO, ZERO, 0, 0, None, None) for state in STATES}
        estimate, charged = self._money("estimate"), self._money("charged")
        with self._db() as db:
            # SUM of INTEGER is an exact integer (TOTAL would be a float).
            fetched = db.execute(
                f"SELECT state, COUNT(*), COALESCE(SUM({estimate}), 0), "  # noqa: S608 (constant)
                f"COALESCE(SUM({charged}), 0), COUNT(charged), TOTAL(ambiguous), "
                "MIN(submitted_at), MIN(updated_at) FROM jobs GROUP BY state"
            ).fetchall()
        for state, jobs, estimates, charges, charged_jobs, ambiguous, oldest, updated in fetched:
            totals[state] = StateTotals(
                state=state,
                jobs=jobs,
                estimate=Micros(estimates),
                charged=Micros(charges),
                charged_jobs=charged_jobs,
                ambiguous=int(ambiguous),
                oldest_submitted_at=oldest,
                oldest_updated_at=updated,
            )
        return totals

    def replay_journal(self, out_dir: Path) -> int:
        """Put back the request ids the journal kept and this ledger lost; how many.

        A kill (or a full disk) between a submit's answer and the `submitted`
        commit leaves the row `submitting` though the server accepted and
        billed it; the journal (runner.store.journal) had the id first. Each
        `submitting` row whose latest send the journal saw accepted becomes
        `submitted`, so the next run re-attaches to the paid result instead
        of paying again. Called by `open`.
        """
        ids = unrecorded_ids(read_journal(out_dir))
        replayed = 0
        for key, row in self.get_many(ids).items():
            if row.state == "submitting":
                request_id, at = ids[key]
                self.submitted(key, request_id, at)
                replayed += 1
        return replayed

    def possible_extra_spend(self, per_kill: int | None = None) -> Micros:
        """µ$ that earlier runs may have been billed without a result to show for it.

        Each ambiguous submit (its answer lost) may have been accepted, and so
        may a job left `submitting` by a crash: their estimates, so a resumed
        run's budget counts them. `per_kill` (the runs' max_submits_in_flight)
        bounds the `submitting` rows counted: a killed run (one never ended)
        had at most that many sends on the wire, so only the `per_kill`
        dearest rows per killed run count (None: every row). Then a folder can
        always be finished by raising the cap by at most that much.
        """
        estimate = self._money("estimate")
        with self._db() as db:
            (extra,) = db.execute(
                f"SELECT COALESCE(SUM(ambiguous * {estimate}), 0) FROM jobs"  # noqa: S608
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

    def _money(self, column: str) -> str:
        """The SQL for money `column` in µ$ (converted on read in an older runner's ledger)."""
        return f"usd_to_micros({column})" if self._usd else column

    def migrations(self) -> list[str]:
        """Names of the applied migrations, in order."""
        with self._db() as db:
            return applied_migrations(db)


def _read_meta(conn: sqlite3.Connection) -> LedgerMeta | None:
    values = dict(conn.execute("SELECT name, value FROM meta").fetchall())
    if "backend" not in values:
        return None
    return LedgerMeta(
        backend=values["backend"],
        base_url=values["base_url"],
        created_at=float(values.get("created_at", "0")),
        runner_version=values.get("runner_version", "?"),
    )


def _meta(
    conn: sqlite3.Connection, out_dir: Path, *, backend: str, base_url: str, wall: WallClock
) -> LedgerMeta:
    """Record the folder's backend on first use; refuse another one later."""
    base_url = public_url(base_url, keep_query=False).rstrip("/")
    meta = _read_meta(conn)
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
