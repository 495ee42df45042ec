"""Resume at scale (issue 13 item 4, issue 12's resume target): from the ledger's rows.

A resumed run finds the jobs an earlier run left on the server from the
ledger, and stops walking the sweep at the last of them: a trillion-job
manifest with two jobs submitted resumes at once. A job the ledger shows
completed is trusted (its files are checked to be there, its sidecars are
not re-read; `runner verify` is what reads them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from whole_runs import jobs_manifest

from runner.emulator import InProcess
from runner.events import Event, RunStats
from runner.manifest import Manifest, parse_manifest
from runner.money import micros
from runner.run import RunOptions, RunReport, run_manifest
from runner.store import Ledger, verify

pytestmark = pytest.mark.anyio

EPOCH = 1_800_000_000.0  # the wall clock at virtual time 0 (conftest's TEST_UTC)


def wall() -> float:
    return EPOCH + anyio.current_time()


def trillion(tmp_path: Path, max_credits: float) -> Manifest:
    """10^12 jobs (six vars of 100 values), $0.02 each, under a cap of `max_credits` USD."""
    values = "[" + ", ".join(f"v{i}" for i in range(100)) + "]"
    names = [f"x{i}" for i in range(6)]
    text = (
        "name: huge\n"
        'defaults: {resolution: 1k, aspect_ratio: "1:1", output_format: jpeg}\n'
        "prompts:\n  - id: a\n    prompt: '" + " ".join("{" + n + "}" for n in names) + "'\n"
        "    vars:\n" + "".join(f"      {n}: {values}\n" for n in names) + "exclude:\n"
        "  - {x5: v7}\n"
        f"budget: {{requests_per_minute: 50, max_credits: {max_credits}}}\n"
        f"output: {{dir: {tmp_path / 'out'}}}\n"
    )
    return parse_manifest(text, path=str(tmp_path / "m.yaml"), base_dir=tmp_path)


def small(tmp_path: Path, jobs: int) -> Manifest:
    return jobs_manifest(tmp_path, jobs, rpm=50, prefix="t")


async def run(manifest: Manifest, emu: InProcess, tmp_path: Path, **options: Any) -> RunReport:
    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1, **options)
    return await run_manifest(manifest, opts, emulator=emu.emulator, env={}, wall=wall)


async def crash_after_submits(
    count: int, manifest: Manifest, emu: InProcess, tmp_path: Path
) -> None:
    """Run until the `count`-th accepted submit, then stop dead (like a kill)."""
    seen = 0
    with anyio.CancelScope() as scope:

        def listener(event: Event, stats: RunStats) -> None:
            nonlocal seen
            if event.kind == "submitted":
                seen += 1
                if seen >= count:
                    scope.cancel()

        opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1)
        await run_manifest(
            manifest, opts, emulator=emu.emulator, env={}, wall=wall, listeners=[listener]
        )
    assert scope.cancelled_caught


async def test_a_trillion_job_resume_reattaches_from_the_ledger_rows(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    emu = make_emulator()
    manifest = trillion(tmp_path, max_credits=0.04)  # two jobs' worth
    await crash_after_submits(2, manifest, emu, tmp_path)
    with Ledger.open_readonly(tmp_path / "out") as ledger:
        left = {row.idx: row.state for row in ledger.rows()}
    assert set(left) == {0, 1}
    assert set(left.values()) <= {"submitted", "completed"}

    # Before the fix this walked all 10^12 jobs to find the two rows: it never returned.
    report = await run(manifest, emu, tmp_path)
    assert report.stop == "credits"  # the cap is spent: nothing new is sent
    assert len(emu.emulator.accepted_submits()) == 2  # re-attached, never paid again
    with Ledger.open_readonly(tmp_path / "out") as ledger:
        assert {row.idx: row.state for row in ledger.rows()} == {0: "completed", 1: "completed"}
    assert verify(tmp_path / "out").clean


async def test_a_trillion_job_resume_learns_prices_without_walking_the_sweep(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    """A resume under a cap learns the folder's charges (runner.run._price_book) by walking
    the expansion only up to the last charged row, even when a charge is of a job the
    manifest no longer has (here a forged one): otherwise it would walk 10^12 jobs."""
    emu = make_emulator()
    manifest = trillion(tmp_path, max_credits=0.06)
    await crash_after_submits(1, manifest, emu, tmp_path)
    with Ledger.open_readonly(tmp_path / "out") as ledger:
        meta = ledger.meta
    assert meta is not None
    with Ledger.open(tmp_path / "out", backend=meta.backend, base_url=meta.base_url) as ledger:
        gone = "k1:" + "ef" * 32  # a job an earlier version of the manifest had
        ledger.plan(gone, 3, "a", micros(0.02))
        ledger.submitting(gone)
        ledger.submitted(gone, "req-gone", wall())
        ledger.completed(gone, micros(0.02), [], wall())

    report = await run(manifest, emu, tmp_path)
    assert report.stop == "credits"
    assert report.stats.completed >= 1


async def test_a_resume_trusts_the_ledgers_completed_rows(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    emu = make_emulator()
    manifest = small(tmp_path, 3)
    first = await run(manifest, emu, tmp_path)
    assert first.stats.completed == 3
    sidecars = sorted((tmp_path / "out").rglob("*.json"))
    sidecars = [p for p in sidecars if p.with_suffix(".jpg").exists()]
    assert len(sidecars) == 3
    sidecars[0].write_text("{not a sidecar", encoding="utf-8")

    again = await run(manifest, emu, tmp_path)
    # The sidecar is not re-read on resume: the job stays done and nothing is paid.
    assert again.stats.completed == 0 and again.stats.skipped == 3
    assert len(emu.emulator.accepted_submits()) == 3
    # `runner verify` is what reads every sidecar, and it finds the damage.
    assert not verify(tmp_path / "out").clean


async def test_a_resume_still_sees_a_missing_file(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    emu = make_emulator()
    manifest = small(tmp_path, 2)
    await run(manifest, emu, tmp_path)
    images = sorted((tmp_path / "out").rglob("*.jpg"))
    images[0].unlink()

    again = await run(manifest, emu, tmp_path)
    # Within the server's retention: re-attached and downloaded again, not paid again.
    assert again.stats.completed == 1 and again.stats.skipped == 1
    assert len(emu.emulator.accepted_submits()) == 2
    assert images[0].is_file()
    assert verify(tmp_path / "out").clean
