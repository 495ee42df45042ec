"""The ledger's reads on a real SQLite file: the batched stream and the facade's names."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import runner.store
from runner.money import micros
from runner.store import ledger as ledger_module
from runner.store.ledger import Ledger

URL = "http://127.0.0.1:8765"


def key(i: int) -> str:
    return f"k1:{i:064x}"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path, backend="local", base_url=URL) as opened:
        # Planned out of order: the stream gives expansion order (idx), not insertion order.
        opened.plan_many((key(i), i, "p", micros(0.02)) for i in reversed(range(10)))
        yield opened


def test_stream_rows_gives_every_row_in_expansion_order_in_batches(ledger: Ledger) -> None:
    for batch in (1, 3, 10, 1000):
        assert list(ledger.stream_rows(batch=batch)) == list(ledger.rows())
    assert [row.idx for row in ledger.stream_rows(batch=4)] == list(range(10))


def test_a_write_between_two_batches_is_not_blocked(ledger: Ledger) -> None:
    stream = ledger.stream_rows(batch=4)
    first = [next(stream) for _ in range(4)]  # one whole batch read, the next not yet
    wrote = threading.Event()

    def write() -> None:
        ledger.submitting(key(7))
        ledger.failed(key(7), "refused")
        wrote.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        # A generous bound against a hang, not a timing: the write takes no wait at all
        # unless the stream holds the lock between its batches.
        assert wrote.wait(timeout=30), "the write waited for the stream to end"
    finally:
        rest = list(stream)  # (ending the stream frees a writer that was blocked)
        writer.join()
    assert [row.idx for row in first + rest] == list(range(10))  # each row once, in order
    row = ledger.get(key(7))
    assert row is not None and (row.state, row.reason) == ("failed", "refused")


def test_every_public_name_of_the_ledger_is_importable_as_before() -> None:
    # The split keeps `from runner.store.ledger import ...` and `from runner.store import ...`.
    for name in ledger_module.__all__:
        value = getattr(ledger_module, name)
        if name in runner.store.__all__:
            assert getattr(runner.store, name) is value
    assert {"Ledger", "JobRow", "State", "STATES", "IN_FLIGHT", "ledger_path"} <= set(
        runner.store.__all__
    )
    assert ledger_module.RUNNER_DIR == ".runner"
