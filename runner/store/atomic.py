"""Atomic, durable file writes, and local disk faults translated into StoreError.

A file is either absent or whole: the bytes go to a temp file in the same
folder (created exclusively), are fsynced, renamed over the final name with
`os.replace` (atomic on POSIX and Windows), and the folder is fsynced so the
rename itself survives a power cut. A crash leaves at most a temp file, named
``.<name>.<random>.tmp`` so `is_temp_name` (and `runner verify`) can find it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

from runner.errors import StoreError

TEMP_SUFFIX: Final = ".tmp"

_NO_SPACE: Final = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_NO_PERMISSION: Final = frozenset({errno.EACCES, errno.EPERM})


def store_error(err: OSError, path: Path, *, action: str = "write") -> StoreError:
    """A StoreError for an OSError met while doing `action` on `path`: the cause and the fix."""
    where = f"cannot {action} {path}"
    if err.errno in _NO_SPACE:
        message = f"{where}: no space left on device; free space or use --out elsewhere"
    elif err.errno in _NO_PERMISSION:
        message = (
            f"{where}: permission denied; make the folder writable for this user "
            "or use --out elsewhere"
        )
    elif err.errno == errno.EROFS:
        message = f"{where}: the file system is read-only; use --out elsewhere"
    elif err.errno == errno.ENOTDIR:
        message = f"{where}: a part of the path is a file, not a folder; use --out elsewhere"
    else:
        name = errno.errorcode.get(err.errno or 0, "unknown error")
        message = f"{where}: {err.strerror or err} ({name})"
    return StoreError(message)


def is_temp_name(name: str) -> bool:
    """True for names our atomic writes use for temp files (``.<name>.<random>.tmp``)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def _temp_name(final: str) -> str:
    # Keep the temp name under the usual 255-byte limit however long `final` is.
    head = final.encode("utf-8")[:200].decode("utf-8", "ignore")
    return f".{head}.{secrets.token_hex(6)}{TEMP_SUFFIX}"


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename, a new file) to disk. No-op where unsupported."""
    flag = getattr(os, "O_DIRECTORY", None)
    if flag is None:  # Windows cannot open a folder; NTFS journals renames itself.
        return
    fd = os.open(folder, os.O_RDONLY | flag)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(folder: Path) -> None:
    """Create `folder` and missing parents durably (each parent fsynced). Raises StoreError."""
    missing: list[Path] = []
    current = folder
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    try:
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir()
            fsync_dir(path.parent)
    except OSError as err:
        raise store_error(err, folder, action="create the folder") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably; create missing folders.

    On any OSError the temp file is removed and a StoreError names the path,
    the cause and the fix (no space, no permission, read-only, ...).
    """
    ensure_dir(path.parent)
    temp = path.with_name(_temp_name(path.name))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    created = False
    try:
        fd = os.open(temp, flags, 0o644)
        created = True
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        created = False
        fsync_dir(path.parent)
    except OSError as err:
        if created:
            with contextlib.suppress(OSError):
                temp.unlink()
        raise store_error(err, path) from None


@contextlib.contextmanager
def open_atomic(path: Path) -> Iterator[BinaryIO]:
    """A binary file to stream into; on a clean exit it becomes `path` atomically and durably.

    For output too big to hold as one bytes object (`write_atomic`'s rule,
    written in pieces): on an exception or an OSError the temp file is
    removed and `path` is untouched; an OSError becomes a StoreError naming `path`.
    """
    ensure_dir(path.parent)
    temp = path.with_name(_temp_name(path.name))
    try:
        with temp.open("xb") as file:
            try:
                yield file
                file.flush()
                os.fsync(file.fileno())
            except BaseException:
                file.close()
                with contextlib.suppress(OSError):
                    temp.unlink()
                raise
        os.replace(temp, path)
        fsync_dir(path.parent)
    except OSError as err:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise store_error(err, path) from None


def temp_files(root: Path) -> Iterator[Path]:
    """Leftover temp files of interrupted writes anywhere under `root`, sorted per folder."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if is_temp_name(name):
                yield Path(folder) / name


def remove_temp_files(root: Path) -> list[Path]:
    """Delete leftover temp files under `root` (on resume, while holding the folder lock).

    Returns what was removed. Raises StoreError if one cannot be removed.
    """
    removed: list[Path] = []
    for path in temp_files(root):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:
            raise store_error(err, path, action="remove the leftover temp file") from None
        removed.append(path)
    return removed
