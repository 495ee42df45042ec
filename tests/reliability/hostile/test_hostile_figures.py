"""`make chaos`: issue #13's figures, printed; each is also bounded here.

- peak RSS of a whole run against each bomb (one fresh process per bomb:
  bomb_rss.py reads its own VmHWM);
- spend against a $0.50 cap when the server charges 1.5x and 10x the price
  table (50 jobs; the server's own count of what it charged).
The kills right after accepted submits are in test_reliability_soak.py; the
full-disk runs resumed to completion in test_reliability_disk.py (make test).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from whole_runs import jobs_manifest

from runner.emulator import InProcess
from runner.params import DEFAULT_PRICES
from runner.run import RunOptions, run_manifest

HERE = Path(__file__).resolve().parent
RSS_BOUND_MIB = 150
CAP = 0.50
JOBS = 50


@pytest.mark.chaos
@pytest.mark.timeout(900)
def test_peak_rss_against_each_bomb(tmp_path: Path) -> None:
    rows = []
    for case in ("gzip_status", "gzip_result", "json_status", "datauri_result"):
        out = tmp_path / case
        out.mkdir()
        done = subprocess.run(
            [sys.executable, str(HERE / "bomb_rss.py"), str(out), case],
            capture_output=True,
            text=True,
            check=False,
            cwd=HERE,
            env={"PYTHONPATH": f"{HERE}:{HERE.parents[2]}", "PATH": "/usr/bin:/bin"},
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        name, state, kib = done.stdout.split()[-3:]
        rows.append((name, state, int(kib) / 1024))
    print("\n| bomb | job | peak RSS |\n| --- | --- | --- |")
    for name, state, mib in rows:
        print(f"| {name} | {state} | {mib:.0f} MiB |")
    for name, state, mib in rows:
        assert state == "completed", name
        assert mib < RSS_BOUND_MIB, f"{name}: {mib:.0f} MiB"


@pytest.mark.chaos
@pytest.mark.anyio
@pytest.mark.parametrize("factor", [1.5, 10.0])
async def test_spend_against_a_wrong_price_table(
    tmp_path: Path, make_emulator: Callable[..., InProcess], factor: float
) -> None:
    prices = {m: {r: p * factor for r, p in row.items()} for m, row in DEFAULT_PRICES.items()}
    emu = make_emulator(prices=prices)
    manifest = jobs_manifest(tmp_path, JOBS, rpm=600, max_credits=CAP, prefix="t")
    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1)
    report = await run_manifest(manifest, opts, emulator=emu.emulator, env={})
    spent = emu.emulator.charged_total()
    true_price = DEFAULT_PRICES["standard"]["1k"] * factor
    print(
        f"\nserver at {factor:g}x the price table: ${spent:.2f} spent on a ${CAP:.2f} cap "
        f"({report.stats.completed} of {JOBS} jobs)"
    )
    bound = CAP if factor <= 2.0 else CAP + true_price
    assert spent <= bound + 1e-9
