"""Polling once nothing is left to start: a batch that fits in one window ends with its
last job's detection, so a first poll goes where every job seen so far was done.

The decision on its own (no clock, or anyio's for the waits), then whole runs
against the in-process emulator on trio's virtual clock, polled by status (a
remote host), every figure counted from the emulator's own log. No wall-clock
time is asserted.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from runner.backends.base import Metrics
from runner.emulator import InProcess, Latency
from runner.run import RunOptions, run_manifest
from runner.scheduling.latency import LatencyModel, PollTiming, first_poll
from runner.scheduling.polling import Polling, PollPolicy
from tests.scheduling.test_polling import REAL_IDLE, fast_dir
from tests.scheduling.test_scheduler import make_manifest

pytestmark = pytest.mark.anyio

__all__ = ["fast_dir"]  # the fixture, used by name


# -- the decision -----------------------------------------------------------------


def model_of(latencies: list[float]) -> LatencyModel:
    model = LatencyModel(PollTiming(prior=10.0), size=128)
    for latency in latencies:
        model.observe(latency, latency)
    return model


def test_the_first_poll_is_capped_where_every_job_was_done_from_20_jobs_or_at_the_end() -> None:
    # Every job takes 10 s: 1.075 x the 45th percentile would be 7.5 % late.
    few, many = model_of([10.0] * 19), model_of([10.0] * 20)
    assert first_poll(few) == pytest.approx(10.0 * 1.075, rel=0.02)
    assert first_poll(few, last=True) == 10.0
    assert first_poll(many) == 10.0
    # A job still running past every latency seen lifts the cap: they are slower.
    many.running((10.5,))
    assert first_poll(many) == pytest.approx(10.0 * 1.075, rel=0.02)


def test_the_cap_leaves_a_spread_of_sigma_005_alone() -> None:
    rng = random.Random(5)
    model = model_of([10.0 * math.exp(rng.gauss(0.0, 0.05)) for _ in range(60)])
    margin = model.quantile(0.45) * 1.075
    assert model.all_done_by() > margin  # the largest of 60 is past the margin
    assert first_poll(model) == first_poll(model, last=True) == margin


async def test_once_drained_a_waiting_job_polls_at_what_the_scout_saw_done() -> None:
    polling = Polling(PollPolicy(prior=10.0, jitter=0.0), random.Random(1))
    scout, other = polling.job(), polling.job()
    polling.drained()
    assert await scout.next_age(0.0) == 1.25
    ages: list[float] = []

    async def wait_for_the_scout() -> None:
        ages.append(await other.next_age(0.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for_the_scout)
        await anyio.lowlevel.checkpoint()
        for sent in (1.25, 2.5, 5.0):
            scout.not_done(sent, "PROCESSING")
        # The status says COMPLETED at 10.02 s (inference 10 s): taught before
        # the result call, which here is never made.
        scout.completed(10.02, Metrics(inference_time=10.0))
    assert ages == [10.02]
    # The result's stated latency narrows what the status taught.
    scout.done(10.02, Metrics(total_time=10.0))
    assert polling.model.all_done_by() == 10.0
    assert polling.model.count == 1


# -- whole runs against the emulator ----------------------------------------------


def detections(emu: InProcess) -> list[tuple[float, float, int]]:
    """(submitted, found done, status calls) of each job, server clock."""
    server = emu.emulator
    status_of: dict[str | None, list[float]] = {}
    for c in server.calls("status"):
        status_of.setdefault(c.request_id, []).append(c.time)
    rows = []
    for job in server.accepted_submits():
        times = sorted(status_of.get(job.request_id, []))
        found = next(t for t in times if t >= job.finished_at)
        rows.append((job.submitted_at, found - job.finished_at, len(times)))
    return rows


@REAL_IDLE
@pytest.mark.parametrize("scope", ["submit", "all"])
async def test_a_batch_in_one_window_ends_at_its_last_jobs_latency(
    fast_dir: Path, make_emulator: Callable[..., InProcess], scope: str
) -> None:
    # 15 jobs of exactly 10 s under 50 a minute: the whole batch in the first
    # window, submitted at once, and known only from the scout.
    emu = make_emulator(latency=Latency("fixed", 10.0, 0.0), workers=64, result_in_progress=False)
    opts = RunOptions(backend="local", out=fast_dir / "out", time_scale=1.0, seed=1)
    manifest = make_manifest(fast_dir, 15, rpm=50, rate_scope=scope)
    report = await run_manifest(manifest, opts, emulator=emu.emulator, env={})
    assert report.stats.completed == 15
    rows = sorted(detections(emu), key=lambda r: r[2])
    # The scout: its geometric schedule from the prior (1.25, 2.5, 5, 10 s).
    assert rows[-1][2] == 4
    # Every other job: one status call, made at the age the scout was seen
    # done (before: at 1.075 x it, 0.75 s late), so no extra call either.
    assert [r[2] for r in rows[:-1]] == [1] * 14
    assert max(r[1] for r in rows) <= 0.01 * 10.0
    # No 429, whatever the scope: 15 x 3 calls + the balance call fit in 50.
    assert not [c for c in emu.emulator.calls() if c.status == 429]


@REAL_IDLE
async def test_a_batch_paced_by_the_rate_is_not_in_its_end_game_while_submits_wait(
    fast_dir: Path, make_emulator: Callable[..., InProcess]
) -> None:
    # 12 jobs dispatched at once (the in-flight cap holds them all) but sent
    # one every 5 s (12 a minute, smooth): while submits are still to come
    # the first polls keep their margin, a poll more would not shorten the run.
    emu = make_emulator(latency=Latency("fixed", 12.0, 0.0), workers=64, result_in_progress=False)
    opts = RunOptions(backend="local", out=fast_dir / "out", time_scale=1.0, seed=1)
    manifest = make_manifest(fast_dir, 12, rpm=12, rate_model="smooth")
    report = await run_manifest(manifest, opts, emulator=emu.emulator, env={})
    assert report.stats.completed == 12
    rows = sorted(detections(emu))
    assert rows[0][2] == 5  # the scout: 1.25, 2.5, 5, 10, 20 s
