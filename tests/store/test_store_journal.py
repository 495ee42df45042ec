"""The request-id journal: fixed records in reserved space, on real files (and a full tmpfs)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.errors import StoreError
from runner.store.journal import (
    RECORD,
    Entry,
    Journal,
    accepted_ids,
    decode,
    encode,
    read_journal,
)

KEY = "k1:" + "ab" * 32


def test_records_round_trip_and_reopen_appends_after_them(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, capacity=8)
    journal.sending(KEY, 100.0)
    journal.accepted(KEY, "6f1c-req", 100.5)
    journal.close()
    again = Journal.open(tmp_path, capacity=8)
    again.accepted(KEY, "second-req", 200.0)
    again.close()
    entries = read_journal(tmp_path)
    assert entries == [
        Entry("sending", KEY, 100.0),
        Entry("accepted", KEY, 100.5, "6f1c-req"),
        Entry("accepted", KEY, 200.0, "second-req"),
    ]
    assert accepted_ids(entries) == {KEY: ("second-req", 200.0)}


def test_space_is_reserved_before_anything_is_written(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, capacity=100)
    path = tmp_path / ".runner" / "journal.bin"
    assert path.stat().st_size == 100 * RECORD
    assert journal.free == 100
    for i in range(101):  # past the reserve: it grows by another block
        journal.sending(KEY, float(i))
    assert journal.free == 99
    journal.close()
    assert len(read_journal(tmp_path)) == 101


def test_a_torn_record_ends_the_journal_and_keeps_every_earlier_one(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, capacity=4)
    journal.accepted(KEY, "first", 1.0)
    journal.accepted(KEY, "second", 2.0)
    journal.close()
    path = tmp_path / ".runner" / "journal.bin"
    with path.open("r+b") as f:  # a kill in the middle of the second record
        f.seek(RECORD + 20)
        f.write(b"\x00" * 10)
    assert [e.request_id for e in read_journal(tmp_path)] == ["first"]


def test_decode_refuses_what_it_did_not_write() -> None:
    good = encode(Entry("accepted", KEY, 3.0, "rid"))
    assert decode(good) == Entry("accepted", KEY, 3.0, "rid")
    assert decode(bytes(RECORD)) is None
    assert decode(good[:-1] + bytes([good[-1] ^ 1])) is None
    assert decode(b"short") is None
    with pytest.raises(ValueError, match="too long"):
        encode(Entry("accepted", KEY, 3.0, "x" * 500))


def test_no_journal_reads_as_empty(tmp_path: Path) -> None:
    assert read_journal(tmp_path) == []


def _can_mount() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        return "mounting needs root and mount(8)"
    with tempfile.TemporaryDirectory() as probe:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            return "this container may not mount (no CAP_SYS_ADMIN)"
        subprocess.run(["umount", probe], check=False)
    return None


MOUNT_SKIP = _can_mount()


@contextlib.contextmanager
def small_disk(at: Path, size: str) -> Iterator[Path]:
    at.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(at)], check=True)
    try:
        yield at
    finally:
        subprocess.run(["umount", "-l", str(at)], check=False)


@pytest.mark.skipif(MOUNT_SKIP is not None and not os.environ.get("CI"), reason=MOUNT_SKIP or "")
def test_a_full_disk_loses_no_reserved_record_and_refuses_the_next(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "256k") as disk:
        journal = Journal.open(disk, capacity=32)
        # Fill the disk to the last byte.
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\xff" * 512)
        os.close(fd)
        for i in range(32):  # the burst's ids: all in space reserved at the start
            journal.accepted(f"k1:{i:064x}", f"req-{i}", float(i))
        with pytest.raises(StoreError, match="no space left"):
            journal.sending(KEY, 99.0)  # refused before the call would be sent
        journal.close()
        assert [e.request_id for e in read_journal(disk)] == [f"req-{i}" for i in range(32)]
