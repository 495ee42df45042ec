"""`runner run`: a manifest's jobs through the scheduler into the output folder.

This module wires the parts: it picks the backend, opens the folder's
ledger, decides for each job whether to skip, re-attach or submit it
(resume), runs the scheduler with the budget's limits, and reports. The
parts themselves know nothing of each other.

Resume rules (docs/store.md): completed jobs whose files are there are
skipped; jobs submitted by an earlier run and younger than the server's
retention are re-attached by polling their request id, first, before any new
submit (their results expire); older ones are marked expired and submitted
again only with `resubmit_expired`; failed ones only with `retry_failed`; a
job whose images and sidecars are all on disk but whose ledger row was not
committed (a crash) is recorded completed.
"""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from runner.backends.base import Backend, submission_for
from runner.backends.segmind import Timeouts
from runner.backends.select import BackendChoice, Choice, choose_backend, open_backend
from runner.errors import RunnerError, UsageError
from runner.events import Listener, RunStats
from runner.jobs import Job
from runner.manifest import Manifest
from runner.plan import make_plan
from runner.recorder import Recorder, RecorderConfig
from runner.scheduling.credits import CreditGuard, Credits
from runner.scheduling.polling import PollPolicy
from runner.scheduling.rate import RateGate, RateLimit
from runner.scheduling.retry import RetryPolicy
from runner.scheduling.scheduler import Scheduler, SchedulerConfig, WorkItem
from runner.scheduling.source import WorkSource
from runner.shard import Shard
from runner.store import JobRow, Ledger, finished_files, remove_temp_files
from runner.store.calls import CallLog
from runner.sweep import count_jobs, expand

if TYPE_CHECKING:
    from runner.coordination import Coordination
    from runner.coordination.handover import HandoverRules
    from runner.emulator import Emulator, EmulatorConfig

# The embedded emulator runs ten times faster than Segmind: a "10 s" job takes
# 1 s and a rate window 6 s, so a demo run shows real pacing without the wait.
LOCAL_TIME_SCALE = 0.1
RETENTION_S = 3600.0
_LOOKUP_BATCH = 500


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Command-line choices of `runner run`; None means the manifest's value or the default."""

    backend: Choice = "auto"
    base_url: str | None = None
    out: Path | None = None
    max_credits: float | None = None
    rpm: int | None = None
    max_in_flight: int | None = None
    shard: Shard | None = None
    resubmit_expired: bool = False
    retry_failed: bool = False
    fresh: bool = False
    time_scale: float | None = None
    seed: int | None = None
    handle_signals: bool = False
    argv: tuple[str, ...] = ()
    # Several workers on one run (docs/distributed.md): Redis URL, run id.
    coordinator: str | None = None
    run_id: str | None = None
    # --provider, when given (the manifest was loaded with it; resume repeats it).
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class RunReport:
    """What a run did: this run's stats, the folder's ledger counts, and why it stopped."""

    stats: RunStats
    out: Path
    backend: str
    base_url: str
    counts: Mapping[str, int]
    interrupted: bool
    credit_stopped: bool
    stop_reason: str | None
    notices: tuple[str, ...] = ()
    balance: float | None = None
    resume_command: str = ""
    extra: Mapping[str, object] = field(default_factory=dict)
    # A shared run: its coordinator (URL without password); why it was lost mid-run.
    coordinator: str | None = None
    coordinator_lost: str | None = None


def output_dir(manifest: Manifest, options: RunOptions) -> Path:
    """The run's output folder: --out, else the manifest's output.dir."""
    if options.out is not None:
        return options.out
    return Path(manifest.output.dir)


def resume_command(manifest: Manifest, options: RunOptions) -> str:
    """The command that continues this run (no secrets: the key stays in the environment)."""
    parts = ["runner", "run", str(manifest.path)]
    if options.out is not None:
        parts += ["--out", str(options.out)]
    if options.backend != "auto":
        parts += ["--backend", options.backend]
    if options.provider:
        parts += ["--provider", options.provider]
    if options.base_url:
        parts += ["--base-url", options.base_url]
    if options.shard is not None:
        parts += ["--shard", f"{options.shard.index}/{options.shard.count}"]
    if options.run_id:
        parts += ["--run-id", options.run_id]
    if options.coordinator:
        from runner.coordination import redact_url

        if redact_url(options.coordinator) != options.coordinator:
            # Never print a password: name the variable that should hold the URL.
            return shlex.join(parts) + ' --coordinator "$RUNNER_COORDINATOR"'
        parts += ["--coordinator", options.coordinator]
    return shlex.join(parts)


def _scheduler_config(manifest: Manifest, options: RunOptions, scale: float) -> SchedulerConfig:
    budget = manifest.budget
    in_flight = options.max_in_flight
    if in_flight is None and isinstance(budget.max_in_flight, int):
        in_flight = budget.max_in_flight
    return SchedulerConfig(
        rpm=options.rpm or budget.requests_per_minute,
        rate_scope=budget.rate_scope,
        rate_model=budget.rate_model,
        window=60.0 * scale,
        margin=1.0 * scale,
        max_in_flight=in_flight,
        poll=replace(PollPolicy(), scale=scale),
        retry=replace(RetryPolicy(), scale=scale),
        retention=RETENTION_S * scale,
        seed=options.seed,
    )


def run_jobs(manifest: Manifest, shard: Shard | None) -> Iterator[Job]:
    """The jobs of a run, lazily, in the manifest's order (one shard's when given)."""
    jobs = expand(manifest)
    if shard is None:
        return jobs
    return (job for job in jobs if shard.owns(job.key))


def _planned(manifest: Manifest, shard: Shard | None) -> int:
    if shard is None:
        return count_jobs(manifest)
    return sum(1 for _ in run_jobs(manifest, shard))


class _Resume:
    """Decides, job by job, what this run does with what the ledger remembers."""

    def __init__(
        self,
        ledger: Ledger,
        out: Path,
        options: RunOptions,
        pattern: str | None,
        *,
        retention: float,
        wall: Callable[[], float],
    ) -> None:
        self._ledger = ledger
        self._out = out
        self._options = options
        self._pattern = pattern
        self._retention = retention
        self._wall = wall
        self.skipped: list[tuple[Job, str]] = []
        self.reattach_keys = {
            row.key: row
            for row in ledger.in_flight()
            if row.state == "submitted" and row.request_id
        }

    def reattach(self, jobs: Iterable[Job], base_url: str) -> Iterator[WorkItem]:
        """Pass 1: jobs an earlier run submitted and the server still keeps."""
        if not self.reattach_keys:
            return
        for job in jobs:
            row = self.reattach_keys.get(job.key)
            if row is None or row.request_id is None or row.submitted_at is None:
                continue
            files = finished_files(self._out, job, pattern=self._pattern)
            if files is not None:
                continue  # pass 2 records it
            if self._wall() - row.submitted_at >= self._retention:
                continue  # pass 2 marks it expired
            yield WorkItem(job, submission_for(base_url, row.request_id), row.submitted_at)

    def fresh(self, jobs: Iterable[Job], skip: Callable[[Job, str], None]) -> Iterator[WorkItem]:
        """Pass 2: every job not re-attached, skipped or submitted."""
        it = iter(jobs)
        while batch := list(itertools.islice(it, _LOOKUP_BATCH)):
            rows = self._ledger.get_many(job.key for job in batch)
            for job in batch:
                decision = self._decide(job, rows.get(job.key))
                if decision is None:
                    yield WorkItem(job)
                elif decision:
                    skip(job, decision)

    def _decide(self, job: Job, row: JobRow | None) -> str | None:
        """None: submit it; "": handled in pass 1; otherwise why it is skipped."""
        if row is None or row.state == "planned":
            return None
        opts = self._options
        if row.state == "completed":
            if finished_files(self._out, job, pattern=self._pattern) is not None:
                return "completed earlier"
            # Files gone or damaged: fetch again if the server still has it.
            if row.request_id and row.submitted_at and not self._too_old(row):
                self.reattach_keys[job.key] = row
                return "re-downloading"
            if not opts.resubmit_expired:
                self._ledger.lost(job.key)
                return "its files are gone and the server's copy expired (--resubmit-expired)"
            return None
        if row.state in ("submitting", "submitted"):
            files = finished_files(self._out, job, pattern=self._pattern)
            if files is not None:
                # A crash after the sidecars, before the ledger commit: it is done.
                self._ledger.completed(job.key, None, files, self._wall())
                return "completed earlier (recorded now)"
            if row.state == "submitting":
                return None  # its submit may or may not have reached the server
            if row.key in self.reattach_keys and not self._too_old(row):
                return ""
            self._ledger.expired(job.key)
            return (
                None if opts.resubmit_expired else "expired (--resubmit-expired submits it again)"
            )
        if row.state == "failed":
            return None if opts.retry_failed else f"failed earlier: {row.reason} (--retry-failed)"
        if row.state == "expired":
            return (
                None if opts.resubmit_expired else "expired (--resubmit-expired submits it again)"
            )
        return None

    def _too_old(self, row: JobRow) -> bool:
        return row.submitted_at is None or self._wall() - row.submitted_at >= self._retention


async def run_manifest(
    manifest: Manifest,
    options: RunOptions = RunOptions(),
    *,
    env: Mapping[str, str] | None = None,
    listeners: Iterable[Listener] = (),
    notice: Callable[[str], None] | None = None,
    emulator: Emulator | None = None,
    emulator_config: EmulatorConfig | None = None,
    wall: Callable[[], float] = time.time,
) -> RunReport:
    """Run a manifest to its end (or its stop) and return what happened.

    `env` defaults to os.environ (the key comes from SEGMIND_API_KEY). Pass
    `emulator` to run the local backend on an emulator a test inspects.
    Raises UsageError / AuthError (exit 2) and StoreError.
    """
    env = os.environ if env is None else env
    notices: list[str] = []

    def tell(text: str) -> None:
        notices.append(text)
        if notice is not None:
            notice(text)

    choice = choose_backend(
        options.backend,
        base_url_arg=options.base_url,
        manifest_base_url=manifest.api.base_url,
        env=env,
        provider=manifest.api.provider,
    )
    if choice.notice:
        tell(choice.notice)
    scale = options.time_scale or (LOCAL_TIME_SCALE if choice.kind == "local" else 1.0)
    config = _scheduler_config(manifest, options, scale)
    backend = _open(choice, emulator, emulator_config, config, scale)
    try:
        budget = options.max_credits
        if budget is None:
            budget = manifest.budget.max_credits
        async with _joined(manifest, options, choice, config, budget) as coord:
            ledger = Ledger.open(
                output_dir(manifest, options),
                backend=choice.kind,
                base_url=choice.base_url,
                fresh=options.fresh,
            )
            try:
                guard = coord.guard if coord else CreditGuard(budget, manifest.prices)
                run = _Run(manifest, options, choice, ledger, guard, coord)
                report = await run.go(backend, config, listeners, tell, wall)
                return replace(report, notices=tuple(notices))
            finally:
                ledger.close()
    finally:
        with anyio.CancelScope(shield=True):
            await backend.aclose()


@asynccontextmanager
async def _joined(
    manifest: Manifest,
    options: RunOptions,
    choice: BackendChoice,
    config: SchedulerConfig,
    budget: float | None,
) -> AsyncIterator[Coordination | None]:
    """This worker's membership of a shared run, when a coordinator is named; else None."""
    url = options.coordinator or (manifest.coordinator.url if manifest.coordinator else None)
    if url is None:
        yield None
        return
    from runner.coordination import DEFAULT_LEASE_S, CoordinatorSpec, join_run

    if options.shard is not None:
        raise UsageError("--shard and --coordinator do not mix: workers of a run claim jobs")
    lease = manifest.coordinator.lease if manifest.coordinator else None
    spec = CoordinatorSpec(url, options.run_id, lease or DEFAULT_LEASE_S)
    async with join_run(
        spec,
        manifest=manifest,
        jobs=list(expand(manifest)),
        budget=budget,
        config=config,
        base_url=choice.base_url,
        api_key=choice.api_key,
        out=output_dir(manifest, options),
        prices=manifest.prices,
    ) as coord:
        yield coord


def _open(
    choice: BackendChoice,
    emulator: Emulator | None,
    emulator_config: EmulatorConfig | None,
    config: SchedulerConfig,
    scale: float,
) -> Backend:
    # Deadlines bound the server's answers, which the time scale speeds up.
    timeouts = Timeouts().scaled(scale)
    if choice.kind != "local":
        return open_backend(choice, timeouts=timeouts)
    from runner.backends.select import local_backend
    from runner.emulator import EmulatorConfig

    if emulator is not None:
        return local_backend(emulator=emulator, timeouts=timeouts, provider=choice.provider)
    # The embedded emulator enforces the budget's own limit, so a manifest
    # that would be refused by Segmind is refused here too.
    cfg = emulator_config or EmulatorConfig(
        time_scale=scale, rpm=config.rpm, rate_scope=config.rate_scope
    )
    return local_backend(cfg, timeouts=timeouts, provider=choice.provider)


@dataclass(frozen=True, slots=True)
class _Run:
    """One run's fixed context, so the steps below need not pass it around."""

    manifest: Manifest
    options: RunOptions
    choice: BackendChoice
    ledger: Ledger
    guard: Credits
    coord: Coordination | None = None

    async def go(
        self,
        backend: Backend,
        config: SchedulerConfig,
        listeners: Iterable[Listener],
        tell: Callable[[str], None],
        wall: Callable[[], float],
    ) -> RunReport:
        manifest, options, choice, ledger, guard = (
            self.manifest,
            self.options,
            self.choice,
            self.ledger,
            self.guard,
        )
        out = output_dir(manifest, options)
        remove_temp_files(out)
        # A shared run's budget lives in Redis and already counts every worker's spend.
        if isinstance(guard, CreditGuard):
            # The budget covers the folder, not one invocation: a resumed run
            # does not get a fresh allowance, and what earlier runs may have
            # been billed for (lost answers, crashes mid-submit) counts too.
            guard.add_spent(
                sum(t.charged for t in ledger.totals().values()),
                possible=ledger.possible_extra_spend(),
            )
        recorder = Recorder(
            ledger,
            RecorderConfig(
                out=out,
                backend=choice.kind,
                base_url=choice.base_url,
                name_pattern=manifest.output.pattern,
                manifest_path=manifest.path,
                manifest_sha256=manifest.sha256,
                strict_sizes=choice.kind == "local",
                secrets=(choice.api_key,) if choice.api_key else (),
            ),
        )
        coord = self.coord
        gate: RateLimit
        calls: CallLog | None = None
        if coord is not None:
            gate = coord.gate
        else:
            gate, calls = _local_gate(out, config, wall)
        scheduler = Scheduler(
            backend, recorder, guard, config, listeners=listeners, wall=wall, gate=gate
        )
        # A worker of a shared run does the share it claims: no count to plan.
        planned = None if coord else _planned(manifest, options.shard)
        # When the limit counts every call, the balance read would spend one
        # of the run's own calls (a whole window when the jobs fill it exactly).
        balance = await scheduler.balance() if config.rate_scope == "submit" else None
        estimate = make_plan(manifest).credits
        if balance is not None and balance < estimate:
            tell(
                f"the account's balance ${balance:.2f} may not cover this run "
                f"(est. ${estimate:.2f})"
            )
        run_id = ledger.start_run(argv=options.argv, manifest_sha256=manifest.sha256, at=wall())
        resume = _Resume(
            ledger, out, options, manifest.output.pattern, retention=config.retention, wall=wall
        )

        def items() -> Iterator[WorkItem]:
            yield from resume.reattach(run_jobs(manifest, options.shard), choice.base_url)
            yield from resume.fresh(run_jobs(manifest, options.shard), scheduler.skipped)

        work: Iterable[WorkItem] | WorkSource = items()
        if coord is not None:
            work = await coord.work(
                ledger,
                _handover_rules(out, choice, manifest, options, config),
                skip=scheduler.skipped,
                stop=scheduler.request_stop,
                wall=wall,
            )

        fatal: RunnerError | None = None
        async with anyio.create_task_group() as tg:
            if options.handle_signals:
                tg.start_soon(_watch_signals, scheduler)
            try:
                stats = await scheduler.run(work, planned)
            except RunnerError as err:
                # Raised below, outside the task group, so callers get the
                # error itself rather than an exception group.
                fatal = err
            finally:
                tg.cancel_scope.cancel()
                if calls is not None:
                    calls.close()
        if fatal is not None:
            ledger.end_run(run_id, outcome=f"error: {type(fatal).__name__}", at=wall())
            raise fatal
        interrupted = scheduler.stop_reason == "interrupted"
        lost = coord.lost if coord else None
        stop_reason = scheduler.stop_reason or lost
        if stop_reason is None and coord is not None and coord.source is not None:
            stop_reason = coord.source.stop_reason  # another worker's credit stop
        ledger.end_run(run_id, outcome=stop_reason or "finished", at=wall())
        return RunReport(
            stats=stats,
            out=out,
            backend=choice.kind,
            base_url=choice.base_url,
            counts={str(k): v for k, v in ledger.counts().items()},
            interrupted=interrupted,
            credit_stopped=guard.stats().stopped is not None and not interrupted and not lost,
            stop_reason=stop_reason,
            balance=balance,
            resume_command=resume_command(manifest, options),
            coordinator=coord.link.url if coord else None,
            coordinator_lost=lost,
        )


def _handover_rules(
    out: Path,
    choice: BackendChoice,
    manifest: Manifest,
    options: RunOptions,
    config: SchedulerConfig,
) -> HandoverRules:
    from runner.coordination.handover import HandoverRules

    return HandoverRules(
        out=out,
        base_url=choice.base_url,
        pattern=manifest.output.pattern,
        retention=config.retention,
        retry_failed=options.retry_failed,
        resubmit_expired=options.resubmit_expired,
    )


def _local_gate(
    out: Path, config: SchedulerConfig, wall: Callable[[], float]
) -> tuple[RateGate, CallLog]:
    """The single-process rate gate, seeded with the folder's last window of calls.

    The folder remembers its calls, so a resumed run (after a crash or a
    Ctrl-C) does not start with a fresh allowance the server would refuse.
    """
    now = wall()
    calls = CallLog(out, now=now)
    gate = RateGate(
        config.rpm,
        config.window,
        margin=config.margin,
        model=config.rate_model,
        history=calls.ages(config.window + config.margin, now),
        on_finished=lambda: calls.append(wall()),
    )
    return gate, calls


async def _watch_signals(scheduler: Scheduler) -> None:
    """First Ctrl-C: stop new submits, leave in-flight jobs re-attachable. Second: exit now."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        count = 0
        async for _ in signals:
            count += 1
            if count == 1:
                print(
                    "\nstopping: no new submits; in-flight jobs stay recorded for resume "
                    "(Ctrl-C again to quit at once)",
                    file=sys.stderr,
                )
                scheduler.request_stop("interrupted", abandon_polls=True)
            else:
                raise KeyboardInterrupt


def exit_code(report: RunReport) -> int:
    """ARCHITECTURE.md: 0 all done, 1 some failed, 3 credit stop, 130 interrupted."""
    if report.interrupted:
        return 130
    if report.coordinator_lost:
        return 1
    if report.credit_stopped:
        return 3
    if report.stats.failed or report.stats.expired:
        return 1
    return 0
