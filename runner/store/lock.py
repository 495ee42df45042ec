"""One runner per output folder: an exclusive lock on ``OUT/.runner/lock``.

Two runs on one folder would both see a job as planned and both pay for it.
`flock` locks belong to the open file, so the OS releases them when the
process dies, even by SIGKILL: a crashed run never leaves a stale lock.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final

from runner.errors import UsageError
from runner.store.atomic import store_error

LOCK_NAME: Final = "lock"

if sys.platform == "win32":  # pragma: no cover - Windows is not a target yet

    def _try_lock(fd: int) -> bool:
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def take_folder_lock(runner_dir: Path, out_dir: Path) -> int:
    """Lock `out_dir` (its lock file lives in `runner_dir`); return the fd to `release` later.

    Raises UsageError when another process holds it, StoreError on a disk fault.
    """
    lock = runner_dir / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise store_error(err, lock, action="open the lock file") from None
    try:
        if not _try_lock(fd):
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            raise UsageError(
                f"{out_dir} is in use by another runner process (pid {holder}); "
                "wait for it to finish or use --out elsewhere"
            )
        # The pid is only for that message; the lock itself is the flock.
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
    except OSError as err:
        os.close(fd)
        raise store_error(err, lock, action="lock") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def release_folder_lock(fd: int) -> None:
    """Release a lock taken by `take_folder_lock` (closing the fd drops the flock)."""
    os.close(fd)
