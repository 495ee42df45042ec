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
    failed      any but completed                     -> failed        (reason; billed)
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

The parts, one concern each (this module is the facade; import from here
or from runner.store)::

    ledger_rows.py    the values (JobRow, LedgerMeta, StateTotals) and the row codec
    ledger_file.py    where the file lives, opening it, its errors, --fresh, the folder's meta
    ledger_core.py    the connection, its lock and clock, shared by reads and writes
    ledger_writes.py  the state moves (one transaction each, or a group), runs
    ledger_reads.py   rows by key, by state, streamed; counts and totals
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from runner.clock import WallClock, wall_time
from runner.errors import UsageError
from runner.money import Micros
from runner.store.atomic import ensure_dir
from runner.store.journal import read_journal, replay
from runner.store.ledger_file import (
    LEDGER_NAME,
    RUNNER_DIR,
    connect_readonly,
    connect_writable,
    folder_meta,
    ledger_path,
    move_aside,
    sqlite_error,
)
from runner.store.ledger_reads import LedgerReads
from runner.store.ledger_rows import IN_FLIGHT, STATES, JobRow, LedgerMeta, State, StateTotals
from runner.store.ledger_writes import LedgerWrites
from runner.store.lock import release_folder_lock, take_folder_lock

__all__ = [
    "IN_FLIGHT",
    "LEDGER_NAME",
    "RUNNER_DIR",
    "STATES",
    "JobRow",
    "Ledger",
    "LedgerMeta",
    "State",
    "StateTotals",
    "ledger_path",
]


class Ledger(LedgerWrites, LedgerReads):
    """The job ledger of one output folder. Create with `open` or `open_readonly`.

    Every method is synchronous and quick, one committed transaction each,
    and safe to call from any thread (a lock serialises them). `wall` stamps
    ``updated_at``.
    """

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
                move_aside(path)
            conn = connect_writable(path)
            meta = folder_meta(conn, out_dir, backend=backend, base_url=base_url, wall=wall)
            ledger = cls(conn, path, meta, lock_fd=lock_fd, readonly=False, wall=wall)
            ledger.unanswered_sends = ledger.replay_journal(out_dir)
            return ledger
        except BaseException as err:
            if conn is not None:
                conn.close()
            release_folder_lock(lock_fd)
            if isinstance(err, sqlite3.Error):
                raise sqlite_error(err, path) from None
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
        conn, meta, columns = connect_readonly(path)
        return cls(conn, path, meta, lock_fd=None, readonly=True, columns=columns)

    # -- the moves that read as well as write ------------------------------------------------

    def plan(self, key: str, idx: int, prompt_id: str, estimate: Micros) -> JobRow:
        """Record a job as planned unless it is known already; return its row.

        `estimate` is µ$ for the whole request.
        """
        self.plan_many([(key, idx, prompt_id, estimate)])
        row = self.get(key)
        assert row is not None
        return row

    def replay_journal(self, out_dir: Path) -> tuple[float, ...]:
        """Put back the request ids the journal kept and this ledger lost; return the
        wall-clock times (epoch seconds) of the billed sends it saw with no answer.

        A kill (or a full disk) between a submit's answer and the `submitted`
        commit leaves the row `submitting` though the server accepted and
        billed it; the journal (runner.store.journal) had the id first. Each
        `submitting` row whose latest send the journal saw accepted becomes
        `submitted`, so the next run re-attaches to the paid result instead
        of paying again. Called by `open`, which keeps the sends as
        `unanswered_sends`: the journal is read here once, for both.
        """
        found = replay(read_journal(out_dir))
        # The few `submitting` rows (by the state index), not a row per journalled
        # id: a folder of 100,000 finished jobs has as many ids to look up.
        for row in self.rows("submitting"):
            if row.key in found.ids:
                request_id, at = found.ids[row.key]
                self.submitted(row.key, request_id, at)
        return found.unanswered
