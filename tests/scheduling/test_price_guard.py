"""A credit cap that holds when the API charges more than the price table (issue #13).

The manifest keeps the default table; the emulator's own price table (its
`prices` knob) charges `factor` x that table. Spend is what the emulator
charged (the server's view), never the runner's own count.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from whole_runs import jobs_manifest

from runner.emulator import InProcess
from runner.events import Event, RunStats
from runner.manifest import Manifest
from runner.params import DEFAULT_PRICES
from runner.reporting.summary import build_summary, summary_json
from runner.run import RunOptions, run_manifest
from runner.store import Ledger

pytestmark = pytest.mark.anyio

CAP = 0.50
JOBS = 50
TABLE = DEFAULT_PRICES["standard"]["1k"]  # one 1k standard image: the one price class here


def manifest(tmp_path: Path, in_flight: str) -> Manifest:
    return jobs_manifest(
        tmp_path, JOBS, rpm=600, max_credits=CAP, max_in_flight=in_flight, prefix="t"
    )


def scaled(factor: float) -> dict[str, dict[str, float]]:
    return {mode: {r: p * factor for r, p in row.items()} for mode, row in DEFAULT_PRICES.items()}


@pytest.mark.parametrize("in_flight", ["1", "auto"])
@pytest.mark.parametrize("factor", [1.5, 2.0, 10.0, 100.0])
async def test_spend_stays_within_the_cap_whatever_the_true_price(
    tmp_path: Path, make_emulator: Callable[..., InProcess], factor: float, in_flight: str
) -> None:
    emu = make_emulator(prices=scaled(factor))
    events: list[Event] = []

    def listen(event: Event, stats: RunStats) -> None:
        events.append(event)

    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1)
    report = await run_manifest(
        manifest(tmp_path, in_flight), opts, emulator=emu.emulator, env={}, listeners=[listen]
    )
    spent = emu.emulator.charged_total()
    true_price = TABLE * factor
    if factor <= 2.0:
        assert spent <= CAP + 1e-9
    else:
        # One scout per class may overshoot its reservation, once.
        assert spent <= CAP + true_price + 1e-9
    # The cap is used, not just respected: within one job's true price of it.
    assert spent > CAP - true_price - 1e-9
    assert report.stats.completed == round(spent / true_price)
    surprises = [e.detail for e in events if e.kind == "price"]
    assert len(surprises) == 1 and f"{factor:.1f}x the price table" in surprises[0]


async def test_the_table_true_spends_the_cap_exactly(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    emu = make_emulator()
    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1)
    report = await run_manifest(manifest(tmp_path, "auto"), opts, emulator=emu.emulator, env={})
    assert emu.emulator.charged_total() == pytest.approx(CAP)
    assert report.stats.completed == round(CAP / TABLE)
    assert report.counts["failed"] == 0


async def test_the_surprise_is_in_the_summary(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    emu = make_emulator(prices=scaled(3.0))
    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1)
    report = await run_manifest(manifest(tmp_path, "auto"), opts, emulator=emu.emulator, env={})
    with Ledger.open_readonly(tmp_path / "out") as ledger:
        summary = build_summary(tmp_path / "out", ledger.rows(), stats=report.stats)
    data = json.loads(summary_json(summary))
    (surprise,) = data["run"]["price_surprises"]
    assert "3.0x the price table's $0.02" in surprise
