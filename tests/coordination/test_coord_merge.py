"""`runner merge`: workers' folders into one verified folder; differing copies refused.

The folders are real runs on the in-process emulator (virtual clock), then
copied, damaged or edited as a test needs; the merged folder is read back
and verified.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio.testing
from coord_helpers import manifest_of

from runner.cli import main
from runner.emulator import InProcess
from runner.errors import RunnerError, UsageError
from runner.manifest import Manifest
from runner.merge import merge
from runner.money import Micros
from runner.run import RunOptions, run_manifest
from runner.store import Ledger, verify
from runner.sweep import expand

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> Any:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


async def run_into(manifest: Manifest, emu: InProcess, out: Path) -> None:
    options = RunOptions(backend="local", out=out, time_scale=1.0, seed=1)
    report = await run_manifest(manifest, options, emulator=emu.emulator, env={})
    assert report.stats.failed == 0


async def test_copies_of_one_job_that_agree_are_kept_once(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    manifest = manifest_of(tmp_path, 4)
    await run_into(manifest, make_emulator(), tmp_path / "a")
    # A job re-attached by a taker: the same request, the same bytes, in two folders.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    report = merge([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")
    assert (report.jobs, report.completed, report.duplicates) == (4, 4, 4)
    assert report.verify.clean and report.verify.checked == 4
    assert (tmp_path / "merged" / "summary.json").is_file()
    assert (tmp_path / "merged" / "gallery.html").is_file()
    # Merging again into the merged folder adds nothing and stays clean.
    again = merge([tmp_path / "a"], tmp_path / "merged")
    assert again.copied == 0 and again.verify.clean


async def test_differing_completed_copies_are_refused_before_writing(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    manifest = manifest_of(tmp_path, 3)
    emu = make_emulator()
    await run_into(manifest, emu, tmp_path / "a")
    await run_into(manifest, emu, tmp_path / "b")  # the same jobs paid again
    with pytest.raises(RunnerError) as caught:
        merge([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")
    text = str(caught.value)
    assert "3 job(s) have differing completed copies" in text
    assert str(tmp_path / "a") in text and str(tmp_path / "b") in text
    assert not (tmp_path / "merged").exists()


async def test_each_worker_contributes_its_jobs_and_completed_beats_in_flight(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    manifest = manifest_of(tmp_path, 4)
    jobs = list(expand(manifest))
    await run_into(manifest, make_emulator(), tmp_path / "done")
    # w1 finished every job, w0 died while job 0 was in flight (its ledger says
    # submitted, with the request id w1 re-attached to).
    with Ledger.open_readonly(tmp_path / "done") as ledger:
        rows = {row.key: row for row in ledger.rows()}
    shutil.copytree(tmp_path / "done", tmp_path / "w1")
    with Ledger.open(tmp_path / "w0", backend="local", base_url=ledger.meta.base_url) as dead:
        row = rows[jobs[0].key]
        assert row.request_id is not None and row.submitted_at is not None
        dead.plan(row.key, row.idx, row.prompt_id, row.estimate)
        dead.submitted(row.key, row.request_id, row.submitted_at)
    report = merge([tmp_path / "w0", tmp_path / "w1"], tmp_path / "merged")
    assert report.verify.clean
    with Ledger.open_readonly(tmp_path / "merged") as merged:
        states = {r.key: (r.state, r.request_id) for r in merged.rows()}
    assert states[jobs[0].key] == ("completed", rows[jobs[0].key].request_id)
    assert all(state == "completed" for state, _ in states.values())


async def test_a_damaged_copy_gives_way_to_an_intact_one_and_alone_is_refused(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    manifest = manifest_of(tmp_path, 2)
    await run_into(manifest, make_emulator(), tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    image = sorted((tmp_path / "b" / "p").glob("*.jpg"))[0]
    image.write_bytes(image.read_bytes()[:-100])
    report = merge([tmp_path / "b", tmp_path / "a"], tmp_path / "merged")
    assert report.verify.clean and report.completed == 2
    with pytest.raises(RunnerError, match="no intact copy"):
        merge([tmp_path / "b"], tmp_path / "alone")


async def test_folders_of_different_backends_are_not_mixed(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    manifest = manifest_of(tmp_path, 1)
    await run_into(manifest, make_emulator(), tmp_path / "local")
    with Ledger.open(tmp_path / "real", backend="segmind", base_url="https://api.segmind.com"):
        pass
    with pytest.raises(UsageError, match="different backends"):
        merge([tmp_path / "local", tmp_path / "real"], tmp_path / "merged")


async def test_the_command_line_merges_and_verifies(
    tmp_path: Path, make_emulator: Callable[..., InProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = manifest_of(tmp_path, 2)
    await run_into(manifest, make_emulator(), tmp_path / "a")
    into = tmp_path / "merged"
    assert main(["merge", str(tmp_path / "a"), "--into", str(into)]) == 0
    out = capsys.readouterr().out
    assert "verified: 2 image(s), all good" in out
    assert verify(into).clean
    assert main(["merge", str(tmp_path / "missing"), "--into", str(into)]) == 2
    assert "is not a folder" in capsys.readouterr().err


async def test_a_merged_summary_is_headed_with_its_manifest_and_folders(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    manifest = manifest_of(tmp_path, 4)
    await run_into(manifest, make_emulator(), tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    merge([tmp_path / "a", tmp_path / "b"], tmp_path / "merged", manifest=manifest.path)
    lines = (tmp_path / "merged" / "summary.md").read_text().splitlines()
    # Workers' folders (no shard in their reports): how many, not "of N shards".
    assert lines[0] == f"## runner: {manifest.path} (merged from 2 folders)", lines[0]
    merge([tmp_path / "a"], tmp_path / "one", title="nightly")
    assert (
        (tmp_path / "one" / "summary.md")
        .read_text()
        .startswith("## nightly (merged from 1 folder)\n")
    )


async def test_billed_failures_add_up_over_the_folders_and_count_once_again(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    manifest = manifest_of(tmp_path, 4)
    job = next(iter(expand(manifest)))
    await run_into(manifest, make_emulator(), tmp_path / "done")
    with Ledger.open_readonly(tmp_path / "done") as ledger:
        base_url = ledger.meta.base_url
    # Two workers each had a billed failure of job 0 (too few images, say) before the
    # folder "done" completed it: each was paid.
    for name, charged in (("w0", 30_000), ("w1", 40_000)):
        with Ledger.open(tmp_path / name, backend="local", base_url=base_url) as ledger:
            ledger.plan(job.key, job.index, job.prompt_id, Micros(40_000))
            ledger.submitting(job.key)
            ledger.failed(
                job.key, "the result has 1 of 2 image(s)", billed=True, charged=Micros(charged)
            )
    folders = [tmp_path / "w0", tmp_path / "w1", tmp_path / "done"]
    for _ in range(2):  # merging the same folders again adds nothing
        merge(folders, tmp_path / "merged")
        with Ledger.open_readonly(tmp_path / "merged") as ledger:
            row = ledger.get(job.key)
            extra = ledger.possible_extra_spend()
        assert row is not None and row.state == "completed"
        assert (row.billed_failures, row.billed_failed) == (2, 70_000)
        assert extra == 70_000
    summary = json.loads((tmp_path / "merged" / "summary.json").read_text())
    assert summary["credits"]["billed_failures"] == 2
