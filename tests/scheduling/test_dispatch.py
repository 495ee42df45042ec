"""The dispatcher walks its limits as a list: wait in order, started, finished in reverse.

The limits and the job runner here are small implementations of the
dispatcher's protocols that record what they are told; the stop, the source
feed and the credit guard are the real ones. Virtual clock (conftest).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from whole_runs import jobs_manifest

from runner.jobs import Job
from runner.money import micros
from runner.scheduling.credits import CreditGuard
from runner.scheduling.dispatch import CreditLimit, Dispatcher, InFlightLimit
from runner.scheduling.inflight import InFlightCap
from runner.scheduling.source import IterSource, Outcome, SourceFeed, WorkItem
from runner.scheduling.stop import Stop
from runner.sweep import expand

pytestmark = pytest.mark.anyio


def jobs(tmp_path: Path, count: int) -> list[Job]:
    return list(expand(jobs_manifest(tmp_path, count, prefix="t")))


class Recording:
    """A limit that logs every call; it refuses the item at `refuse` (and stops the run)."""

    def __init__(self, name: str, log: list[str], stop: Stop, refuse: int | None = None) -> None:
        self.name, self.log, self.stop, self.refuse = name, log, stop, refuse

    async def wait(self, item: WorkItem) -> bool:
        self.log.append(f"{self.name}.wait {item.job.index}")
        if item.job.index == self.refuse:
            self.stop.request(f"{self.name} is full", hold_submits=False)
            return False
        return True

    def started(self, item: WorkItem) -> None:
        self.log.append(f"{self.name}.started {item.job.index}")

    async def finished(self, item: WorkItem, *, ran: bool) -> None:
        self.log.append(f"{self.name}.finished {item.job.index} {'ran' if ran else 'unrun'}")


class Runner:
    """Runs a job by sleeping a second; logs it."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def run_job(self, item: WorkItem) -> None:
        self.log.append(f"run {item.job.index}")
        await anyio.sleep(1.0)


class Source(IterSource):
    """The single-process source, recording how each job left."""

    def __init__(self, items: list[WorkItem]) -> None:
        super().__init__(items)
        self.ends: dict[int, Outcome] = {}

    async def finished(self, job: Job, outcome: Outcome) -> None:
        self.ends[job.index] = outcome


async def dispatch(dispatcher: Dispatcher) -> None:
    async with anyio.create_task_group() as tg:
        await dispatcher.dispatch(tg)


async def test_limits_are_waited_in_order_and_finished_in_reverse(tmp_path: Path) -> None:
    log: list[str] = []
    stop = Stop(lambda reason: None)
    limits = [Recording("a", log, stop), Recording("b", log, stop)]
    source = Source([WorkItem(job) for job in jobs(tmp_path, 1)])
    await dispatch(Dispatcher(stop, limits, Runner(log), SourceFeed(source)))
    assert log == [
        "a.wait 0",
        "b.wait 0",
        "a.started 0",
        "b.started 0",
        "run 0",
        "b.finished 0 ran",
        "a.finished 0 ran",
    ]


async def test_a_refusing_limit_gives_back_what_the_earlier_ones_took_and_stops(
    tmp_path: Path,
) -> None:
    log: list[str] = []
    stopping: list[str] = []
    stop = Stop(stopping.append)
    limits = [Recording("a", log, stop), Recording("b", log, stop, refuse=1)]
    source = Source([WorkItem(job) for job in jobs(tmp_path, 4)])
    await dispatch(Dispatcher(stop, limits, Runner(log), SourceFeed(source)))
    item_1 = [line for line in log if line.endswith((" 1", " 1 ran", " 1 unrun"))]
    assert item_1 == ["a.wait 1", "b.wait 1", "a.finished 1 unrun"]
    assert stopping == ["b is full"]
    assert source.ends == {1: "unsent"}  # the job runner tells the source of job 0
    assert "a.wait 2" not in log  # nothing more was pulled


async def test_the_cap_and_the_guard_as_limits(tmp_path: Path) -> None:
    """Two places in flight, a budget for three jobs of $0.02: three run, two at a time."""
    stop = Stop(lambda reason: None)
    guard = CreditGuard(micros(0.07))
    cap = InFlightCap(2)
    peak = 0

    class Watch(Runner):
        async def run_job(self, item: WorkItem) -> None:
            nonlocal peak
            peak = max(peak, cap.used)
            await anyio.sleep(1.0)
            await guard.settle(item.job.key, None)

    credit = CreditLimit(guard, stop)
    source = Source([WorkItem(job) for job in jobs(tmp_path, 5)])
    started = anyio.current_time()
    await dispatch(Dispatcher(stop, [credit, InFlightLimit(cap)], Watch([]), SourceFeed(source)))
    assert peak == 2
    assert cap.used == 0
    assert anyio.current_time() - started == pytest.approx(2.0)  # 2 + 1 jobs of 1 s
    assert guard.stats().spent == micros(0.06)
    assert guard.stats().reserved == 0
    assert stop.state.reason is not None and "credit budget reached" in stop.state.reason
    assert source.ends == {3: "unsent"}
