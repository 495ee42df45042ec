"""Polling that learns: the scout, brackets, and the issue-12 targets against the emulator.

The targets (issue 12) are checked on runs against the in-process emulator on
trio's virtual clock, counted from the emulator's own log: API calls per job
(submit, status, result), polls per job (status and result calls up to the
one that found the job done) and the detection delay (the time from the
job's end, on the server, to the first call that came after it, as a share
of the job's latency), for the jobs submitted once 5 jobs had been found
done. No wall-clock time is asserted.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.testing
from polling_helpers import seen_by_the_server

from runner.backends.base import Metrics
from runner.emulator import InProcess, Latency
from runner.run import RunOptions, run_manifest
from runner.scheduling.inflight import InFlightCap, auto_cap
from runner.scheduling.latency import observed
from runner.scheduling.polling import Polling, PollPolicy
from tests.scheduling.test_scheduler import make_manifest

pytestmark = pytest.mark.anyio

# The store writes in a worker thread; with a zero autojump threshold the
# virtual clock would jump during each write and a job's first poll would
# wait for the next rate window: conftest.thread_aware_clock never jumps while
# a thread runs.
REAL_IDLE = pytest.mark.store_threads


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """An output folder in memory where there is one (/dev/shm), else tmp_path.

    On the virtual clock a job's first poll waits for its `submitted` row to
    be committed (in a worker thread), which the clock waits for (REAL_IDLE):
    a faster disk is a faster test.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="runner-poll-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- the decision -----------------------------------------------------------------


def test_a_stated_latency_inside_the_bracket_is_exact_outside_it_is_ignored() -> None:
    assert observed(4.0, 8.0, stated=6.0, inference=5.0) == observed(
        6.0, 6.0, stated=None, inference=None
    )
    # inference_time alone is no latency, but a job computed that long at least.
    seen = observed(0.0, 8.0, stated=None, inference=5.0)
    assert (seen.lo, seen.hi) == (5.0, 8.0)
    # A stated time the polls contradict (a clock of its own, a lie) is not believed.
    seen = observed(4.0, 8.0, stated=30.0, inference=None)
    assert (seen.lo, seen.hi) == (4.0, 8.0)


async def test_one_scout_polls_while_the_others_wait_for_what_it_teaches() -> None:
    polling = Polling(PollPolicy(prior=10.0, jitter=0.0), random.Random(1))
    scout, other = polling.job(), polling.job()
    assert await scout.next_age(0.0) == 1.25  # the prior x 1/8
    waited: list[float] = []

    async def wait_for_the_scout() -> None:
        waited.append(await other.next_age(0.0))
        waited.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for_the_scout)
        for sent in (1.25, 2.5, 5.0):
            await anyio.lowlevel.checkpoint()
            assert not waited  # still waiting: nothing is known yet
            scout.not_done(sent, "PROCESSING")
            assert await scout.next_age(sent) == sent * 2
        await anyio.sleep(3.0)
        scout.done(10.0, Metrics(total_time=9.0))
    # It polls at once where the model says most jobs are done: an exact 9 s,
    # at most 7.5 % late (latency.first_poll).
    age, when = waited
    assert 9.0 <= age <= 9.0 * 1.075
    assert when == pytest.approx(3.0)


async def test_a_scout_that_ends_without_teaching_hands_its_role_on() -> None:
    polling = Polling(PollPolicy(prior=10.0, jitter=0.0), random.Random(1))
    first, second = polling.job(), polling.job()
    await first.next_age(0.0)
    ages: list[float] = []

    async def take_over() -> None:
        ages.append(await second.next_age(3.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(take_over)
        await anyio.lowlevel.checkpoint()
        first.close()  # failed, lost: it taught nothing
    # The next point of the geometric schedule after its own age, not 1.25 again.
    assert ages == [5.0]


async def test_no_poll_is_placed_past_the_retention_share_scout_waiter_or_model() -> None:
    # A server that keeps jobs 100 s: nothing is asked later than 98 s, whatever the step.
    polling = Polling(PollPolicy(prior=10.0, jitter=0.0), random.Random(1), retention=100.0)
    scout, waiter, late = polling.job(), polling.job(), polling.job()
    # The scout's role taken late (a re-attached job): the next geometric
    # point after 90 s would be 160 s.
    assert await scout.next_age(90.0) == 98.0
    # Past the share already: at once, not after the scout.
    assert await late.next_age(99.0) == 99.0
    # A job waiting for the scout waits no longer than the share.
    with anyio.fail_after(1000.0):  # (without the bound: for ever)
        assert await waiter.next_age(50.0) == 98.0
    assert anyio.current_time() == pytest.approx(48.0)
    # The model's step (15 s at most past a 60 s median) is bounded too.
    scout.done(60.0, Metrics(total_time=60.0))
    waiter.not_done(90.0, "PROCESSING")
    assert await waiter.next_age(90.0) == 98.0


def test_scale_shrinks_every_duration() -> None:
    timing = PollPolicy(prior=10.0, min_step=0.1, max_step=15.0, scale=0.01).timing()
    assert (timing.prior, timing.min_step, timing.max_step) == pytest.approx((0.1, 0.001, 0.15))


def test_auto_cap_follows_littles_law() -> None:
    assert auto_cap(10, 60.0, 12.0) == 12  # 10 x 12 / 60 in steady state + a window's burst
    assert auto_cap(50, 60.0, 60.0) == 100
    assert auto_cap(None, 60.0, 10.0) == 64
    assert auto_cap(1, 60.0, 0.0) == 2


def test_cap_blocks_until_release_and_can_grow() -> None:
    events: list[tuple[str, float]] = []

    async def main() -> None:
        cap = InFlightCap(1)
        await cap.acquire()

        async def second() -> None:
            await cap.acquire()
            events.append(("second", trio.current_time()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(second)
            await trio.sleep(5)
            cap.resize(2)
        assert cap.used == 2

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert events == [("second", 5.0)]


# -- the targets against the emulator -------------------------------------------------


@REAL_IDLE
@pytest.mark.parametrize(
    ("latency", "queue", "stated"),
    [
        pytest.param(10.0, None, True, id="prior-right"),
        pytest.param(2.0, None, True, id="prior-5x-too-long"),
        pytest.param(50.0, None, True, id="prior-5x-too-short"),
        # A QUEUED phase that inference_time does not cover, and no queue_time
        # or total_time: the polls' brackets, inference_time as a lower bound.
        pytest.param(5.0, 5.0, False, id="queue-not-stated"),
    ],
)
async def test_polling_meets_the_issue_12_targets(
    fast_dir: Path,
    make_emulator: Callable[..., InProcess],
    latency: float,
    queue: float | None,
    stated: bool,
) -> None:
    emu = make_emulator(
        latency=Latency("lognormal", latency, 0.25),
        queue_delay=Latency("lognormal", queue, 0.25) if queue else None,
        report_queue_time=stated,
        workers=64,
    )
    opts = RunOptions(backend="local", out=fast_dir / "out", time_scale=1.0, seed=1)
    report = await run_manifest(
        make_manifest(fast_dir, 150, rpm=30), opts, emulator=emu.emulator, env={}
    )
    assert report.stats.completed == 150
    seen = seen_by_the_server(emu)
    assert seen.measured >= 90
    assert seen.api_per_job <= 3.2
    assert seen.median_polls <= 1.5
    assert seen.median_delay <= 0.10
    # The emulator answers the result endpoint for a job in progress: one call a poll.
    assert seen.status_calls == 0


@REAL_IDLE
async def test_the_example_run_costs_fewer_calls_than_before(
    fast_dir: Path, make_emulator: Callable[..., InProcess]
) -> None:
    # manifests/example.yaml's shape: 6 jobs at once, 4 workers (two queue).
    # With status polling it cost 23 status + 6 result + 6 submit = 35 calls.
    emu = make_emulator()
    opts = RunOptions(backend="local", out=fast_dir / "out", time_scale=1.0, seed=1)
    report = await run_manifest(make_manifest(fast_dir, 6), opts, emulator=emu.emulator, env={})
    assert report.stats.completed == 6
    api = [c for c in emu.emulator.calls() if c.kind in ("submit", "status", "result")]
    assert len(api) < 35


async def test_a_result_endpoint_that_answers_only_finished_jobs_turns_polls_to_status(
    make_emulator: Callable[..., InProcess],
) -> None:
    from runner.backends.segmind import SegmindBackend
    from runner.emulator import EmulatorTransport, create_app
    from runner.errors import NotFound
    from tests.backends.backend_helpers import make_request

    emu = make_emulator(result_in_progress=False, latency=Latency("fixed", 10.0, 0.0))
    transport = EmulatorTransport(create_app(emu.emulator))
    async with SegmindBackend(
        "http://emulator.local", None, transport=transport, poll_via="result"
    ) as backend:
        submission = await backend.submit("grok-imagine-image", make_request())
        assert backend.polls_result
        with pytest.raises(NotFound):
            await backend.result(submission)
        assert not backend.polls_result  # from now on: status, then the result
        assert (await backend.status(submission)).state in ("QUEUED", "PROCESSING")
        await anyio.sleep(11.0)
        assert (await backend.status(submission)).state == "COMPLETED"
        assert (await backend.result(submission)).media
