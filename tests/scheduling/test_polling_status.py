"""Polling on the status path (a remote host): issue 12's targets, counted from the emulator's log.

Segmind documents its result endpoint only for finished jobs, so against a
real host the runner polls `status_url` and fetches the result once it says
COMPLETED: a job costs at least three calls (submit, status, result). These
runs use the in-process emulator with `result_in_progress` off (its result
endpoint answers 404 until the job is done), so the local backend polls by
status as it would remotely, on trio's virtual clock. Every figure is read
off the emulator's own request log; no wall-clock time is asserted.

The issue's target of <= 3.2 API calls per job leaves 0.2 status calls per
job beyond the one that finds the job done. That is reachable only when
jobs take about the same time: with the emulator's default spread
(lognormal, sigma 0.25), no poll schedule, however it is learned, finds at
least half the jobs within 10 % of their latency with fewer than about 1.84
status calls per job on average (3.84 API calls; the calculation is in
docs/architecture.md, Polling). So the spread of 0.25 is held to the median
targets and to 4.3 calls per job, a narrow spread to all three.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from polling_helpers import STATUS_POLLS, seen_by_the_server

from runner.emulator import InProcess, Latency
from runner.run import RunOptions, run_manifest
from tests.scheduling.test_polling import REAL_IDLE, fast_dir
from tests.scheduling.test_scheduler import make_manifest

pytestmark = pytest.mark.anyio

__all__ = ["fast_dir"]  # the fixture, used by name


@REAL_IDLE
@pytest.mark.parametrize(
    ("sigma", "calls_per_job"),
    [pytest.param(0.05, 3.2, id="narrow"), pytest.param(0.25, 4.3, id="spread-0.25")],
)
@pytest.mark.parametrize(
    "latency",
    [
        pytest.param(10.0, id="prior-right"),
        pytest.param(2.0, id="prior-5x-too-long"),
        pytest.param(50.0, id="prior-5x-too-short"),
    ],
)
async def test_status_polling_meets_the_issue_12_targets(
    fast_dir: Path,
    make_emulator: Callable[..., InProcess],
    latency: float,
    sigma: float,
    calls_per_job: float,
) -> None:
    emu = make_emulator(
        latency=Latency("lognormal", latency, sigma), workers=64, result_in_progress=False
    )
    opts = RunOptions(backend="local", out=fast_dir / "out", time_scale=1.0, seed=1)
    report = await run_manifest(
        make_manifest(fast_dir, 150, rpm=30), opts, emulator=emu.emulator, env={}
    )
    assert report.stats.completed == 150
    seen = seen_by_the_server(emu, STATUS_POLLS)
    assert seen.measured >= 90
    # Polled by status: one result call per job, after its status said COMPLETED.
    assert seen.result_calls == 150
    assert seen.median_status <= 1.5
    assert seen.median_delay <= 0.10
    assert seen.api_per_job <= calls_per_job
