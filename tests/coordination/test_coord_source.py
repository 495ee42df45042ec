"""The scheduler's side of the WorkSource contract, on the virtual clock (no Redis).

A recording source stands where the claimer plugs in: every item it hands
out gets exactly one `finished` with the outcome a claimer needs to
complete the job for the run or hand it back, `submitting` comes before the
submit goes out and `submitted` (with the request id) before the first poll.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio.testing
from coord_helpers import manifest_of

from runner.backends.base import Submission
from runner.backends.select import local_backend
from runner.emulator import InProcess
from runner.events import Event, RunStats
from runner.jobs import Job
from runner.money import maybe_micros
from runner.recorder import Recorder, RecorderConfig
from runner.scheduling.credits import CreditGuard
from runner.scheduling.scheduler import Scheduler, SchedulerConfig
from runner.scheduling.source import Outcome, WorkItem
from runner.store import Ledger
from runner.sweep import expand

pytestmark = pytest.mark.anyio

BLOCKED = '  - id: bad\n    prompt: "this is blocked content"\n'


@pytest.fixture
def anyio_backend() -> Any:
    """Back on trio's virtual clock: nothing here leaves the event loop."""
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


class RecordingSource:
    """Hands out `items` in order and records every note the scheduler makes."""

    def __init__(self, items: list[WorkItem]) -> None:
        self.items = items
        self.log: list[tuple[Any, ...]] = []

    async def next(self) -> WorkItem | None:
        return self.items.pop(0) if self.items else None

    async def after_stop(self) -> WorkItem | None:
        return None

    async def submitting(self, job: Job) -> None:
        self.log.append(("submitting", job.index))

    async def submitted(self, job: Job, submission: Submission, wall: float) -> None:
        self.log.append(("submitted", job.index, submission.request_id))

    async def finished(self, job: Job, outcome: Outcome) -> None:
        self.log.append(("finished", job.index, outcome))

    def outcomes(self) -> dict[int, Outcome]:
        ends = [entry for entry in self.log if entry[0] == "finished"]
        assert len(ends) == len({entry[1] for entry in ends}), "a job finished twice"
        return {entry[1]: entry[2] for entry in ends}


async def run_source(
    tmp_path: Path,
    emu: InProcess,
    jobs: int,
    *,
    budget: float | None = None,
    extra_prompts: str = "",
    on_event: Callable[[Scheduler, Event], None] | None = None,
) -> tuple[RecordingSource, Scheduler]:
    manifest = manifest_of(tmp_path, jobs, extra_prompts=extra_prompts)
    source = RecordingSource([WorkItem(job) for job in expand(manifest)])
    backend = local_backend(emulator=emu.emulator)
    with Ledger.open(tmp_path / "out", backend="local", base_url="http://emulator.local") as ledger:
        recorder = Recorder(
            ledger, RecorderConfig(out=tmp_path / "out", backend="local", base_url="x")
        )
        holder: list[Scheduler] = []

        def listen(event: Event, stats: RunStats) -> None:
            if on_event is not None:
                on_event(holder[0], event)

        scheduler = Scheduler(
            backend,
            recorder,
            CreditGuard(maybe_micros(budget)),
            SchedulerConfig(rpm=10, seed=1),
            listeners=[listen],
        )
        holder.append(scheduler)
        try:
            await scheduler.run(source)
        finally:
            await backend.aclose()
    return source, scheduler


async def test_each_job_finishes_once_with_its_outcome(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    source, _ = await run_source(tmp_path, make_emulator(), 4, extra_prompts=BLOCKED)
    outcomes = source.outcomes()
    assert outcomes == {0: "completed", 1: "completed", 2: "completed", 3: "completed", 4: "failed"}
    for index in outcomes:
        notes = [entry[0] for entry in source.log if entry[1] == index]
        assert notes == ["submitting", "submitted", "finished"]


async def test_a_budget_stop_hands_the_refused_job_back_and_pulls_no_more(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    source, scheduler = await run_source(tmp_path, make_emulator(), 10, budget=0.09)
    outcomes = source.outcomes()
    assert list(outcomes.values()).count("completed") == 4
    assert outcomes[4] == "unsent"  # pulled, refused by the guard, handed back unsent
    assert len(source.items) == 5  # never pulled
    assert scheduler.stop_reason is not None and "budget" in scheduler.stop_reason


async def test_a_406_hands_back_the_refused_submit_as_unsent(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    source, _ = await run_source(tmp_path, make_emulator(credits=0.07), 6)
    outcomes = source.outcomes()
    assert list(outcomes.values()).count("completed") == 3
    assert set(outcomes.values()) == {"completed", "unsent"}


async def test_an_interrupt_leaves_submitted_jobs_to_be_taken_over(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    def interrupt_after_first_submit(scheduler: Scheduler, event: Event) -> None:
        if event.kind == "submitted":
            scheduler.request_stop("interrupted", abandon_polls=True)

    source, _ = await run_source(
        tmp_path, make_emulator(), 6, on_event=interrupt_after_first_submit
    )
    outcomes = source.outcomes()
    submitted = {entry[1] for entry in source.log if entry[0] == "submitted"}
    assert submitted  # at least the one that triggered the stop
    for index, outcome in outcomes.items():
        # A job the server accepted is left (with its request id) for a taker,
        # one that never went out is handed back as it was.
        assert outcome == ("left" if index in submitted else "unsent")
