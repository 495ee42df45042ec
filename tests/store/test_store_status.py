"""`runner status` figures from a real ledger."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.money import micros
from runner.store.ledger import Ledger
from runner.store.status import folder_status, render_status


def key(i: int) -> str:
    return f"k1:{i:064x}"


def fill(ledger: Ledger, now: float) -> None:
    ledger.plan_many((key(i), i, "fox", micros(0.02 if i < 10 else 0.05)) for i in range(12))
    # 0-1 planned; 2 submitting; 3-4 submitted (10 min and 70 min ago); 5-8 completed;
    # 9 failed; 10-11 expired (0.05 each).
    for i in range(2, 12):
        ledger.submitting(key(i))
    ledger.submitted(key(3), "r3", now - 600)
    ledger.submitted(key(4), "r4", now - 4200)
    for i, charged in zip(
        range(5, 9), [micros(0.02), micros(0.02), micros(0.025), None], strict=True
    ):
        ledger.submitted(key(i), f"r{i}", now - 100)
        ledger.completed(key(i), charged, [f"fox/{i}.png"], now - 50)
    ledger.ambiguous(key(2))
    ledger.failed(key(9), "content blocked")
    for i in (10, 11):
        ledger.submitted(key(i), f"r{i}", now - 9000)
        ledger.expired(key(i))


def test_figures(tmp_path: Path) -> None:
    now = time.time()
    with Ledger.open(tmp_path, backend="local", base_url="http://127.0.0.1:9") as ledger:
        fill(ledger, now)
        # status reads while the run still holds the folder.
        status = folder_status(tmp_path, now=now + 1)
    assert status.counts == {
        "planned": 2,
        "submitting": 1,
        "submitted": 2,
        "completed": 4,
        "failed": 1,
        "expired": 2,
    }
    assert status.jobs == 12
    assert status.estimate_by_state["expired"] == pytest.approx(0.10)
    assert status.estimated_usd == pytest.approx(10 * 0.02 + 2 * 0.05)
    assert status.charged_usd == pytest.approx(0.065)
    assert status.charged_jobs == 3
    assert status.ambiguous == 1
    assert status.in_flight == 3
    assert status.oldest_in_flight_s == pytest.approx(4201)
    assert status.overdue == 1
    assert (status.backend, status.base_url) == ("local", "http://127.0.0.1:9")
    text = render_status(status)
    assert "expired            2         0.1000" in text
    assert "total             12         0.3000" in text
    assert "charged (reported by the API): $0.0650 over 3 job(s)" in text
    assert "ambiguous submits (answer lost, may have been billed): 1" in text
    assert "in flight: 3, oldest 1h 10m old; 1 past the 1h 00m retention window" in text


def test_in_flight_within_the_window(tmp_path: Path) -> None:
    now = time.time()
    with Ledger.open(tmp_path, backend="local", base_url="http://x") as ledger:
        ledger.plan(key(1), 0, "fox", micros(0.02))
        ledger.submitting(key(1))
        ledger.submitted(key(1), "r1", now - 600)
    status = folder_status(tmp_path, now=now)
    assert status.overdue == 0
    assert "oldest 10m 00s old; within the 1h 00m retention window, 50m 00s left" in render_status(
        status
    )
    assert folder_status(tmp_path, retention_s=300, now=now).overdue == 1


def test_nothing_in_flight(tmp_path: Path) -> None:
    Ledger.open(tmp_path, backend="local", base_url="http://x").close()
    status = folder_status(tmp_path)
    assert status.jobs == 0 and status.oldest_in_flight_s is None
    assert "in flight: none" in render_status(status)


def test_a_folder_without_a_ledger(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="has no ledger"):
        folder_status(tmp_path)
