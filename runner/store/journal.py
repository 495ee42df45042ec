"""OUT/.runner/journal.bin: request ids and sends, in space reserved before any is paid.

A submit the server accepted is paid for; its request id is the only way to
get the result without paying again. The ledger records it, but the ledger
is SQLite: a disk that fills right after a burst of accepted submits fails
the `submitted` commits, and every request id of the burst is lost and paid
again on resume. The journal is the durable first copy:

- **Preallocated**: `Journal.open` reserves `capacity` fixed-size records
  on disk (posix_fallocate where the OS has it, else zeros written out) and
  fsyncs them, before the run sends anything. Writing a record then never
  needs new space, so a full disk cannot lose it.
- **Append-only, fixed records**: each record is `RECORD` bytes with a
  CRC32; a torn or unwritten record (zeros) ends the readable journal, so a
  kill mid-write loses at most that record, never an earlier one.
- **Two kinds**: `sending(key, at)` before a counted call goes on the wire
  (the rate gate of a resumed run counts the calls of the process that was
  killed, and a `submitting` row knows its send time), and
  `accepted(key, request_id, at)` as soon as a submit's answer names its
  request id, before anything else acts on it.

Each record is synced (fdatasync) before `sending`/`accepted` returns. Inside
`grouped()` the records are written at once and synced together when the
group ends: the recorder wraps the ledger writes of one group commit in it,
so the submits on the wire at once pay one sync between them, not one each,
and the sync still comes before the ledger's commit and before any caller is
answered (a request id is durable before it is acted on).

When the reserved records run out, the journal grows by another block,
reserved the same way; if even that fails (the disk is full), `sending`
raises StoreError *before* the call is sent, so nothing unrecorded is paid for.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from runner.errors import StoreError
from runner.store.atomic import fsync_dir, store_error

RECORD: Final = 256
MAGIC: Final = b"RJ1"
DEFAULT_CAPACITY: Final = 4096  # records reserved at a time: 1 MiB
_KEY_BYTES: Final = 80
_ID_BYTES: Final = 152
# magic(3) kind(1) time(f64, 8) key length(1) id length(1) key(80) id(152) pad crc32(4)
_LAYOUT: Final = struct.Struct(f"<3sBdBB{_KEY_BYTES}s{_ID_BYTES}s")
_PAD: Final = RECORD - _LAYOUT.size - 4
_KINDS: Final = {1: "sending", 2: "accepted"}

Kind = Literal["sending", "accepted"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal record: `at` is wall-clock epoch seconds; `request_id` for `accepted`."""

    kind: Kind
    key: str
    at: float
    request_id: str | None = None


def encode(entry: Entry) -> bytes:
    """The record's bytes (RECORD long). Raises ValueError for a key or id too long."""
    key = entry.key.encode("utf-8")
    rid = (entry.request_id or "").encode("utf-8")
    if len(key) > _KEY_BYTES or len(rid) > _ID_BYTES:
        raise ValueError("journal: job key or request id too long for a record")
    kind = 1 if entry.kind == "sending" else 2
    body = _LAYOUT.pack(MAGIC, kind, entry.at, len(key), len(rid), key, rid) + bytes(_PAD)
    return body + struct.pack("<I", zlib.crc32(body))


def decode(record: bytes) -> Entry | None:
    """The entry of one record, or None for an unwritten, torn or foreign one."""
    if len(record) != RECORD:
        return None
    body, (crc,) = record[:-4], struct.unpack("<I", record[-4:])
    if zlib.crc32(body) != crc:
        return None
    magic, kind, at, key_len, id_len, key, rid = _LAYOUT.unpack(body[: _LAYOUT.size])
    name = _KINDS.get(kind)
    if magic != MAGIC or name is None or key_len > _KEY_BYTES or id_len > _ID_BYTES:
        return None
    try:
        text_key = key[:key_len].decode("utf-8")
        text_id = rid[:id_len].decode("utf-8") or None
    except UnicodeDecodeError:
        return None
    return Entry(name, text_key, at, text_id)  # type: ignore[arg-type]


class Journal:
    """The folder's journal, open for appending (see the module docstring)."""

    def __init__(self, path: Path, fd: int, used: int, size: int, block: int) -> None:
        self._path = path
        self._fd: int | None = fd
        self._used = used  # records written
        self._size = size  # records reserved on disk
        self._block = block
        self._grouped = False  # inside `grouped`: records wait for the group's sync
        self._synced = used  # records known durable; those after it wait for a sync

    @classmethod
    def open(cls, out_dir: Path, *, capacity: int = DEFAULT_CAPACITY) -> Journal:
        """Open (or create) OUT/.runner/journal.bin with `capacity` free records reserved.

        Raises StoreError naming the folder and the fix when the space cannot be had.
        """
        path = out_dir / ".runner" / "journal.bin"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise store_error(err, path) from err
        try:
            used = sum(1 for _ in _records(fd))
            size = os.fstat(fd).st_size // RECORD
            journal = cls(path, fd, used, size, max(1, capacity))
            journal._reserve(used + capacity)
            fsync_dir(path.parent)
        except BaseException:
            os.close(fd)
            raise
        return journal

    @property
    def free(self) -> int:
        """Records reserved and not yet written."""
        return self._size - self._used

    def sending(self, key: str, at: float) -> None:
        """A counted call of job `key` is about to be sent (wall-clock `at`)."""
        self._append(Entry("sending", key, at))

    def accepted(self, key: str, request_id: str, at: float) -> None:
        """The server accepted job `key`'s submit as `request_id` (wall-clock `at`)."""
        self._append(Entry("accepted", key, at, request_id))

    @contextlib.contextmanager
    def grouped(self) -> Iterator[None]:
        """Records appended inside are synced once, when the block ends without error.

        Raises StoreError from that sync. If the block raises (or the sync
        fails), the group's records are not counted as written: the next
        appends (a caller retrying the writes one by one, outside a group,
        each synced) take their places again, so no unsynced record is left
        before a durable one.
        """
        if self._grouped:
            yield  # nested: the outer group syncs
            return
        self._grouped = True
        try:
            yield
        except BaseException:
            self._used = self._synced
            raise
        finally:
            self._grouped = False
        self._sync()

    def close(self) -> None:
        """Close the file (the reserved space stays for the next run)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _append(self, entry: Entry) -> None:
        if self._fd is None:
            raise StoreError(f"the journal {self._path} is closed")
        if self._used >= self._size:
            self._reserve(self._used + self._block)
        try:
            os.pwrite(self._fd, encode(entry), self._used * RECORD)
        except OSError as err:
            raise store_error(err, self._path) from err
        self._used += 1
        if not self._grouped:
            self._sync()

    def _sync(self) -> None:
        """Make the records written so far durable (one fdatasync for all of them).

        On failure they are not counted as written: the next append rewrites
        their places (a record that may not be on disk never sits before one
        that is).
        """
        if self._synced >= self._used or self._fd is None:
            return
        try:
            _datasync(self._fd)
        except OSError as err:
            self._used = self._synced
            raise store_error(err, self._path) from err
        self._synced = self._used

    def _reserve(self, records: int) -> None:
        """Make the file at least `records` long, in space the disk has really given."""
        assert self._fd is not None
        if records <= self._size:
            return
        length = records * RECORD
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(self._fd, 0, length)
            else:  # pragma: no cover - Windows, macOS: zeros written are space taken
                end = self._size * RECORD
                os.pwrite(self._fd, bytes(length - end), end)
            os.fsync(self._fd)
        except OSError as err:
            raise store_error(err, self._path) from err
        self._size = records


def read_journal(out_dir: Path) -> list[Entry]:
    """Every readable entry of OUT/.runner/journal.bin, in order ([] when there is none)."""
    path = out_dir / ".runner" / "journal.bin"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise store_error(err, path, action="read") from err
    with contextlib.closing(_Fd(fd)):
        return list(_records(fd))


def accepted_ids(entries: list[Entry]) -> dict[str, tuple[str, float]]:
    """The latest accepted request id and its time, by job key."""
    found: dict[str, tuple[str, float]] = {}
    for entry in entries:
        if entry.kind == "accepted" and entry.request_id:
            found[entry.key] = (entry.request_id, entry.at)
    return found


@dataclass(frozen=True, slots=True)
class Replay:
    """The journal read once (`replay`): what a ledger's open and a resumed rate gate need.

    `ids`: by job key, the request id and wall-clock time (epoch seconds) of
    its latest send, when the journal saw that send accepted. A key whose
    last entry is `sending` was sent again after any earlier acceptance, so
    an older id must not stand for the newer send.

    `unanswered`: the wall-clock times (epoch seconds) of the billed sends
    with no answer journalled after them, one per key whose last entry is
    its `sending`: the calls a killed run left on the wire, and sends the
    server refused.
    """

    ids: dict[str, tuple[str, float]]
    unanswered: tuple[float, ...]


def replay(entries: Iterable[Entry]) -> Replay:
    """What `entries` (a journal, in order) hand back; see `Replay`. Pure."""
    last: dict[str, Entry] = {}
    for entry in entries:
        last[entry.key] = entry
    ids: dict[str, tuple[str, float]] = {}
    unanswered: list[float] = []
    for key, entry in last.items():
        if entry.kind == "sending":
            unanswered.append(entry.at)
        elif entry.request_id:
            ids[key] = (entry.request_id, entry.at)
    return Replay(ids, tuple(unanswered))


def _records(fd: int) -> Iterator[Entry]:
    offset = 0
    while True:
        record = os.pread(fd, RECORD, offset)
        entry = decode(record)
        if entry is None:
            return  # unwritten (zeros), torn, or the end of the file
        yield entry
        offset += RECORD


# The data, not the metadata, must reach the disk: the file's size does not change.
_datasync = getattr(os, "fdatasync", os.fsync)


class _Fd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)


__all__ = [
    "DEFAULT_CAPACITY",
    "RECORD",
    "Entry",
    "Journal",
    "Replay",
    "accepted_ids",
    "read_journal",
    "replay",
]
