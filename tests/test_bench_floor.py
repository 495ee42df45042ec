"""The scale bench's floor (benchmarks/scenarios/scale.py): the httpx peer making the
runner's four calls a job with the runner's pool, writing nothing; and its target line.

The bench is not part of `make test`; this keeps its floor's plumbing honest.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/ is not an installed package: `python -m benchmarks` runs it from the repo root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.manifests import Batch, write_manifest  # noqa: E402
from benchmarks.scenarios.scale import cpu_target, floor_figures, floor_table  # noqa: E402


@pytest.mark.parametrize("cached_sockets", [False, True])
def test_the_floor_makes_the_runners_four_calls_a_job_and_writes_nothing(
    tmp_path: Path, cached_sockets: bool
) -> None:
    manifest = write_manifest(Batch(jobs=6, rpm=1_000_000), tmp_path)
    figures = floor_figures(manifest, tmp_path, 1_000_000, None, cached_sockets=cached_sockets)
    assert figures["completed"] == 6
    assert figures["errors"] == {}
    # Submit, status (the job is done at once), result; and the download.
    assert figures["api_calls"] == 18
    assert figures["media_calls"] == 6
    # The runner's pool and caps at this budget: 100 in flight, 4 submits, 101 connections.
    assert (figures["concurrency"], figures["submits_in_flight"], figures["connections"]) == (
        100,
        4,
        101,
    )
    assert figures["cpu_ms_per_job"] > 0
    assert not any((tmp_path / "floor").iterdir())


def _run(runner_ms: float, floor_ms: float) -> dict[str, Any]:
    floor = {
        "client": "httpx",
        "concurrency": 100,
        "connections": 101,
        "submits_in_flight": 4,
        "completed": 2000,
        "cpu_s": floor_ms * 2,
        "cpu_ms_per_job": floor_ms,
        "api_calls": 6000,
        "media_calls": 2000,
    }
    return {
        "jobs": 2000,
        "completed": 2000,
        "api_calls": 6001,
        "media_calls": 2000,
        "cpu_s": runner_ms * 2 + 2.0,
        "thumbnails_cpu_s": 2.0,
        "cpu_ms_per_job": runner_ms + 1.0,
        "cpu_ms_per_job_no_thumbnails": runner_ms,
        "floors": [floor, floor | {"client": "httpx, the runner's network backend"}],
        "own_cpu_ms_per_job": runner_ms - floor_ms,
    }


def test_the_cpu_target_names_the_floor_and_what_is_left_above_it() -> None:
    high = cpu_target(_run(9.0, 7.5))
    assert not high.met
    assert "7.5 ms on the runner's network backend" in high.measured
    assert "own 1.5 ms above it" in high.measured
    # A floor over 6 ms, or of 5 ms or more, leaves nothing or little of the target: said.
    assert "the floor alone is over 6 ms here" in high.measured
    near = cpu_target(_run(6.5, 5.2))
    assert "the floor alone is >= 5 ms here: 6 ms leaves 0.8 ms" in near.measured
    low = cpu_target(_run(5.5, 3.0))
    assert low.met
    assert "the floor alone" not in low.measured
    table = floor_table(_run(9.0, 7.5))
    assert [row[0] for row in table.rows][-1] == "the runner's own (runner - the last floor)"
    assert table.rows[-1][-1] == pytest.approx(1.5)
