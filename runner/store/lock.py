"""One runner per output folder: an exclusive lock on ``OUT/.runner/lock``.

Two runs on one folder would both see a job as planned and both pay for it.
The lock is `filelock`'s OS lock (``flock`` on POSIX, ``msvcrt.locking`` on
Windows): it belongs to the open file, so the OS releases it when the
process dies, even by SIGKILL, and a crashed run never leaves a stale lock.
filelock's soft fallback (a marker file, for file systems without locks) is
off for that reason: a marker could outlive its process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from filelock import FileLock, Timeout

from runner.errors import UsageError
from runner.store.atomic import store_error

LOCK_NAME: Final = "lock"


@dataclass(frozen=True, slots=True)
class FolderLock:
    """A held folder lock; `release_folder_lock` gives it back."""

    lock: FileLock
    path: Path


def _write_pid(fd: int) -> None:
    # The pid is only for the "in use" message of another process; the lock is the OS's.
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)


def _holder(lock: Path) -> str:
    """The pid the holder wrote, or ``?`` (Windows refuses to read a locked byte range)."""
    try:
        with lock.open("rb") as file:
            return file.read(32).decode("ascii", "replace").strip() or "?"
    except OSError:
        return "?"


def take_folder_lock(runner_dir: Path, out_dir: Path) -> FolderLock:
    """Lock `out_dir` (its lock file lives in `runner_dir`) without waiting.

    Raises UsageError when another process (or another open ledger of this
    one) holds it, StoreError on a disk fault.
    """
    lock = runner_dir / LOCK_NAME
    # timeout=0: fail at once; thread_local=False: the ledger may close in another thread.
    held = FileLock(
        lock, timeout=0, thread_local=False, fallback_to_soft=False, on_acquired=_write_pid
    )
    try:
        held.acquire()
    except Timeout:
        raise UsageError(
            f"{out_dir} is in use by another runner process (pid {_holder(lock)}); "
            "wait for it to finish or use --out elsewhere"
        ) from None
    except OSError as err:
        raise store_error(err, lock, action="lock") from None
    return FolderLock(held, lock)


def release_folder_lock(folder_lock: FolderLock) -> None:
    """Release a lock taken by `take_folder_lock` (the lock file stays, empty of meaning)."""
    folder_lock.lock.release(force=True)
