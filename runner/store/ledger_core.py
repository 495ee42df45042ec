"""What the ledger's reads and writes share: one connection, used by one thread at a time.

`LedgerCore` holds the connection, the lock that serialises its use, the
wall clock that stamps ``updated_at`` and the folder lock a writable
ledger owns; `_db` is the one way in, translating SQLite failures into
our errors (ledger_file.sqlite_error). ledger_writes.py and ledger_reads.py
build on it; ledger.py's `Ledger` is both.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from runner.clock import WallClock, wall_time
from runner.store.ledger_file import sqlite_error
from runner.store.ledger_rows import CURRENT, Columns, LedgerMeta, select_sql
from runner.store.lock import FolderLock, release_folder_lock


class LedgerCore:
    """The connection of one ledger, its lock and its clock (see the module docstring)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        meta: LedgerMeta,
        *,
        lock_fd: FolderLock | None,
        readonly: bool,
        columns: Columns = CURRENT,
        wall: WallClock = wall_time,
    ) -> None:
        self._conn = conn
        # Re-entrant: `transaction` holds it around writes that take it again.
        self._lock = threading.RLock()
        self._lock_fd = lock_fd
        self._wall = wall
        # An older runner's folder opened read-only: the columns as it has them.
        self._columns = columns
        self._select = select_sql(columns)
        self.path = path
        self.meta = meta
        self.readonly = readonly
        # Set by `Ledger.open` from its one read of the journal: wall-clock times
        # (epoch s) of the billed sends with no answer journalled (a kill's calls
        # on the wire), for the resumed rate gate (runner/modes.py).
        self.unanswered_sends: tuple[float, ...] = ()

    def close(self) -> None:
        """Close the connection and release the folder lock. Idempotent."""
        with self._lock:
            self._conn.close()
            if self._lock_fd is not None:
                release_folder_lock(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as err:
                raise sqlite_error(err, self.path) from None

    def _check_writable(self) -> None:
        if self.readonly:
            raise ValueError(f"ledger {self.path} is open read-only")

    def _money(self, column: str) -> str:
        """The SQL for money `column` in µ$ (converted on read in an older runner's ledger)."""
        return self._columns.money(column)

    def _billed(self, column: str) -> str:
        """The SQL for billed-failure `column` (0 in an older runner's ledger, which has none)."""
        return self._columns.billed_column(column)
