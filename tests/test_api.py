"""The documented Python API, used as a library user would: only `import runner`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import runner

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "manifests" / "sweep-demo.yaml"


def test_load_and_plan() -> None:
    manifest = runner.load_manifest(DEMO)
    whole = runner.plan(manifest)
    assert (whole.jobs, whole.images) == (24, 24)
    subset = runner.plan(DEMO, filter=["lighthouse", "mode=quality"])
    assert subset.jobs == 2 and subset.credits < whole.credits
    assert runner.plan(manifest, limit=5, rpm=1).min_duration_s == 4 * 60 + 10
    assert len(list(runner.expand(manifest))) == 24


def test_errors_are_the_libraries_own(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprompts:\n  - {id: a, prompt: hi, params: {n: 9}}\n")
    with pytest.raises(runner.errors.ManifestError, match=r"bad\.yaml:3:.*n must be 1 to 4"):
        runner.load_manifest(bad)
    with pytest.raises(runner.errors.UsageError, match="not a folder"):
        runner.open_output(tmp_path / "missing")


def test_run_then_read_the_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = runner.run(DEMO, out=out, backend="local", filter=["mug"], limit=3, env={})
    assert report.out == out and report.counts.get("completed") == 3
    folder = runner.open_output(out)
    images = list(folder.images())
    assert len(images) == 3 and {i["prompt_id"] for i in images} == {"mug"}
    assert all((out / i["file"]).is_file() and len(i["sha256"]) == 64 for i in images)
    assert folder.verify().clean
    assert folder.status().counts["completed"] == 3
    buffer = io.StringIO()
    assert folder.export(buffer, "jsonl") == 3
    assert json.loads(buffer.getvalue().splitlines()[0])["key"] == images[0]["key"]
    layout = folder.grid(tmp_path / "grid.png", rows="color", cols="surface")
    assert (tmp_path / "grid.png").stat().st_size > 0 and layout.rows
    # Running again resumes: nothing is submitted twice.
    again = runner.run(DEMO, out=out, backend="local", filter=["mug"], limit=3, env={})
    assert (again.stats.skipped, again.stats.completed) == (3, 0)
    assert again.stats.planned == 3


def test_the_api_names_are_documented() -> None:
    for name in ("load_manifest", "plan", "run", "open_output"):
        function = getattr(runner, name)
        assert callable(function) and function.__doc__, name
        assert f"{name}(" in (runner.__doc__ or "")


def test_a_cache_serves_a_second_folder_and_xai_runs_through_the_same_call(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = runner.run(DEMO, out=tmp_path / "a", backend="local", limit=2, cache=cache, env={})
    assert first.stats.completed == 2
    second = runner.run(DEMO, out=tmp_path / "b", backend="local", limit=2, cache=cache, env={})
    assert (second.stats.cached, second.stats.completed) == (2, 0)
    assert "submit" not in second.stats.calls  # served from the cache: nothing paid
    assert runner.open_output(tmp_path / "b").verify().clean
    xai = runner.load_manifest(DEMO, provider="xai")
    report = runner.run(xai, out=tmp_path / "x", limit=1, env={})
    assert report.counts.get("completed") == 1 and "sync" in report.stats.calls
