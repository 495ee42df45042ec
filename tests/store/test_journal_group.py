"""The journal's group sync: records of one group made durable by one fdatasync, on real files.

The syncs are counted by wrapping the OS call the journal makes (the real
fdatasync still runs); every check reads the journal back from disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.errors import StoreError
from runner.store import journal as journal_module
from runner.store.journal import Entry, Journal, read_journal

KEY = "k1:" + "cd" * 32


def counted_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap the journal's fdatasync; the returned list grows by one per sync."""
    calls: list[int] = []
    real: Callable[[int], None] = journal_module._datasync

    def sync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(journal_module, "_datasync", sync)
    return calls


def test_a_group_is_synced_once_and_a_lone_record_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal.open(tmp_path, capacity=16)
    syncs = counted_syncs(monkeypatch)
    journal.sending(KEY, 1.0)
    assert len(syncs) == 1
    with journal.grouped():
        for i in range(4):
            journal.accepted(KEY, f"req-{i}", 2.0 + i)
        assert len(syncs) == 1  # nothing synced inside the group
    assert len(syncs) == 2
    with journal.grouped():
        pass  # nothing written: nothing to sync
    assert len(syncs) == 2
    journal.close()
    assert [e.request_id for e in read_journal(tmp_path)] == [None] + [f"req-{i}" for i in range(4)]


def test_a_group_that_raises_gives_its_places_to_the_next_records(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, capacity=16)
    journal.accepted(KEY, "durable", 1.0)
    with pytest.raises(RuntimeError), journal.grouped():
        journal.accepted(KEY, "lost-a", 2.0)
        journal.accepted(KEY, "lost-b", 3.0)
        raise RuntimeError("a ledger write of the group failed")
    # Retried one by one, outside a group: each in the place the group had.
    journal.accepted(KEY, "again-a", 4.0)
    journal.accepted(KEY, "again-b", 5.0)
    journal.close()
    assert read_journal(tmp_path) == [
        Entry("accepted", KEY, 1.0, "durable"),
        Entry("accepted", KEY, 4.0, "again-a"),
        Entry("accepted", KEY, 5.0, "again-b"),
    ]


def test_a_failed_group_sync_raises_and_its_records_are_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal.open(tmp_path, capacity=16)
    journal.accepted(KEY, "durable", 1.0)
    real = journal_module._datasync

    def failing(fd: int) -> None:
        raise OSError(5, os.strerror(5))

    monkeypatch.setattr(journal_module, "_datasync", failing)
    with pytest.raises(StoreError), journal.grouped():
        journal.accepted(KEY, "unsynced", 2.0)
    monkeypatch.setattr(journal_module, "_datasync", real)
    journal.accepted(KEY, "retried", 3.0)
    journal.close()
    assert [e.request_id for e in read_journal(tmp_path)] == ["durable", "retried"]
