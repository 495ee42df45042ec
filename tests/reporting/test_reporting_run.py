"""Reports of a real run: the sweep demo through `run_manifest` on the embedded emulator.

The emulator refuses prompts about white marble (a content block, FAILED),
and a small credit budget stops the run before every job is reached, so the
reports have failures, jobs the ledger has never seen, and a credit stop.
Virtual clock (trio's MockClock via conftest): the run takes no real time.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from reporting_helpers import SWEEP_DEMO

from runner.emulator import EmulatorConfig
from runner.manifest import load_manifest
from runner.reporting.exit_codes import EXIT_CREDITS, decide_exit
from runner.reporting.gallery import write_gallery
from runner.reporting.junit import write_junit
from runner.reporting.summary import render_text, summarize_folder, with_exit, write_summary
from runner.run import RunOptions, run_manifest
from runner.store import Ledger, verify
from runner.sweep import expand

BLOCK = "the emulator refuses white marble"


@pytest.mark.anyio
async def test_reports_agree_with_the_ledger_of_a_real_run(tmp_path: Path) -> None:
    manifest = load_manifest(str(SWEEP_DEMO))
    out = tmp_path / "out"
    report = await run_manifest(
        manifest,
        RunOptions(backend="local", out=out, max_credits=0.30),
        env={},
        emulator_config=EmulatorConfig(
            time_scale=0.1, block_patterns=(r"white marble",), block_message=BLOCK
        ),
    )
    jobs = {job.key: job for job in expand(manifest)}
    with Ledger.open_readonly(out) as ledger:
        rows = {row.key: row for row in ledger.rows()}
    assert report.stop == "credits"
    assert 0 < len(rows) < len(jobs)  # the budget stopped it before the end

    summary = summarize_folder(
        out, stats=report.stats, jobs=jobs, prices=manifest.prices, manifest=manifest.path
    )
    decision = decide_exit(
        summary.jobs.by_state, stop=report.stop, stop_reason=report.stop_reason or ""
    )
    assert decision.code == EXIT_CREDITS
    write_summary(out, with_exit(summary, decision), environ={})
    doc = json.loads((out / "summary.json").read_text(encoding="utf-8"))

    states = [row.state for row in rows.values()]
    unseen = len(jobs) - len(rows)
    assert doc["jobs"]["total"] == 24
    assert doc["jobs"]["done"] == states.count("completed")
    assert doc["jobs"]["failed"] == states.count("failed") + states.count("expired")
    assert doc["jobs"]["by_state"]["planned"] == states.count("planned") + unseen
    blocked = {k for k, job in jobs.items() if "white marble" in job.request.prompt}
    failed = {f["key"] for f in doc["failures"]}
    assert failed and failed <= blocked
    assert all(BLOCK in f["reason"] for f in doc["failures"])
    assert doc["images"]["total"] == sum(len(r.files) for r in rows.values())
    assert doc["run"]["requests"]["submit"] >= len(rows) - states.count("planned")
    assert doc["exit"]["code"] == 3
    assert doc["credits"]["spent_usd"] <= 0.30 + 1e-9

    junit = tmp_path / "junit.xml"
    write_junit(junit, out, jobs=jobs, prices=manifest.prices, name=manifest.name)
    root = ET.parse(junit).getroot()  # noqa: S314 (our own file)
    assert root.get("tests") == "24"
    assert int(root.get("failures", "-1")) == len(failed)
    assert int(root.get("skipped", "-1")) == doc["jobs"]["not_run"]

    result = write_gallery(out, jobs=jobs, prices=manifest.prices, title=manifest.name)
    assert result.images == doc["images"]["total"]
    assert result.unfinished == 24 - doc["jobs"]["done"]
    assert verify(out).clean

    text = render_text(with_exit(summary, decision), out_label="outputs/sweep-demo")
    assert text.splitlines()[-1].startswith("exit 3: stopped by the credit guard")
