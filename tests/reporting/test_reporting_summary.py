"""summary.json, summary.md and the closing text, checked against the folder's ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from reporting_helpers import CHARGED, Folder, make_folder, make_sweep_folder, sweep_jobs

from runner.events import RunStats
from runner.money import micros, to_usd
from runner.reporting.exit_codes import decide_exit
from runner.reporting.jobinfo import JobCatalog
from runner.reporting.summary import (
    SUMMARY_JSON,
    build_summary,
    read_summary,
    render_markdown,
    render_text,
    summarize_folder,
    write_summary,
)
from runner.store import Ledger

STATS = RunStats(
    planned=24,
    completed=18,
    failed=1,
    skipped=2,
    expired=1,
    images=18,
    ambiguous=1,
    rate_limited=3,
    retries=4,
    credits_spent=0.43,
    credits_reserved=0.0,
    credits_ambiguous=0.02,
    calls={"submit": 23, "status": 40, "result": 21},
    stopped="credit budget reached",
    elapsed=125.5,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    return make_sweep_folder(tmp_path_factory.mktemp("sweep") / "out", size=(96, 64))


def written(folder: Folder, **options: Any) -> dict[str, Any]:
    """Write the summary of `folder` and read summary.json back as plain JSON."""
    with Ledger.open_readonly(folder.out) as ledger:
        decision = decide_exit(ledger.counts(), stop="credits", stop_reason="budget")
    summary = summarize_folder(
        folder.out,
        stats=STATS,
        jobs=folder.by_key,
        exit=decision,
        manifest="manifests/sweep-demo.yaml",
        **options,
    )
    write_summary(folder.out, summary, environ={})
    doc = json.loads((folder.out / SUMMARY_JSON).read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def test_counts_images_and_credits_agree_with_the_ledger(folder: Folder) -> None:
    doc = written(folder)
    with Ledger.open_readonly(folder.out) as ledger:
        rows = list(ledger.rows())
        assert doc["jobs"]["by_state"] == ledger.counts()
    completed = [r for r in rows if r.state == "completed"]
    assert doc["schema_version"] == 1
    assert doc["jobs"] == {
        "total": 24,
        "by_state": doc["jobs"]["by_state"],
        "done": len(folder.completed),
        "failed": len(folder.failed) + len(folder.expired),
        "not_run": len(folder.not_run),
    }
    assert doc["images"] == {"total": sum(len(r.files) for r in completed), "this_run": 18}
    credits = doc["credits"]
    assert isinstance(credits, dict)
    # Exact: the ledger's µ$ summed, then written as USD.
    assert credits["estimated_usd"] == to_usd(sum(r.estimate for r in rows))
    reported = [r.charged for r in completed if r.charged is not None]
    assert credits["charged_jobs"] == len(reported)
    assert credits["charged_usd"] == to_usd(len(reported) * CHARGED)
    spent = sum(r.charged if r.charged is not None else r.estimate for r in completed)
    assert credits["spent_usd"] == to_usd(spent)
    # Job 3 lost one submit answer: its estimate may have been paid twice.
    assert credits["ambiguous_submits"] == 1
    assert credits["possible_duplicate_usd"] == to_usd(micros(folder.jobs[3].request.n * 0.02))
    assert credits["spent_this_run_usd"] == pytest.approx(0.43)


def test_this_runs_counters_come_from_the_stats(folder: Folder) -> None:
    run = written(folder)["run"]
    assert isinstance(run, dict)
    assert run["requests"] == {"result": 21, "status": 40, "submit": 23}
    assert run["requests_total"] == 84
    assert run["rate_limited"] == 3
    assert run["elapsed_s"] == 125.5
    assert run["stopped"] == "credit budget reached"


def test_failures_name_the_job_its_params_and_the_reason(folder: Folder) -> None:
    failures = written(folder)["failures"]
    assert isinstance(failures, list)
    by_key = {f["key"]: f for f in failures}
    assert set(by_key) == set(folder.failed) | folder.expired
    for key, reason in folder.failed.items():
        job = folder.by_key[key]
        failure = by_key[key]
        assert failure["state"] == "failed"
        assert failure["reason"] == reason
        assert failure["prompt_id"] == job.prompt_id
        assert failure["key8"] == job.key8
        assert failure["prompt"] == job.request.prompt
        expected = {k: v for k, v in job.request.params().items() if k != "prompt"}
        assert failure["params"] == expected
        assert failure["vars"] == dict(job.vars)
        assert failure["sweep"] == dict(job.sweep)
        assert job.key8 in failure["label"]
    (expired,) = folder.expired
    assert by_key[expired]["state"] == "expired"
    assert "expired" in by_key[expired]["reason"]


def test_exit_code_is_recorded(folder: Folder) -> None:
    doc = written(folder)
    assert doc["exit"] == {
        "code": 3,
        "reason": "stopped by the credit guard: budget; 2 job(s) not run "
        "(raise --max-credits or add credits, then run again)",
    }


def test_summary_json_reads_back_into_the_model(folder: Folder) -> None:
    written(folder)
    summary = read_summary(folder.out / SUMMARY_JSON)
    assert summary.jobs.total == 24
    assert summary.backend is not None and summary.backend.name == "local"


def test_without_the_runs_jobs_failures_use_remembered_facts(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "out", sweep_jobs()[:8], size=(32, 32))
    bare = summarize_folder(folder.out)
    (failure,) = bare.failures
    assert failure.params is None  # nothing knows them yet
    with Ledger.open_readonly(folder.out) as ledger:
        JobCatalog(folder.out, folder.by_key).remember(ledger.rows())
    (failure,) = summarize_folder(folder.out).failures
    assert failure.params is not None
    assert failure.params["aspect_ratio"] == folder.job(5).request.aspect_ratio


def test_markdown_is_appended_to_the_github_step_summary(folder: Folder, tmp_path: Path) -> None:
    step = tmp_path / "step.md"
    step.write_text("# earlier step\n", encoding="utf-8")
    summary = summarize_folder(folder.out, stats=STATS, jobs=folder.by_key)
    files = write_summary(folder.out, summary, environ={"GITHUB_STEP_SUMMARY": str(step)})
    write_summary(folder.out, summary, environ={"GITHUB_STEP_SUMMARY": str(step)})
    text = step.read_text(encoding="utf-8")
    markdown = files.markdown.read_text(encoding="utf-8")
    assert text == "# earlier step\n" + markdown + markdown
    assert "| 24 | 20 | 2 | 2 | 20 |" in markdown
    assert folder.failed[folder.job(5).key] in markdown


def test_markdown_cells_cannot_break_the_table_or_inject_html(tmp_path: Path) -> None:
    reason = "bad | pipe\nnew line <script>alert(1)</script> `tick`"
    folder = make_folder(
        tmp_path / "out",
        sweep_jobs()[:2],
        failed={1: reason},
        expired=frozenset(),
        not_run=frozenset(),
        ambiguous={},
        size=(32, 32),
    )
    markdown = render_markdown(summarize_folder(folder.out, jobs=folder.by_key))
    (line,) = [ln for ln in markdown.splitlines() if "pipe" in ln]
    assert "bad \\| pipe new line &lt;script&gt;alert(1)&lt;/script&gt; 'tick'" in line
    assert line.count(" | ") == 3  # four cells, none split by the reason's pipe
    assert "<script>" not in markdown


def test_closing_text_is_short_and_says_what_happened(folder: Folder) -> None:
    with Ledger.open_readonly(folder.out) as ledger:
        decision = decide_exit(ledger.counts())
    summary = summarize_folder(folder.out, stats=STATS, jobs=folder.by_key, exit=decision)
    text = render_text(summary, out_label="outputs/sweep-demo")
    lines = text.splitlines()
    assert lines[0] == "20 of 24 jobs done, 2 failed, 2 not run, 20 images"
    assert "429s met: 3" in text
    assert "submit 23" in text
    assert "outputs/sweep-demo/gallery.html" in text
    assert lines[-1] == f"exit 1: {decision.reason}"
    assert len(lines) < 12


def test_a_folder_summarised_after_the_fact_has_no_run_part(folder: Folder) -> None:
    with Ledger.open_readonly(folder.out) as ledger:
        summary = build_summary(folder.out, ledger.rows(), meta=ledger.meta)
    assert summary.run is None
    assert summary.images.this_run is None
    assert summary.jobs.done == 20
