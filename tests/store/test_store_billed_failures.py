"""Billed failures: their own record in the ledger (m005_billed_failures), apart from ambiguity.

A failed job the server billed (a result it could not use) is a cost, not a
possible duplicate: the ledger keeps how many such failures a job had and
what they cost, across --retry-failed; the budget of later runs counts them
(`possible_extra_spend`); `runner status` and `runner verify` say so. A
ledger written before the step opens (migrated) and reads (read-only, as it
is) with the same rows and money.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from runner.money import Micros, micros
from runner.store.ledger import Ledger, ledger_path
from runner.store.migrations import BILLED_FAILURES, MIGRATIONS, migrate
from runner.store.status import folder_status, render_status
from runner.store.verify import render_verify, verify

URL = "http://127.0.0.1:9"
BEFORE = tuple(m for m in MIGRATIONS if m.name < BILLED_FAILURES)


def key(i: int) -> str:
    return f"k1:{i:064x}"


def sent(ledger: Ledger, jobs: int) -> None:
    """`jobs` jobs planned at $0.04 each and sent (`submitting`), keys `key(0)`...."""
    ledger.plan_many((key(i), i, "fox", micros(0.04)) for i in range(jobs))
    for i in range(jobs):
        ledger.submitting(key(i))


def test_a_billed_failure_is_recorded_apart_from_ambiguous_submits(tmp_path: Path) -> None:
    with Ledger.open(tmp_path, backend="local", base_url=URL) as ledger:
        sent(ledger, 4)
        ledger.failed(key(0), "the result has 1 of 2 image(s)", billed=True, charged=micros(0.03))
        ledger.failed(key(1), "the result has no image", billed=True)  # no charge stated
        ledger.failed(key(2), "content blocked")  # FAILED: not billed
        ledger.ambiguous(key(3))  # a lost answer, then sent again and completed
        ledger.submitted(key(3), "r3", 2.0e9)
        ledger.completed(key(3), micros(0.04), ["fox/a.png"], 2.0e9)
        rows = {row.key: row for row in ledger.rows()}
        assert (rows[key(0)].billed_failures, rows[key(0)].billed_failed) == (1, micros(0.03))
        # Without a stated charge, the estimate stands for it (the budget reserved that).
        assert (rows[key(1)].billed_failures, rows[key(1)].billed_failed) == (1, micros(0.04))
        assert (rows[key(2)].billed_failures, rows[key(2)].billed_failed) == (0, 0)
        assert all(rows[key(i)].ambiguous == 0 for i in range(3))
        failed = ledger.totals()["failed"]
        assert (failed.billed_failures, failed.billed_failed) == (2, micros(0.07))
        assert failed.ambiguous == 0
        # What later runs' budgets count: both billed failures and the ambiguous submit.
        assert ledger.possible_extra_spend() == micros(0.03 + 0.04 + 0.04)


def test_a_retry_keeps_the_record_of_the_billed_failure(tmp_path: Path) -> None:
    with Ledger.open(tmp_path, backend="local", base_url=URL) as ledger:
        ledger.plan(key(0), 0, "fox", micros(0.04))
        ledger.submitting(key(0))
        ledger.failed(key(0), "image 0: wrong format", billed=True, charged=micros(0.04))
        # --retry-failed: planned again, paid again, and this time it completes.
        ledger.reset(key(0))
        ledger.submitting(key(0))
        ledger.submitted(key(0), "r2", 2.0e9)
        ledger.completed(key(0), micros(0.04), ["fox/a.png"], 2.0e9)
        row = ledger.get(key(0))
        assert row is not None and row.state == "completed"
        assert (row.billed_failures, row.billed_failed) == (1, micros(0.04))
        # The folder paid twice: the completed charge and the billed failure.
        assert sum(t.charged for t in ledger.totals().values()) == micros(0.04)
        assert ledger.possible_extra_spend() == micros(0.04)


def test_status_and_verify_name_the_billed_failures(tmp_path: Path) -> None:
    with Ledger.open(tmp_path, backend="local", base_url=URL) as ledger:
        sent(ledger, 3)
        ledger.failed(key(0), "the result has 1 of 2 image(s)", billed=True, charged=micros(0.04))
        ledger.failed(key(1), "the result has no image", billed=True, charged=micros(0.04))
        ledger.ambiguous(key(2))
    status = folder_status(tmp_path)
    assert (status.billed_failures, status.billed_failures_usd) == (2, 0.08)
    assert status.ambiguous == 1
    text = render_status(status)
    assert "2 failed jobs were billed ($0.08)" in text, text
    assert "ambiguous submits (answer lost, may have been billed): 1" in text, text

    report = render_verify(verify(tmp_path))
    assert "the result has 1 of 2 image(s) (billed $0.04)" in report, report
    assert report.rstrip().endswith(
        "all good (2 job(s) failed: no images to check); 2 failed jobs were billed ($0.08)"
    ), report


def _old_ledger(out: Path) -> Path:
    """A ledger as the release before m005 wrote it: a billed failure counted ambiguous."""
    path = ledger_path(out)
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, path, BEFORE)  # the shipped steps, never edited
    conn.executemany(
        "INSERT INTO meta (name, value) VALUES (?, ?)",
        [("backend", "local"), ("base_url", URL), ("created_at", "1.0")],
    )
    conn.executemany(
        "INSERT INTO jobs (key, idx, prompt_id, state, estimate, charged, reason, attempts, "
        "ambiguous, files, updated_at) VALUES (?, ?, 'fox', ?, ?, ?, ?, 1, ?, ?, 1.0)",
        [
            (key(0), 0, "completed", 40_000, 39_000, None, 0, '["fox/a.png"]'),
            (key(1), 1, "failed", 40_000, None, "the result has no image", 1, "[]"),
            (key(2), 2, "submitting", 20_000, None, None, 2, "[]"),
        ],
    )
    conn.close()
    return path


def test_an_old_ledger_reads_the_same_read_only_and_migrated(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _old_ledger(out)
    with Ledger.open_readonly(out) as ledger:
        assert BILLED_FAILURES not in ledger.migrations()  # status does not write
        before = list(ledger.rows())
        totals_before = ledger.totals()
        extra_before = ledger.possible_extra_spend()
    assert [(r.key, r.state, r.estimate, r.charged, r.ambiguous) for r in before] == [
        (key(0), "completed", 40_000, 39_000, 0),
        (key(1), "failed", 40_000, None, 1),
        (key(2), "submitting", 20_000, None, 2),
    ]
    assert all((r.billed_failures, r.billed_failed) == (0, 0) for r in before)
    assert extra_before == 40_000 + 2 * 20_000 + 20_000
    assert folder_status(out).billed_failures == 0

    with Ledger.open(out, backend="local", base_url=URL) as ledger:
        assert ledger.migrations() == [m.name for m in MIGRATIONS]
        assert list(ledger.rows()) == before
        assert ledger.totals() == totals_before
        assert ledger.possible_extra_spend() == extra_before
        # New writes use the new columns; the old ambiguity stays what it was.
        ledger.reset(key(1))
        ledger.submitting(key(1))
        ledger.failed(key(1), "the result has 1 of 2 image(s)", billed=True, charged=Micros(41))
        row = ledger.get(key(1))
        assert row is not None
        assert (row.ambiguous, row.billed_failures, row.billed_failed) == (1, 1, 41)
    declared = {
        name: (kind, default)
        for _, name, kind, _, default, _ in sqlite3.connect(ledger_path(out)).execute(
            "PRAGMA table_info(jobs)"
        )
    }
    assert declared["billed_failures"] == ("INTEGER", "0")
    assert declared["billed_failed"] == ("INTEGER", "0")
