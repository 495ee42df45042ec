"""Alone or shared: the one seam where a run differs by mode (STYLE.md point 12).

A run is one process on its folder (`Alone`), or one worker of a run that
several share through a coordinator (`Shared`, docs/distributed.md). The
two differ in four things, and only there:

    limits   Alone: a RateGate seeded with the folder's last window of calls
             (CallLog) and a CreditGuard that counts the folder's earlier spend;
             Shared: runner.coordination's gate and guard, in Redis
    work     Alone: the manifest's jobs, lazily, each through the resume
             decision (runner/resume.py), re-attachable ones first;
             Shared: the claim source (each claimed job through the same decision)
    planned  Alone: the manifest's (or shard's) job count; Shared: unknown
    ending   Alone: the scheduler's stop; Shared: that, a lost coordinator,
             or another worker's credit stop

`open_mode` builds the one that fits, once; runner/run.py composes it with
the scheduler and never asks which it got. The single-process run does not
import runner.coordination.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from runner.cache import Cache, record_cached
from runner.errors import UsageError
from runner.jobs import Job
from runner.manifest import Manifest
from runner.money import Micros, total
from runner.reporting.exit_codes import StopKind
from runner.resume import (
    Reattach,
    Rules,
    Skip,
    Submit,
    apply,
    batch_message,
    decide,
    look,
    settle_killed_submits,
    work_item,
)
from runner.scheduling.credits import CreditGuard, Credits
from runner.scheduling.rate import RateGate, RateLimit
from runner.scheduling.scheduler import Scheduler, SchedulerConfig, WorkItem, rate_info
from runner.scheduling.source import IterSource, WorkSource
from runner.store import JobRow, Ledger
from runner.store.calls import CallLog
from runner.store.learned_rate import LearnedRate, load_learned, save_learned
from runner.sweep import expand

if TYPE_CHECKING:
    from runner.coordination import Coordination

INTERRUPTED: Final = "interrupted"
"""The stop reason of a Ctrl-C or SIGTERM (runner/run.py asks the scheduler to stop so)."""
_LOOKUP_BATCH: Final = 500


@dataclass(frozen=True, slots=True)
class Setting:
    """What either mode needs of the run. `budget` in micro-dollars (None: no cap)."""

    manifest: Manifest
    jobs: Callable[[], Iterator[Job]]  # this run's jobs (a shard's), lazily, in order
    count: Callable[[], int]  # how many `jobs` yields
    out: Path
    base_url: str
    api_key: str | None
    budget: Micros | None
    config: SchedulerConfig
    rules: Rules
    wall: Callable[[], float]  # wall-clock epoch seconds
    coordinator: str | None = None  # Redis URL: a shared run
    run_id: str | None = None
    sharded: bool = False
    cache: Cache | None = None  # --cache: finished jobs shared across folders (runner/cache.py)


@dataclass(frozen=True, slots=True)
class Ending:
    """Why a run stopped early: the exit code's kind of stop (None: none) and its text."""

    kind: StopKind | None
    reason: str | None


def ending(reason: str | None, *, lost: str | None, credit_stop: str | None) -> Ending:
    """The stop of a run that ended for `reason` (None: it ran out of work). Pure.

    An interrupt wins over a lost coordinator, which wins over the credit
    guard's stop (`credit_stop`: its reason, or None).
    """
    if reason == INTERRUPTED:
        return Ending("interrupted", reason)
    if lost is not None:
        return Ending("error", reason)
    if credit_stop is not None:
        return Ending("credits", reason)
    return Ending(None, reason)


class Mode(Protocol):
    """How a run gets its limits and its work, and how it ended; see the module docstring."""

    @property
    def whole(self) -> bool:
        """Whether the run answers for every job of its manifest (or shard): not a worker's."""
        ...

    def limits(self, ledger: Ledger) -> tuple[RateLimit, Credits]:
        """The rate gate and credit guard of the run (called once, the ledger open)."""
        ...

    def planned(self) -> int | None:
        """How many jobs the run will go through, when known."""
        ...

    async def work(
        self, ledger: Ledger, scheduler: Scheduler, guard: Credits
    ) -> Iterable[WorkItem] | WorkSource:
        """What the scheduler runs; skipped jobs are counted with `scheduler.skipped`."""
        ...

    def ending(self, scheduler: Scheduler, guard: Credits) -> Ending:
        """Why the run stopped, once the scheduler returned."""
        ...

    async def finished_elsewhere(self, ledger: Ledger) -> Mapping[str, int]:
        """Jobs unfinished in this folder that another worker finished, by folder state.

        They count as done for the exit code (runner/reporting/exit_codes.py
        gets the folder's counts less these). Alone: none.
        """
        ...


@asynccontextmanager
async def open_mode(setting: Setting) -> AsyncIterator[Mode]:
    """The run's mode: shared when a coordinator is named (joined here), else alone.

    Raises UsageError when the coordinator cannot be used, or with a shard.
    """
    if setting.coordinator is None:
        alone = Alone(setting)
        try:
            yield alone
        finally:
            alone.close()
        return
    if setting.sharded:
        raise UsageError("--shard and --coordinator do not mix: workers of a run claim jobs")
    if setting.cache is not None:
        raise UsageError("--cache and --coordinator do not mix yet: run the cached jobs alone")
    from runner.coordination import DEFAULT_LEASE_S, CoordinatorSpec, join_run

    manifest = setting.manifest
    lease = manifest.coordinator.lease if manifest.coordinator else None
    spec = CoordinatorSpec(setting.coordinator, setting.run_id, lease or DEFAULT_LEASE_S)
    async with join_run(
        spec,
        manifest=manifest,
        jobs=list(expand(manifest)),
        budget=setting.budget,
        config=setting.config,
        base_url=setting.base_url,
        api_key=setting.api_key,
        out=setting.out,
        prices=manifest.prices,
    ) as coord:
        yield Shared(setting, coord)


class Alone:
    """One process on its folder: implements `Mode`."""

    whole = True

    def __init__(self, setting: Setting) -> None:
        self._setting = setting
        self._calls: CallLog | None = None
        self._gate: RateGate | None = None

    def limits(self, ledger: Ledger) -> tuple[RateLimit, Credits]:
        s = self._setting
        guard = CreditGuard(s.budget, s.manifest.prices)
        settle_killed_submits(ledger, s.config.max_submits_in_flight)
        # The budget covers the folder, not one invocation: a resumed run
        # does not get a fresh allowance, and what earlier runs may have
        # been billed for (lost answers, crashes mid-submit) counts too.
        guard.add_spent(
            total(t.charged for t in ledger.totals().values()),
            possible=ledger.possible_extra_spend(s.config.max_submits_in_flight),
        )
        gate, self._calls = _local_gate(s.out, s.config, s.wall, ledger.unanswered_sends)
        self._gate = gate
        return gate, guard

    def planned(self) -> int:
        return self._setting.count()

    async def work(self, ledger: Ledger, scheduler: Scheduler, guard: Credits) -> WorkSource:
        return IterSource(_local_items(self._setting, ledger, scheduler, guard))

    def ending(self, scheduler: Scheduler, guard: Credits) -> Ending:
        return ending(scheduler.stop_reason, lost=None, credit_stop=guard.stats().stopped)

    async def finished_elsewhere(self, ledger: Ledger) -> Mapping[str, int]:
        return {}

    def close(self) -> None:
        """Close the call log and keep what the gate learned (the run is over)."""
        if self._calls is not None:
            self._calls.close()
        if self._gate is not None:
            rate = rate_info(self._gate, config=self._setting.config)
            if rate is not None:
                save_learned(self._setting.out, LearnedRate(**asdict(rate)))


class Shared:
    """One worker of a shared run: implements `Mode` over runner.coordination."""

    # A worker reports the jobs it ran (its folder), not the manifest's.
    whole = False

    def __init__(self, setting: Setting, coord: Coordination) -> None:
        self._setting = setting
        self._coord = coord

    def limits(self, ledger: Ledger) -> tuple[RateLimit, Credits]:
        # The shared budget lives in Redis and already counts every worker's spend.
        return self._coord.gate, self._coord.guard

    def planned(self) -> None:
        # A worker does the share it claims: no count to plan.
        return None

    async def work(self, ledger: Ledger, scheduler: Scheduler, guard: Credits) -> WorkSource:
        from runner.coordination.handover import HandoverRules

        s = self._setting
        rules = HandoverRules(
            out=s.out,
            base_url=s.base_url,
            pattern=s.manifest.output.pattern,
            retention=s.rules.retention,
            retry_failed=s.rules.retry_failed,
            resubmit_expired=s.rules.resubmit_expired,
        )
        return await self._coord.work(
            ledger, rules, skip=scheduler.skipped, stop=scheduler.request_stop, wall=s.wall
        )

    def ending(self, scheduler: Scheduler, guard: Credits) -> Ending:
        coord = self._coord
        lost = coord.lost
        # Another worker's credit stop reaches this one through the claims.
        other = coord.source.stop_reason if coord.source is not None else None
        reason = scheduler.stop_reason or lost or other
        return ending(reason, lost=lost, credit_stop=guard.stats().stopped)

    async def finished_elsewhere(self, ledger: Ledger) -> Mapping[str, int]:
        # A job this worker lost to a taker (it stalled past its lease) ended
        # in the run's record: done, for this worker's exit code too.
        return await self._coord.finished_elsewhere(ledger)


def _local_items(
    setting: Setting, ledger: Ledger, scheduler: Scheduler, guard: Credits
) -> Iterator[WorkItem | None]:
    """The single-process run's work, lazily: every job through the resume decision.

    Jobs an earlier run submitted and the server still keeps come first,
    before any new submit: their results expire. They are found from the
    ledger's rows: the walk of the sweep stops at the last of them (the
    earlier run walked that far already), never at the manifest's end. Then
    every other job, its rows read in batches. None marks a batch boundary
    (see `IterSource`).
    """
    taken: set[str] = set()
    yield from _reattachments(setting, ledger, guard, taken)
    yield from _the_rest(setting, ledger, scheduler, guard, taken)


def _reattachments(
    s: Setting, ledger: Ledger, guard: Credits, taken: set[str]
) -> Iterator[WorkItem | None]:
    """The jobs an earlier run left submitted, re-attached (their keys added to `taken`)."""
    pattern = s.manifest.output.pattern
    flying = {
        row.key: row for row in ledger.in_flight() if row.state == "submitted" and row.request_id
    }
    if not flying:
        return
    last, seen = max(row.idx for row in flying.values()), 0
    for job in s.jobs():
        if job.index > last or seen == len(flying):
            break
        if job.index % _LOOKUP_BATCH == 0:
            yield None
        row = flying.get(job.key)
        if row is None:
            continue
        seen += 1
        now = s.wall()
        action = decide(row, look(s.out, job, pattern, row, None), None, now, s.rules)
        if isinstance(action, Reattach):  # the rest is decided in the second pass
            taken.add(job.key)
            apply(action, job, ledger, estimate=guard.estimate(job), now=now)
            yield work_item(job, action, s.base_url)


def _the_rest(
    s: Setting, ledger: Ledger, scheduler: Scheduler, guard: Credits, taken: set[str]
) -> Iterator[WorkItem | None]:
    """Every job not in `taken`, its row read in batches, through the resume decision."""
    pattern = s.manifest.output.pattern
    jobs = s.jobs()
    # Skipped jobs are told in one event per batch (and before any item
    # goes out), not one each: at 100,000 finished jobs an event, its stats
    # snapshot and its JSON line per job cost more than the walk itself.
    skipped: Counter[str] = Counter()

    def tell_skipped() -> None:
        if skipped:
            scheduler.skipped(None, batch_message(skipped), count=skipped.total())
            skipped.clear()

    while batch := list(itertools.islice(jobs, _LOOKUP_BATCH)):
        tell_skipped()
        yield None
        rows = ledger.get_many(job.key for job in batch)
        for job in batch:
            if job.key in taken:
                continue
            row = rows.get(job.key)
            now = s.wall()
            action = decide(row, look(s.out, job, pattern, row, None), None, now, s.rules)
            if action.moves:  # most finished jobs have none: no estimate to work out
                apply(action, job, ledger, estimate=guard.estimate(job), now=now)
            if isinstance(action, Submit) and _served_from_cache(s, ledger, job, row, action):
                scheduler.cached(job)
            elif isinstance(action, Skip):
                skipped[action.message] += 1
            else:
                tell_skipped()
                yield work_item(job, action, s.base_url)
    tell_skipped()


def _served_from_cache(
    s: Setting, ledger: Ledger, job: Job, row: JobRow | None, action: Submit
) -> bool:
    """The cache seam: a job about to be submitted whose verified images the cache has."""
    if s.cache is None:
        return False
    served = s.cache.serve(job, s.out, s.manifest.output.pattern)
    if served is None:
        return False
    known = row is not None or "plan" in action.moves
    record_cached(ledger, job, known=known, served=served, at=s.wall())
    return True


def sends_left_on_the_wire(unanswered: Sequence[float], now: float, span: float) -> list[float]:
    """Ages in seconds (0: `now`) of the billed sends with no answer journalled that went
    out in the last `span` seconds: a killed run's calls on the wire. Pure.

    `unanswered` is what the ledger's open read from the journal, once
    (`Ledger.unanswered_sends`: wall-clock epoch seconds). calls.log has a
    call once it ended, so without these a run resumed after a kill would not
    count up to max_submits_in_flight calls the server did count. Each is
    aged from when it went out: the server saw it then, within the gate's
    margin of transit. A send refused (429, 5xx) has no answer journalled
    either and is in calls.log too: counted twice for one window, which only
    slows the restart.
    """
    return [now - at for at in unanswered if 0 <= now - at <= span]


def _local_gate(
    out: Path, config: SchedulerConfig, wall: Callable[[], float], unanswered: Sequence[float]
) -> tuple[RateGate, CallLog]:
    """The single-process rate gate, seeded with the folder's last window of calls
    and the sends `unanswered` (see `sends_left_on_the_wire`).

    The folder remembers its calls, so a resumed run (after a crash or a
    Ctrl-C) does not start with a fresh allowance the server would refuse.
    """
    now = wall()
    calls = CallLog(out, now=now)
    # What an earlier run learned is the starting belief (its window rescaled).
    earlier = load_learned(out)
    learned = None
    if earlier is not None and earlier.learned and earlier.limit is not None:
        learned = (earlier.limit, earlier.window_s * config.window / 60.0)
    gate = RateGate(
        config.rpm,
        config.window,
        margin=config.margin,
        model=config.rate_model,
        history=calls.ages(config.window + config.margin, now)
        + sends_left_on_the_wire(unanswered, now, config.window + config.margin),
        on_finished=lambda: calls.append(wall()),
        auto=config.rpm_auto,
        learned=learned,
        seed=config.seed,
    )
    return gate, calls
