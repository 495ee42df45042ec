"""m004_money_micros: a ledger of the USD-REAL release opens with the same money to the µ$.

`fixtures/usd-ledger` was written by that release's own code
(fixtures/make_usd_ledger.py); the property test builds more such ledgers
with the shipped steps m001-m003, which are never edited.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.money import Micros, micros
from runner.store.ledger import STATES, Ledger, ledger_path
from runner.store.migrations import MIGRATIONS, MONEY_MICROS, migrate

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "usd-ledger"
URL = "http://127.0.0.1:8765"
USD_STEPS = tuple(m for m in MIGRATIONS if m.name < MONEY_MICROS)


Rows = dict[str, tuple[float, float | None]]
Totals = dict[str, tuple[float, float]]


def _old_figures(path: Path) -> tuple[Rows, Totals, float]:
    """Rows, per-state TOTALs and possible extra spend as the USD release computed them."""
    conn = sqlite3.connect(path)
    try:
        rows = {k: (e, c) for k, e, c in conn.execute("SELECT key, estimate, charged FROM jobs")}
        totals = {
            s: (e, c)
            for s, e, c in conn.execute(
                "SELECT state, TOTAL(estimate), TOTAL(charged) FROM jobs GROUP BY state"
            )
        }
        (extra,) = conn.execute(
            "SELECT TOTAL(ambiguous * estimate) + "
            "TOTAL(CASE WHEN state = 'submitting' THEN estimate ELSE 0 END) FROM jobs"
        ).fetchone()
    finally:
        conn.close()
    return rows, totals, extra


def _check_same_money(ledger: Ledger, path_before: Path) -> None:
    rows, totals, extra = _old_figures(path_before)
    got = {row.key: (row.estimate, row.charged) for row in ledger.rows()}
    assert got == {k: (micros(e), None if c is None else micros(c)) for k, (e, c) in rows.items()}
    for state, figures in ledger.totals().items():
        estimate, charged = totals.get(state, (0.0, 0.0))
        assert (figures.estimate, figures.charged) == (micros(estimate), micros(charged)), state
        assert type(figures.estimate) is int and type(figures.charged) is int
    assert ledger.possible_extra_spend() == micros(extra)


def test_the_usd_release_ledger_migrates_with_the_same_totals(tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(FIXTURE, out)
    before = tmp_path / "before.sqlite"
    shutil.copy(ledger_path(out), before)
    with Ledger.open(out, backend="local", base_url=URL) as ledger:
        assert ledger.migrations() == [m.name for m in MIGRATIONS]
        assert sum(ledger.counts().values()) == 300
        _check_same_money(ledger, before)
        # The figures the fixture was made with, to the µ$ (sqlite3 TOTALs, rounded).
        assert sum(t.estimate for t in ledger.totals().values()) == micros(31.4350)
        assert ledger.totals()["completed"].charged == micros(5.3512)
    conn = sqlite3.connect(ledger_path(out))
    kinds = conn.execute(
        "SELECT DISTINCT typeof(estimate), typeof(charged) FROM jobs ORDER BY 1, 2"
    ).fetchall()
    declared = {name: kind for _, name, kind, *_ in conn.execute("PRAGMA table_info(jobs)")}
    index = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    conn.close()
    assert set(kinds) <= {("integer", "integer"), ("integer", "null")}
    assert (declared["estimate"], declared["charged"]) == ("INTEGER", "INTEGER")
    assert ("jobs_state_idx",) in index


def test_a_read_only_look_at_an_unmigrated_ledger_converts_on_read(tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(FIXTURE, out)
    with Ledger.open_readonly(out) as ledger:
        assert MONEY_MICROS not in ledger.migrations()  # status does not write
        _check_same_money(ledger, ledger_path(out))
        assert all(type(row.estimate) is int for row in ledger.rows())


def test_rows_written_after_the_migration_are_integers(tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(FIXTURE, out)
    with Ledger.open(out, backend="local", base_url=URL) as ledger:
        before = ledger.totals()["completed"]
        key = "k1:" + "f" * 64
        ledger.plan(key, 999, "new", Micros(20_000))
        ledger.submitting(key)
        ledger.completed(key, Micros(19_999), ["new/x.png"], 2.0e9)
        after = ledger.totals()["completed"]
    assert after.estimate - before.estimate == 20_000
    assert after.charged - before.charged == 19_999


@settings(max_examples=40, deadline=None)
@given(
    amounts=st.lists(
        st.tuples(
            st.integers(0, 50_000_000),  # estimate, µ$ (prices are µ$-exact)
            st.one_of(st.none(), st.integers(0, 50_000_000)),  # charged
            st.sampled_from(STATES),
            st.integers(0, 3),  # ambiguous
        ),
        max_size=60,
    )
)
def test_any_usd_ledger_keeps_its_money_to_the_micro_dollar(
    tmp_path_factory: pytest.TempPathFactory,
    amounts: list[tuple[int, int | None, str, int]],
) -> None:
    out = tmp_path_factory.mktemp("out")
    path = ledger_path(out)
    path.parent.mkdir()
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, path, USD_STEPS)  # the USD release's schema, verbatim
    conn.executemany(
        "INSERT INTO meta (name, value) VALUES (?, ?)",
        [("backend", "local"), ("base_url", URL), ("created_at", "1.0")],
    )
    conn.executemany(
        "INSERT INTO jobs (key, idx, prompt_id, state, estimate, charged, ambiguous, updated_at) "
        "VALUES (?, ?, 'p', ?, ?, ?, ?, 1.0)",
        [
            (f"k{i}", i, state, estimate / 1e6, None if charged is None else charged / 1e6, amb)
            for i, (estimate, charged, state, amb) in enumerate(amounts)
        ],
    )
    conn.close()
    before = out / "before.sqlite"
    shutil.copy(path, before)
    with Ledger.open(out, backend="local", base_url=URL) as ledger:
        _check_same_money(ledger, before)
        totals = ledger.totals()
        # Exact: the integers themselves, not a rounded float sum.
        assert sum(t.estimate for t in totals.values()) == sum(a[0] for a in amounts)
        assert sum(t.charged for t in totals.values()) == sum(a[1] or 0 for a in amounts)
