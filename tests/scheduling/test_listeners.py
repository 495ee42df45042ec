"""Listeners are off the critical path: one that raises is dropped, and no job notices.

In-process emulator, virtual clock; the run's end is read from the ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from whole_runs import jobs_manifest

from runner.emulator import InProcess
from runner.events import Event, RunStats
from runner.manifest import Manifest
from runner.reporting.exit_codes import decide_exit
from runner.run import RunOptions, run_manifest
from runner.store import Ledger, verify

pytestmark = pytest.mark.anyio


def manifest(tmp_path: Path, jobs: int) -> Manifest:
    return jobs_manifest(tmp_path, jobs, prefix="t")


class Broken:
    """A listener whose stream is closed from the first event on (like `| head -0`)."""

    def __init__(self, fails_at: int = 1) -> None:
        self.calls = 0
        self.fails_at = fails_at

    def __call__(self, event: Event, stats: RunStats) -> None:
        self.calls += 1
        if self.calls >= self.fails_at:
            raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("fails_at", [1, 4])
async def test_a_raising_listener_is_dropped_and_every_job_finishes(
    tmp_path: Path,
    make_emulator: Callable[..., InProcess],
    capsys: pytest.CaptureFixture[str],
    fails_at: int,
) -> None:
    emu = make_emulator()
    broken = Broken(fails_at)
    seen: list[str] = []
    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1)
    report = await run_manifest(
        manifest(tmp_path, 6),
        opts,
        emulator=emu.emulator,
        env={},
        listeners=[broken, lambda event, stats: seen.append(event.kind)],
    )
    assert decide_exit(report.counts, stop=report.stop).code == 0
    assert report.stats.completed == 6
    assert broken.calls == fails_at  # called until it failed, never again
    # The other listener heard the whole run.
    assert seen[0] == "started" and seen[-1] == "finished"
    assert seen.count("completed") == 6
    with Ledger.open_readonly(tmp_path / "out") as ledger:
        assert ledger.counts()["completed"] == 6
    assert verify(tmp_path / "out").clean
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "BrokenPipeError" in err[0] and "the run goes on" in err[0]


async def test_listeners_run_in_their_own_tasks_in_the_order_sent(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    """A job only puts an event on a stream: the listener is called from its own
    task, with the stats snapshot taken when the event was sent."""
    emu = make_emulator()
    events: list[tuple[str, int, str]] = []

    def listen(event: Event, stats: RunStats) -> None:
        events.append((event.kind, stats.completed, anyio.get_current_task().name or ""))

    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1)
    report = await run_manifest(
        manifest(tmp_path, 4), opts, emulator=emu.emulator, env={}, listeners=[listen]
    )
    assert report.stats.completed == 4
    assert {task for _, _, task in events} == {
        "listener test_listeners_run_in_their_own_tasks_in_the_order_sent.<locals>.listen"
    }
    completed = [done for kind, done, _ in events if kind == "completed"]
    assert completed == [1, 2, 3, 4]  # each with the count as of its own event
