"""The bench harness itself (benchmarks/): the bounds, the server-log reading, a smoke run.

The bench is not part of `make test`; these tests keep its arithmetic and
its plumbing honest so that `make bench` does not break unnoticed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.emulator import InProcess, Latency

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/ is not an installed package: `python -m benchmarks` runs it from the repo root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bounds import bucket_bound, ideal_bound, ratio, windowed_bound  # noqa: E402
from benchmarks.processes import run_process  # noqa: E402
from benchmarks.report import Table, fmt, render_table  # noqa: E402
from benchmarks.serverlog import quantile, read_server  # noqa: E402


def test_windowed_bound_is_whole_windows_plus_one_latency() -> None:
    assert windowed_bound(15, 50, 60.0, 10.0) == 10.0  # a batch that fits: one latency
    assert windowed_bound(50, 50, 60.0, 10.0) == 10.0  # exactly R: still one window
    assert windowed_bound(51, 50, 60.0, 10.0) == 70.0  # one more waits a window
    assert windowed_bound(50, 5, 60.0, 10.0) == 550.0  # floor(49 / 5) = 9 windows
    assert windowed_bound(11, 5, 60.0, 10.0, calls_per_job=3) == 370.0  # floor(32 / 5) = 6
    assert windowed_bound(0, 5, 60.0, 10.0) == 0.0


def test_bucket_bound_spaces_every_call() -> None:
    assert bucket_bound(1, 6, 60.0, 10.0) == 10.0
    assert bucket_bound(10, 6, 60.0, 10.0) == 100.0  # 9 gaps of 10 s
    assert bucket_bound(5, 6, 60.0, 10.0, calls_per_job=3) == 150.0  # 14 gaps


def test_ideal_bound_picks_the_model_and_the_calls_per_job() -> None:
    assert ideal_bound("fixed", 40, 5, 60.0, 10.0) == windowed_bound(40, 5, 60.0, 10.0)
    assert ideal_bound("sliding", 11, 5, 60.0, 10.0, scope="all") == 370.0
    assert ideal_bound("bucket", 10, 6, 60.0, 10.0, scope="submit") == 100.0
    assert ratio(105.0, 100.0) == pytest.approx(1.05)
    assert ratio(1.0, 0.0) == float("inf")


def test_quantile_and_cells() -> None:
    assert quantile([3.0, 1.0, 2.0, 4.0, 5.0], 0.5) == 3.0
    assert quantile([1.0, 2.0], 0.9) == 2.0
    assert fmt(1234.5678) == "1,235"
    assert fmt(0.012345) == "0.0123"
    assert fmt(float("nan")) == "-"
    lines = render_table(Table("t", ("a", "b"), ((1, 2.5),)))
    assert lines[2:4] == ["| a | b |", "| --- | --- |"]
    assert lines[4] == "| 1 | 2.50 |"


@pytest.mark.anyio
async def test_server_view_counts_polls_and_detection(
    make_emulator: Callable[..., InProcess],
) -> None:
    import anyio

    emu = make_emulator(latency=Latency.parse("fixed:10"), workers=10)
    async with emu.client(api_key="k") as client:
        body = {"prompt": "a fox", "resolution": "1k", "aspect_ratio": "1:1"}
        job = (await client.post("/v2/grok-imagine-image", json=body)).json()
        await anyio.sleep(4)
        assert (await client.get(job["status_url"])).json()["status"] != "COMPLETED"
        await anyio.sleep(7)  # ends at 10 s; noticed at 11 s
        assert (await client.get(job["status_url"])).json()["status"] == "COMPLETED"
        await client.get(job["response_url"])
        view = read_server(emu.emulator.calls(), emu.emulator.accepted_submits())
    assert view.accepted == 1
    assert view.completed == 1
    assert view.status_calls() == [2]
    assert view.api_calls == 4  # submit, two polls, the result
    assert view.detection_delays() == [pytest.approx(1.0)]
    assert view.detection_ratios() == [pytest.approx(0.1)]
    assert view.makespan == pytest.approx(11.0)
    assert view.rate_limited == 0


def test_run_process_measures_the_child_alone(tmp_path: Path) -> None:
    script = "import sys; x = bytearray(64 * 1024 * 1024); print('ok'); sys.exit(3)"
    result = run_process([sys.executable, "-c", script], cwd=tmp_path)
    assert result.returncode == 3
    assert result.stdout.strip() == "ok"
    assert result.peak_rss_mib >= 64
    assert result.cpu_s > 0


def test_quick_emulator_scenario_writes_its_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--only",
            "emulator",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads((tmp_path / "benchmarks.json").read_text(encoding="utf-8"))
    load = figures["scenarios"]["emulator"]["figures"]["load"]
    assert load["completed"] == load["jobs"]
    assert load["jobs_per_s"] > 0
    assert {"png_ms", "jpeg_ms", "webp_ms"} <= set(
        figures["scenarios"]["emulator"]["figures"]["encode"][0]
    )
    text = (tmp_path / "benchmarks.md").read_text(encoding="utf-8")
    assert "## 5. The emulator" in text
    assert "make bench" in text


def test_unknown_scenario_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--only nope: choose from rate, polling, peers, scale, emulator" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_python_childs_peak_memory_is_its_own() -> None:
    # The probe (benchmarks/probe/sitecustomize.py) reports the child's VmHWM;
    # wait4's ru_maxrss would start from the bench's own peak after the fork.
    child = run_process([sys.executable, "-c", "x = bytearray(64 * 1024 * 1024); x[-1] = 1"])
    child.check()
    assert child.peak_source == "VmHWM"
    assert 64 <= child.peak_rss_mib < 64 + 80
    other = run_process(["/bin/sh", "-c", "exit 0"])  # not Python: no probe, wait4's figure
    assert other.peak_source == "wait4"
