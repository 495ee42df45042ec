"""The folder's record of recent calls, which seeds a resumed run's rate gate."""

from __future__ import annotations

from pathlib import Path

from runner.store.calls import CallLog


def test_calls_survive_a_new_process_and_old_ones_are_dropped(tmp_path: Path) -> None:
    (tmp_path / ".runner").mkdir()
    first = CallLog(tmp_path, now=10_000.0)
    for t in (7_000.0, 9_950.0, 9_990.0):
        first.append(t)
    # No close(): a killed process leaves what it flushed.
    second = CallLog(tmp_path, now=10_000.0)
    assert second.ages(61.0, 10_000.0) == [50.0, 10.0]
    second.close()
    kept = (tmp_path / ".runner" / "calls.log").read_text().split()
    assert "7000.000" in kept  # within the hour kept on disk
    third = CallLog(tmp_path, now=20_000.0)
    third.close()
    assert (tmp_path / ".runner" / "calls.log").read_text() == ""


def test_a_damaged_log_is_ignored(tmp_path: Path) -> None:
    (tmp_path / ".runner").mkdir()
    (tmp_path / ".runner" / "calls.log").write_text("garbage\n9990.5\n\x00\n")
    log = CallLog(tmp_path, now=10_000.0)
    assert log.ages(60.0, 10_000.0) == [9.5]
    log.close()
