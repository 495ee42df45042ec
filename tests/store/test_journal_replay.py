"""Request ids the journal kept and the ledger lost are put back when the ledger opens.

Real files: a ledger and a journal in a tmp folder, and one whole run against
the in-process emulator whose journal is then read back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from runner.emulator import InProcess
from runner.manifest import parse_manifest
from runner.money import micros
from runner.run import RunOptions, run_manifest
from runner.store import Ledger
from runner.store.journal import Entry, Journal, read_journal, replay

URL = "http://127.0.0.1:1"
KEY = "k1:" + "ab" * 32


def left_submitting(out: Path) -> None:
    """A row marked `submitting`, as a run killed before the `submitted` commit leaves it."""
    with Ledger.open(out, backend="local", base_url=URL) as ledger:
        ledger.plan(KEY, 0, "p", micros(0.02))
        ledger.submitting(KEY)


def test_a_journalled_id_of_a_submitting_row_is_replayed(tmp_path: Path) -> None:
    left_submitting(tmp_path)
    journal = Journal.open(tmp_path, capacity=8)
    journal.sending(KEY, 100.0)
    journal.accepted(KEY, "req-1", 100.5)
    journal.close()
    with Ledger.open(tmp_path, backend="local", base_url=URL) as ledger:
        row = ledger.get(KEY)
        assert row is not None
        assert (row.state, row.request_id, row.submitted_at) == ("submitted", "req-1", 100.5)
        assert ledger.possible_extra_spend() == 0


def test_an_id_older_than_the_last_send_is_not_replayed(tmp_path: Path) -> None:
    left_submitting(tmp_path)
    journal = Journal.open(tmp_path, capacity=8)
    journal.sending(KEY, 100.0)
    journal.accepted(KEY, "req-1", 100.5)
    journal.sending(KEY, 200.0)  # sent again, killed before its answer
    journal.close()
    with Ledger.open(tmp_path, backend="local", base_url=URL) as ledger:
        row = ledger.get(KEY)
        assert row is not None and (row.state, row.request_id) == ("submitting", None)


def test_a_completed_row_is_left_alone(tmp_path: Path) -> None:
    left_submitting(tmp_path)
    with Ledger.open(tmp_path, backend="local", base_url=URL) as ledger:
        ledger.submitted(KEY, "req-1", 100.5)
        ledger.completed(KEY, micros(0.02), ["a.jpg"], 101.0)
    journal = Journal.open(tmp_path, capacity=8)
    journal.accepted(KEY, "req-1", 100.5)
    journal.close()
    with Ledger.open(tmp_path, backend="local", base_url=URL) as ledger:
        row = ledger.get(KEY)
        assert row is not None and row.state == "completed"


def test_one_replay_gives_the_ids_to_put_back_and_the_sends_with_no_answer() -> None:
    found = replay(
        [
            Entry("sending", "a", 1.0),
            Entry("accepted", "a", 1.5, "req-a"),  # answered: its id, no send left
            Entry("sending", "b", 2.0),  # no answer: on the wire at the kill
            Entry("sending", "c", 3.0),
            Entry("accepted", "c", 3.5, "req-c1"),
            Entry("sending", "c", 4.0),  # sent again after its id: the old id is not its
        ]
    )
    assert found.ids == {"a": ("req-a", 1.5)}
    assert sorted(found.unanswered) == [2.0, 4.0]


def test_the_open_keeps_the_sends_with_no_answer_for_the_gate(tmp_path: Path) -> None:
    left_submitting(tmp_path)
    journal = Journal.open(tmp_path, capacity=8)
    journal.sending(KEY, 100.0)
    journal.sending("k1:" + "ef" * 32, 150.0)
    journal.accepted("k1:" + "ef" * 32, "req-2", 151.0)
    journal.close()
    with Ledger.open(tmp_path, backend="local", base_url=URL) as ledger:
        assert ledger.unanswered_sends == (100.0,)
    with Ledger.open_readonly(tmp_path) as ledger:
        assert ledger.unanswered_sends == ()  # read-only: no replay, no gate


@pytest.mark.anyio
async def test_a_run_journals_each_send_and_its_id_before_the_ledger(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    emu = make_emulator()
    text = f"""name: j
prompts:
  - id: p
    prompt: "a picture of {{thing}}"
    vars: {{thing: [a, b, c]}}
budget: {{requests_per_minute: 60}}
output: {{dir: {tmp_path / "out"}}}
"""
    m = parse_manifest(text, path=str(tmp_path / "m.yaml"), base_dir=tmp_path)
    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1)
    report = await run_manifest(m, opts, emulator=emu.emulator, env={})
    assert report.stats.completed == 3
    entries = read_journal(tmp_path / "out")
    with Ledger.open_readonly(tmp_path / "out") as ledger:
        rows = {row.key: row for row in ledger.rows()}
    assert sorted(e.kind for e in entries) == ["accepted"] * 3 + ["sending"] * 3
    for entry in entries:
        if entry.kind == "accepted":
            assert rows[entry.key].request_id == entry.request_id
    # The space is reserved ahead: the file is larger than what was written.
    assert (tmp_path / "out" / ".runner" / "journal.bin").stat().st_size > 6 * 256


def test_a_kill_counts_at_most_its_sends_on_the_wire_as_possible_spend(tmp_path: Path) -> None:
    with Ledger.open(tmp_path, backend="local", base_url=URL) as ledger:
        ledger.start_run(argv=["runner"], manifest_sha256=None, at=1.0)  # killed: never ended
        for i in range(10):
            key = f"k{i}:" + "cd" * 32
            ledger.plan(key, i, "p", micros(0.02 if i else 0.05))
            ledger.submitting(key)
        # Only 4 sends were on the wire: the dearest 4 rows count, not all 10.
        assert ledger.possible_extra_spend(4) == micros(0.05 + 3 * 0.02)
        assert ledger.possible_extra_spend() == micros(0.05 + 9 * 0.02)
        ledger.start_run(argv=["runner"], manifest_sha256=None, at=2.0)  # killed too
        assert ledger.possible_extra_spend(4) == micros(0.05 + 7 * 0.02)
