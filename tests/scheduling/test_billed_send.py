"""One billed send for the v2 submit and the v1 sync call: the same rules for both.

Against the in-process emulator on the virtual clock; every count comes from
the emulator's log and the ledger (the server's and the disk's view).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from runner.emulator import InProcess
from runner.manifest import Manifest, parse_manifest
from runner.reporting.exit_codes import decide_exit
from runner.run import RunOptions, RunReport, run_manifest
from runner.store import Ledger, verify

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("endpoint", ["v2", "v1"])]

BLOCKED = '  - id: bad\n    prompt: "this is blocked content"\n'


def manifest(tmp_path: Path, endpoint: str, jobs: int, extra: str = "") -> Manifest:
    things = ", ".join(f"t{i}" for i in range(jobs))
    text = f"""name: billed
api: {{endpoint: {endpoint}}}
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: jpeg}}
prompts:
  - id: p
    prompt: "a picture of {{thing}}"
    vars: {{thing: [{things}]}}
{extra}
budget: {{requests_per_minute: 10}}
output: {{dir: {tmp_path / "out"}}}
"""
    return parse_manifest(text, path=str(tmp_path / "m.yaml"), base_dir=tmp_path)


async def run(m: Manifest, emu: InProcess, tmp_path: Path) -> RunReport:
    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1)
    return await run_manifest(m, opts, emulator=emu.emulator, env={})


def op(endpoint: str) -> str:
    return "submit" if endpoint == "v2" else "sync"


def rows(tmp_path: Path) -> dict[str, tuple[str, int, int]]:
    """key -> (state, attempts, ambiguous)."""
    with Ledger.open_readonly(tmp_path / "out") as ledger:
        return {r.key: (r.state, r.attempts, r.ambiguous) for r in ledger.rows()}


async def test_a_lost_answer_is_ambiguous_and_sent_once_more(
    tmp_path: Path, make_emulator: Callable[..., InProcess], endpoint: str
) -> None:
    emu = make_emulator()
    emu.emulator.faults.script(op(endpoint), "drop_after", times=1)  # type: ignore[arg-type]
    report = await run(manifest(tmp_path, endpoint, 3), emu, tmp_path)
    assert report.stats.completed == 3
    assert report.stats.ambiguous == 1
    assert len(emu.emulator.accepted_submits(endpoint)) == 4  # accepted (and paid) twice
    assert report.stats.credits_ambiguous == pytest.approx(0.02)
    assert sorted(rows(tmp_path).values()) == [
        ("completed", 1, 0),
        ("completed", 1, 0),
        ("completed", 1, 1),  # one answer lost; the mark stands for the second send
    ]
    assert verify(tmp_path / "out").clean


async def test_a_clear_refusal_takes_the_mark_back_and_retries(
    tmp_path: Path, make_emulator: Callable[..., InProcess], endpoint: str
) -> None:
    emu = make_emulator()
    emu.emulator.faults.script(op(endpoint), "500", times=2)  # type: ignore[arg-type]
    report = await run(manifest(tmp_path, endpoint, 1), emu, tmp_path)
    assert report.stats.completed == 1
    assert report.stats.ambiguous == 0
    assert len(emu.emulator.accepted_submits(endpoint)) == 1
    # Marked before each send, unmarked after each 500: three marks, none ambiguous.
    assert list(rows(tmp_path).values()) == [("completed", 3, 0)]


async def test_a_406_stops_the_run_and_puts_the_job_back(
    tmp_path: Path, make_emulator: Callable[..., InProcess], endpoint: str
) -> None:
    emu = make_emulator(credits=0.05)  # two jobs of $0.02 fit, the third does not
    report = await run(manifest(tmp_path, endpoint, 5), emu, tmp_path)
    assert decide_exit(report.counts, stop=report.stop).code == 3
    assert report.stats.completed == 2
    assert len(emu.emulator.accepted_submits(endpoint)) == 2
    assert report.stop_reason is not None and "406" in report.stop_reason
    states = sorted(state for state, _, _ in rows(tmp_path).values())
    assert "submitting" not in states  # the refused one went back to planned
    assert states.count("completed") == 2


async def test_a_final_refusal_fails_the_job_and_frees_its_credits(
    tmp_path: Path, make_emulator: Callable[..., InProcess], endpoint: str
) -> None:
    emu = make_emulator()
    report = await run(manifest(tmp_path, endpoint, 2, BLOCKED), emu, tmp_path)
    assert (report.stats.completed, report.stats.failed) == (2, 1)
    assert report.stats.credits_spent == pytest.approx(2 * 0.02)
    assert report.stats.credits_reserved == 0
    assert report.stats.credits_ambiguous == 0
