"""A paid failure in the reports of a real run: billed, said so, never a "possible duplicate".

The in-process emulator answers one job's result with fewer images than
asked (billed, so the job fails paid). summary.json, the text summary,
summary.md, `runner status` and `runner verify` each say "1 failed job was
billed ($0.04)", and none calls it an ambiguous submit billed twice; after
`--retry-failed` completes the job, the record of what the failure cost
stays (the folder did pay for it), and the budget still counts it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from runner.emulator import Emulator, EmulatorConfig
from runner.manifest import parse_manifest
from runner.money import micros
from runner.reporting.summary import render_markdown, render_text, summarize_folder, write_summary
from runner.run import RunOptions, run_manifest
from runner.store import Ledger, folder_status, render_status, render_verify, verify

pytestmark = pytest.mark.anyio

BILLED = "1 failed job was billed ($0.04)"


def _manifest(tmp_path: Path) -> str:
    return f"""name: paid
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: png, n: 2}}
prompts:
  - id: fox
    prompt: "a picture of a {{animal}}"
    vars: {{animal: [fox, cat]}}
budget: {{requests_per_minute: 50}}
output: {{dir: {tmp_path / "out"}}}
"""


async def test_a_paid_failure_is_billed_not_a_possible_duplicate(tmp_path: Path) -> None:
    # A result endpoint that answers only finished jobs: the one scripted answer is the result.
    emu = Emulator(EmulatorConfig(seed=5, result_in_progress=False))
    emu.faults.script("result", "missing_images", times=1)
    manifest = parse_manifest(_manifest(tmp_path), path=str(tmp_path / "m.yaml"), base_dir=tmp_path)
    out = tmp_path / "out"
    opts = RunOptions(backend="local", out=out, time_scale=1.0, seed=1)
    first = await run_manifest(manifest, opts, emulator=emu, env={})
    assert (first.stats.completed, first.stats.failed) == (1, 1)
    assert emu.charged_total() == pytest.approx(0.08)  # both jobs billed

    summary = summarize_folder(out, stats=first.stats, manifest=manifest.path)
    write_summary(out, summary, environ={})
    credits = json.loads((out / "summary.json").read_text(encoding="utf-8"))["credits"]
    assert (credits["billed_failures"], credits["billed_failures_usd"]) == (1, 0.04)
    assert (credits["ambiguous_submits"], credits["possible_duplicate_usd"]) == (0, 0)
    (failure,) = summary.failures
    assert failure.billed_usd == 0.04 and failure.ambiguous_submits == 0
    for text in (render_text(summary), render_markdown(summary), render_status(folder_status(out))):
        assert BILLED in text, text
        assert "billed twice" not in text and "ambiguous" not in text, text
    assert "the result has 1 of 2 image(s) (billed $0.04)" in render_text(summary)
    checked = render_verify(verify(out))
    assert "the result has 1 of 2 image(s) (billed $0.04)" in checked, checked
    assert checked.rstrip().endswith(BILLED), checked

    again = await run_manifest(manifest, replace(opts, retry_failed=True), emulator=emu, env={})
    assert again.stats.completed == 1
    after = summarize_folder(out, stats=again.stats)
    assert after.jobs.done == 2 and not after.failures
    assert (after.credits.billed_failures, after.credits.billed_failures_usd) == (1, 0.04)
    assert BILLED in render_text(after)
    with Ledger.open_readonly(out) as ledger:
        # What a later run's cap counts besides the charges: the billed failure.
        possible = ledger.possible_extra_spend()
        spent = sum(t.charged for t in ledger.totals().values())
    assert possible == micros(0.04)
    assert spent + possible == micros(emu.charged_total())  # every charge, counted once
