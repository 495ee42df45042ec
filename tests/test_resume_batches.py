"""A resume reports its finished jobs in batches, and still counts every one (issue #12).

The folder is built through the store API (completed ledger rows, one-byte
image and sidecar files: a resume only checks that they are there), then
`runner run --json` resumes it as a user would.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from whole_runs import jobs_manifest, runner_cli

from runner.backends.select import LOCAL_BASE_URL
from runner.manifest import load_manifest
from runner.money import Micros
from runner.reporting.progress import ProgressBar
from runner.resume import COMPLETED, batch_message, failed_message
from runner.run import RunOptions, run_manifest
from runner.store import Ledger
from runner.store.layout import image_path, relative_name, sidecar_path
from runner.sweep import expand

FINISHED = 1200
EPOCH = 1_800_000_000.0


def finished_folder(tmp_path: Path, finished: int) -> Path:
    """A manifest of `finished` + 1 jobs whose first `finished` are done in its folder."""
    manifest = jobs_manifest(tmp_path, finished + 1, rpm=1000, prefix="t", write=True)
    out = tmp_path / "out"
    jobs = list(expand(manifest))
    with Ledger.open(out, backend="local", base_url=LOCAL_BASE_URL) as ledger:
        ledger.plan_many((job.key, job.index, job.prompt_id, Micros(20_000)) for job in jobs)
        with ledger.transaction():
            for job in jobs[:finished]:
                image = image_path(out, job, 0)
                image.parent.mkdir(parents=True, exist_ok=True)
                image.write_bytes(b"x")
                sidecar_path(image).write_bytes(b"{}")
                done = [relative_name(out, image)]
                ledger.completed(job.key, Micros(20_000), done, EPOCH)
    return tmp_path / "m.yaml"


def test_a_resume_over_1200_finished_jobs_says_1200_skipped_in_a_few_events(
    tmp_path: Path,
) -> None:
    manifest = finished_folder(tmp_path, FINISHED)
    out = tmp_path / "out"
    argv = ["run", str(manifest), "--backend", "local", "--out", str(out), "--json", "--yes"]
    done = runner_cli(*argv)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    skipped = [e for e in events if e["event"] == "skipped"]
    # Every finished job is counted, in batches: not one line per job.
    assert sum(e["count"] for e in skipped) == FINISHED
    assert 1 <= len(skipped) <= 3
    assert all(e["key"] is None and COMPLETED in e["detail"] for e in skipped)
    # Told before the new job went out, so each line's counter is up to date.
    (submitted,) = [e for e in events if e["event"] == "submitted"]
    assert submitted["skipped"] == FINISHED and submitted["count"] == 1
    (finished,) = [e for e in events if e["event"] == "finished"]
    assert finished["skipped"] == FINISHED
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["run"]["skipped"] == FINISHED
    assert summary["run"]["completed"] == 1


def test_a_batch_message_counts_each_message_and_folds_the_rest() -> None:
    assert batch_message({COMPLETED: 498, failed_message("timeout"): 2}) == (
        f"498 {COMPLETED}; 2 {failed_message('timeout')}"
    )
    many = {failed_message(f"reason {i}"): 1 for i in range(7)}
    text = batch_message({COMPLETED: 1_500, **many})
    assert text.startswith(f"1,500 {COMPLETED}; 1 {failed_message('reason 0')}")
    assert text.endswith("; 3 skipped for other reasons")  # five messages shown, three folded


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal, so the progress bar draws its bar."""

    def isatty(self) -> bool:
        return True


@pytest.mark.anyio
async def test_the_bar_advances_by_each_batch_to_every_job(tmp_path: Path) -> None:
    manifest = load_manifest(str(finished_folder(tmp_path, FINISHED)))
    screen = _Terminal()
    bar = ProgressBar(stream=screen)
    report = await run_manifest(
        manifest,
        RunOptions(backend="local", out=tmp_path / "out", time_scale=0.01, seed=1),
        env={},
        listeners=[bar],
    )
    bar.close()
    assert report.stats.skipped == FINISHED and report.stats.completed == 1
    # tqdm's last drawing of the bar: every job of the run done, the batches included.
    assert f"{FINISHED + 1}/{FINISHED + 1}" in screen.getvalue().rsplit("\r", 1)[-1]
