"""The ledger on a real SQLite file: states, durability, migrations, one backend per folder."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.errors import StoreError, UsageError
from runner.money import micros
from runner.store.ledger import STATES, JobRow, Ledger, ledger_path
from runner.store.migrations import MIGRATIONS, Migration, applied_migrations, migrate

URL = "http://127.0.0.1:8765"
KEY = "k1:" + "a" * 64


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path, backend="local", base_url=URL) as opened:
        yield opened


def must_get(ledger: Ledger, key: str = KEY) -> JobRow:
    row = ledger.get(key)
    assert row is not None, f"no row for {key}"
    return row


def raw(out: Path) -> sqlite3.Connection:
    return sqlite3.connect(ledger_path(out))


def test_open_creates_a_wal_ledger_with_every_migration(tmp_path: Path) -> None:
    with Ledger.open(tmp_path, backend="local", base_url=URL + "/") as opened:
        assert opened.migrations() == [m.name for m in MIGRATIONS]
        assert (opened.meta.backend, opened.meta.base_url) == ("local", URL)
    conn = raw(tmp_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [name for (name,) in conn.execute("SELECT name FROM migrations ORDER BY seq")] == [
        m.name for m in MIGRATIONS
    ]
    conn.close()
    with Ledger.open(tmp_path, backend="local", base_url=URL) as again:
        assert again.migrations() == [m.name for m in MIGRATIONS]


def test_a_job_through_its_happy_path(ledger: Ledger) -> None:
    row = ledger.plan(KEY, 7, "fox", micros(0.04))
    assert (row.state, row.idx, row.prompt_id, row.estimate, row.attempts) == (
        "planned",
        7,
        "fox",
        40_000,
        0,
    )
    ledger.submitting(KEY)
    ledger.submitted(KEY, "req-1", 1000.5)
    row = must_get(ledger)
    assert (row.state, row.request_id, row.submitted_at, row.attempts) == (
        "submitted",
        "req-1",
        1000.5,
        1,
    )
    ledger.completed(KEY, micros(0.039), ["fox/a-aaaaaaaa-0.png", "fox/a-aaaaaaaa-1.png"], 1013.0)
    row = must_get(ledger)
    assert row.state == "completed"
    assert row.charged == 39_000
    assert row.completed_at == 1013.0
    assert row.files == ("fox/a-aaaaaaaa-0.png", "fox/a-aaaaaaaa-1.png")


def test_plan_keeps_what_is_known(ledger: Ledger) -> None:
    ledger.plan(KEY, 1, "fox", micros(0.02))
    ledger.submitting(KEY)
    row = ledger.plan(KEY, 1, "fox", 9.99)
    assert (row.state, row.estimate) == ("submitting", 20_000)


def test_failure_retry_and_expiry(ledger: Ledger) -> None:
    ledger.plan(KEY, 0, "fox", micros(0.02))
    ledger.submitting(KEY)
    ledger.ambiguous(KEY)
    ledger.failed(KEY, "content blocked")
    row = must_get(ledger)
    assert (row.state, row.reason, row.ambiguous) == ("failed", "content blocked", 1)
    ledger.reset(KEY)
    ledger.submitting(KEY)
    ledger.submitted(KEY, "req-2", 5.0)
    ledger.expired(KEY)
    row = must_get(ledger)
    assert (row.state, row.request_id, row.attempts, row.reason) == ("expired", "req-2", 2, None)
    ledger.submitting(KEY)  # --resubmit-expired
    row = must_get(ledger)
    assert (row.state, row.request_id, row.attempts) == ("submitting", None, 3)


@pytest.mark.parametrize(
    ("steps", "illegal"),
    [
        (["submitting", "submitted", "completed"], "submitting"),
        (["submitting", "submitted", "completed"], "submitted"),
        (["submitting", "submitted", "completed"], "failed"),
        (["submitting", "submitted"], "reset"),
        (["submitting", "submitted"], "submitting"),
        ([], "expired"),
    ],
)
def test_moves_that_could_pay_twice_or_drop_a_result_are_refused(
    ledger: Ledger, steps: list[str], illegal: str
) -> None:
    ledger.plan(KEY, 0, "fox", micros(0.02))
    calls = {
        "submitting": lambda: ledger.submitting(KEY),
        "submitted": lambda: ledger.submitted(KEY, "req", 1.0),
        "completed": lambda: ledger.completed(KEY, None, ["a.png"], 2.0),
        "failed": lambda: ledger.failed(KEY, "x"),
        "reset": lambda: ledger.reset(KEY),
        "expired": lambda: ledger.expired(KEY),
    }
    for step in steps:
        calls[step]()
    before = ledger.get(KEY)
    with pytest.raises(
        ValueError, match=f"cannot become {'planned' if illegal == 'reset' else illegal}"
    ):
        calls[illegal]()
    assert ledger.get(KEY) == before


def test_an_unknown_job_must_be_planned_first(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="plan it first"):
        ledger.submitted(KEY, "req", 1.0)


def test_reads_counts_and_order(ledger: Ledger) -> None:
    keys = [f"k1:{i:064x}" for i in range(1200)]
    assert (
        ledger.plan_many((key, 1199 - i, "p", micros(0.02)) for i, key in enumerate(keys)) == 1200
    )
    assert ledger.plan_many([(keys[0], 0, "p", micros(0.02))]) == 0
    for key in keys[:3]:
        ledger.submitting(key)
    ledger.submitted(keys[1], "r1", 50.0)
    ledger.submitted(keys[2], "r2", 10.0)
    found = ledger.get_many([*keys, "k1:unknown", keys[0]])
    assert len(found) == 1200
    assert ledger.counts() == dict.fromkeys(STATES, 0) | {
        "planned": 1197,
        "submitting": 1,
        "submitted": 2,
    }
    planned = [row.idx for row in ledger.rows("planned")]
    assert planned == sorted(planned)
    assert len(list(ledger.rows())) == 1200
    assert [row.key for row in ledger.in_flight()] == [keys[0], keys[2], keys[1]]
    totals = ledger.totals()
    assert totals["planned"].jobs == 1197
    assert totals["submitted"].oldest_submitted_at == 10.0


def test_the_resume_scan_uses_the_state_index(ledger: Ledger) -> None:
    ledger.plan_many((f"k1:{i:064x}", i, "p", micros(0.02)) for i in range(100_000))
    rows = list(ledger.rows("planned"))
    assert len(rows) == 100_000
    assert rows[0].idx == 0 and rows[-1].idx == 99_999
    conn = raw(ledger.path.parent.parent)
    plan = " ".join(
        str(step)
        for step in conn.execute(
            "EXPLAIN QUERY PLAN SELECT key FROM jobs WHERE state = 'planned' ORDER BY idx, key"
        )
    )
    conn.close()
    assert "jobs_state_idx" in plan


def test_submitted_survives_a_sigkill(tmp_path: Path) -> None:
    # A child marks a job submitted, then dies without closing anything.
    code = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from runner.store.ledger import Ledger
        ledger = Ledger.open(Path({str(tmp_path)!r}), backend="local", base_url={URL!r})
        ledger.plan({KEY!r}, 0, "fox", 20_000)
        ledger.submitting({KEY!r})
        ledger.submitted({KEY!r}, "req-survivor", 123.0)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    assert result.returncode == -9
    # The lock died with it, and the row is there.
    with Ledger.open(tmp_path, backend="local", base_url=URL) as ledger:
        row = must_get(ledger)
    assert (row.state, row.request_id) == ("submitted", "req-survivor")


def test_one_runner_per_folder(tmp_path: Path) -> None:
    first = Ledger.open(tmp_path, backend="local", base_url=URL)
    try:
        with pytest.raises(UsageError, match=r"in use by another runner process \(pid \d+\)"):
            Ledger.open(tmp_path, backend="local", base_url=URL)
        first.plan(KEY, 0, "fox", micros(0.02))
        with Ledger.open_readonly(tmp_path) as reader:
            assert reader.counts()["planned"] == 1
            with pytest.raises(ValueError, match="read-only"):
                reader.submitting(KEY)
    finally:
        first.close()
    Ledger.open(tmp_path, backend="local", base_url=URL).close()


def test_a_folder_refuses_another_backend_or_url(tmp_path: Path) -> None:
    Ledger.open(tmp_path, backend="segmind", base_url="https://api.segmind.com/").close()
    with pytest.raises(UsageError) as caught:
        Ledger.open(tmp_path, backend="local", base_url=URL)
    assert str(caught.value) == (
        f"{tmp_path} was made with backend 'segmind' (https://api.segmind.com); this run uses "
        f"'local' ({URL}). Use --out elsewhere or --fresh"
    )
    with pytest.raises(UsageError, match="made with backend 'segmind'"):
        Ledger.open(tmp_path, backend="segmind", base_url="https://staging.segmind.com")
    # The refusal left the lock free.
    Ledger.open(tmp_path, backend="segmind", base_url="https://api.segmind.com").close()


def test_fresh_moves_the_old_ledger_aside_and_keeps_images(tmp_path: Path) -> None:
    with Ledger.open(tmp_path, backend="segmind", base_url="https://api.segmind.com") as old:
        old.plan(KEY, 0, "fox", micros(0.02))
    image = tmp_path / "fox" / "a-aaaaaaaa-0.png"
    image.parent.mkdir()
    image.write_bytes(b"paid for")
    with Ledger.open(tmp_path, backend="local", base_url=URL, fresh=True) as new:
        assert new.meta.backend == "local"
        assert new.get(KEY) is None
    assert image.read_bytes() == b"paid for"
    kept = sorted((tmp_path / ".runner").glob("ledger.*.sqlite"))
    assert len(kept) == 1
    conn = sqlite3.connect(kept[0])
    assert conn.execute("SELECT key FROM jobs").fetchall() == [(KEY,)]
    assert conn.execute("SELECT value FROM meta WHERE name = 'backend'").fetchone() == ("segmind",)
    conn.close()


def test_migrations_apply_in_order_once_and_roll_back_on_error(tmp_path: Path) -> None:
    Ledger.open(tmp_path, backend="local", base_url=URL).close()
    path = ledger_path(tmp_path)
    conn = sqlite3.connect(path, isolation_level=None)
    extra = (
        Migration("m005_note", ("ALTER TABLE jobs ADD COLUMN note TEXT",)),
        Migration("m006_more", ("CREATE TABLE more (x)", "CREATE INDEX more_x ON more (x)")),
    )
    assert migrate(conn, path, MIGRATIONS + extra) == ["m005_note", "m006_more"]
    assert migrate(conn, path, MIGRATIONS + extra) == []
    broken = (Migration("m007_broken", ("CREATE TABLE half (x)", "NOT SQL AT ALL")),)
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, path, MIGRATIONS + extra + broken)
    assert applied_migrations(conn)[-2:] == ["m005_note", "m006_more"]
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert "more" in tables and "half" not in tables
    conn.close()
    # This runner knows only MIGRATIONS: a ledger with later steps is a newer runner's.
    with pytest.raises(UsageError, match=r"newer or different runner.*'m005_note'"):
        Ledger.open(tmp_path, backend="local", base_url=URL)
    with pytest.raises(UsageError, match="newer or different runner"):
        Ledger.open_readonly(tmp_path)


def test_a_file_that_is_not_a_ledger(tmp_path: Path) -> None:
    path = ledger_path(tmp_path)
    path.parent.mkdir()
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match=r"not a usable runner ledger.*--fresh"):
        Ledger.open(tmp_path, backend="local", base_url=URL)
    with Ledger.open(tmp_path, backend="local", base_url=URL, fresh=True) as ledger:
        assert ledger.counts()["planned"] == 0


def test_disk_faults_on_open_are_store_errors(tmp_path: Path) -> None:
    (tmp_path / "out").write_bytes(b"a file where the folder should be")
    with pytest.raises(StoreError, match="not a folder"):
        Ledger.open(tmp_path / "out", backend="local", base_url=URL)


def test_status_of_a_folder_without_a_ledger(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="has no ledger"):
        Ledger.open_readonly(tmp_path)


def test_runs_are_recorded(ledger: Ledger) -> None:
    run = ledger.start_run(argv=["runner", "run", "m.yaml"], manifest_sha256="ab" * 32, at=1.0)
    ledger.end_run(run, outcome="ok", at=2.0)
    conn = raw(ledger.path.parent.parent)
    assert conn.execute("SELECT argv, outcome, ended_at FROM runs").fetchall() == [
        ('["runner", "run", "m.yaml"]', "ok", 2.0)
    ]
    conn.close()


def test_a_full_disk_stops_cleanly_and_loses_nothing_committed(tmp_path: Path) -> None:
    with Ledger.open(tmp_path, backend="local", base_url=URL) as ledger:
        ledger.plan(KEY, 0, "fox", micros(0.02))
        ledger.submitting(KEY)
        ledger.submitted(KEY, "req-paid", 1.0)
        # SQLite's own page cap gives a real SQLITE_FULL, as a full disk would.
        pages = ledger._conn.execute("PRAGMA page_count").fetchone()[0]
        ledger._conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreError) as caught:
            ledger.plan_many((f"k1:{i:064x}", i, "fox", micros(0.02)) for i in range(5000))
        assert str(caught.value) == (
            f"ledger {ledger.path}: no space left on device; free space or use --out elsewhere"
        )
    with Ledger.open(tmp_path, backend="local", base_url=URL) as ledger:
        assert must_get(ledger).request_id == "req-paid"
        assert ledger.counts()["planned"] == 0


def test_a_read_only_ledger_is_a_store_error(ledger: Ledger) -> None:
    ledger.plan(KEY, 0, "fox", micros(0.02))
    ledger._conn.execute("PRAGMA query_only = 1")  # SQLITE_READONLY, as on a read-only mount
    with pytest.raises(StoreError, match="read-only; use --out elsewhere"):
        ledger.submitting(KEY)
