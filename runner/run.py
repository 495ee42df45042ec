"""`runner run`: a manifest's jobs through the scheduler into the output folder.

This module wires the parts: it picks the backend, opens the folder's
ledger, builds the run's mode once (runner/modes.py: alone, or a worker of a
shared run), runs the scheduler with the mode's limits and work, and
reports. What to do with a job an earlier run knew is runner/resume.py's
decision alone (docs/store.md "Resume"). The parts know nothing of each other.
"""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio

from runner.backends.base import Backend
from runner.backends.segmind import Timeouts
from runner.backends.select import BackendChoice, Choice, choose_backend, open_backend
from runner.cache import Cache
from runner.clock import wall_time
from runner.errors import RunnerError
from runner.events import Listener, RunStats
from runner.jobs import Job
from runner.manifest import Manifest
from runner.modes import INTERRUPTED, Mode, Setting, open_mode
from runner.money import Micros, format_usd, maybe_micros, micros
from runner.plan import make_plan
from runner.providers import LOCAL_TIME_SCALE
from runner.recorder import Recorder, RecorderConfig
from runner.reporting.exit_codes import StopKind
from runner.resume import Rules
from runner.scheduling.inflight import max_cap
from runner.scheduling.polling import PollPolicy
from runner.scheduling.prices import PriceBook, book_for, recall_charges
from runner.scheduling.retry import RetryPolicy
from runner.scheduling.scheduler import Scheduler, SchedulerConfig
from runner.shard import Shard, shard_of
from runner.store import Ledger, remove_temp_files
from runner.sweep import count_jobs, expand

if TYPE_CHECKING:
    from runner.emulator import Emulator, EmulatorConfig

RETENTION_S = 3600.0
# Requests per minute the embedded emulator keeps when the run learns its limit (auto).
AUTO_EMULATOR_RPM = 10


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Command-line choices of `runner run`; None means the manifest's value or the default."""

    backend: Choice = "auto"
    base_url: str | None = None
    out: Path | None = None
    max_credits: float | None = None
    rpm: int | Literal["auto"] | None = None
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
    # --cache / $RUNNER_CACHE: finished jobs shared across folders (runner/cache.py).
    cache: Path | None = None


@dataclass(frozen=True, slots=True)
class RunReport:
    """What a run did: this run's stats, the folder's ledger counts, and why it stopped.

    `stop` is the kind of early stop the exit code needs (None: the run ran
    out of work), `stop_reason` its text. `whole`: the run answers for every
    job of its manifest (or shard); a worker of a shared run only for the
    jobs it claimed.
    """

    stats: RunStats
    out: Path
    counts: Mapping[str, int]
    stop: StopKind | None
    stop_reason: str | None
    resume_command: str = ""
    whole: bool = True
    # Jobs unfinished in the folder that another worker of the run finished,
    # by folder state (a shared run only): done, as far as the exit code goes.
    elsewhere: Mapping[str, int] = field(default_factory=dict)


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
    if options.cache is not None:
        parts += ["--cache", str(options.cache)]
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
    rpm = options.rpm or budget.requests_per_minute
    return SchedulerConfig(
        rpm=None if rpm == "auto" else rpm,
        rpm_auto=rpm == "auto",
        rate_scope=budget.rate_scope,
        rate_model=budget.rate_model,
        window=60.0 * scale,
        margin=1.0 * scale,
        max_in_flight=in_flight,
        max_submits_in_flight=budget.max_submits_in_flight,
        poll=replace(PollPolicy(), scale=scale),
        retry=replace(RetryPolicy(), scale=scale),
        retention=RETENTION_S * scale,
        seed=options.seed,
    )


def run_jobs(manifest: Manifest, shard: Shard | None) -> Iterator[Job]:
    """The jobs of a run, lazily, in the manifest's order (one shard's when given)."""
    return expand(shard_of(manifest, shard))


def _planned(manifest: Manifest, shard: Shard | None) -> int:
    return count_jobs(shard_of(manifest, shard))


async def run_manifest(
    manifest: Manifest,
    options: RunOptions = RunOptions(),
    *,
    env: Mapping[str, str] | None = None,
    listeners: Iterable[Listener] = (),
    notice: Callable[[str], None] | None = None,
    emulator: Emulator | None = None,
    emulator_config: EmulatorConfig | None = None,
    wall: Callable[[], float] = wall_time,
) -> RunReport:
    """Run a manifest to its end (or its stop) and return what happened.

    `env` defaults to os.environ (the key comes from SEGMIND_API_KEY). Pass
    `emulator` to run the local backend on an emulator a test inspects.
    Raises UsageError / AuthError (exit 2) and StoreError.
    """
    env = os.environ if env is None else env

    def tell(text: str) -> None:
        if notice is not None:
            notice(text)

    choice = choose_backend(
        options.backend,
        base_url_arg=options.base_url,
        manifest_base_url=manifest.api.base_url,
        env=env,
        provider=manifest.api.provider,
    )
    scale = options.time_scale or (LOCAL_TIME_SCALE if choice.kind == "local" else 1.0)
    # The emulator's speed is said: a demo's times are not the provider's.
    if choice.notice:
        speed = f" The emulator runs at {1 / scale:g}x speed." if choice.kind == "local" else ""
        tell(choice.notice + speed)
    config = _scheduler_config(manifest, options, scale)
    backend = _open(choice, emulator, emulator_config, config, scale)
    try:
        cap = options.max_credits
        if cap is None:
            cap = manifest.budget.max_credits
        budget = maybe_micros(cap)
        out = output_dir(manifest, options)
        cache = Cache(options.cache, backend=choice.kind) if options.cache is not None else None
        setting = Setting(
            manifest=manifest,
            jobs=lambda: run_jobs(manifest, options.shard),
            count=lambda: _planned(manifest, options.shard),
            out=out,
            base_url=choice.base_url,
            api_key=choice.api_key,
            budget=budget,
            config=config,
            rules=Rules(config.retention, options.retry_failed, options.resubmit_expired),
            wall=wall,
            coordinator=options.coordinator
            or (manifest.coordinator.url if manifest.coordinator else None),
            run_id=options.run_id,
            sharded=options.shard is not None,
            cache=cache,
        )
        async with open_mode(setting) as mode:
            ledger = Ledger.open(
                out, backend=choice.kind, base_url=choice.base_url, fresh=options.fresh
            )
            try:
                run = _Run(manifest, options, choice, ledger, mode, cache)
                return await run.go(backend, config, listeners, tell, wall)
            finally:
                ledger.close()
    finally:
        with anyio.CancelScope(shield=True):
            await backend.aclose()


def _open(
    choice: BackendChoice,
    emulator: Emulator | None,
    emulator_config: EmulatorConfig | None,
    config: SchedulerConfig,
    scale: float,
) -> Backend:
    # Deadlines bound the server's answers, which the time scale speeds up.
    timeouts = Timeouts().scaled(scale)
    # Each job has at most one call out at a time: a pool the size of the
    # in-flight cap (+1 for the balance call) never makes a burst connect at once.
    connections = max_cap(config.rpm, config.max_in_flight) + 1
    if choice.kind != "local":
        return open_backend(choice, timeouts=timeouts, connections=connections)
    from runner.backends.select import local_backend
    from runner.emulator import EmulatorConfig

    if emulator is not None:
        return local_backend(
            emulator=emulator,
            timeouts=timeouts,
            provider=choice.provider,
            connections=connections,
        )
    # The embedded emulator enforces the budget's own limit, so a manifest
    # that would be refused by Segmind is refused here too.
    cfg = emulator_config or EmulatorConfig(
        time_scale=scale,
        # Under auto the emulator keeps a limit of its own, for the run to learn.
        rpm=AUTO_EMULATOR_RPM if config.rpm_auto else config.rpm,
        rate_scope=config.rate_scope,
    )
    return local_backend(cfg, timeouts=timeouts, provider=choice.provider, connections=connections)


@dataclass(frozen=True, slots=True)
class _Run:
    """One run's fixed context, so the steps below need not pass it around."""

    manifest: Manifest
    options: RunOptions
    choice: BackendChoice
    ledger: Ledger
    mode: Mode
    cache: Cache | None = None

    async def go(
        self,
        backend: Backend,
        config: SchedulerConfig,
        listeners: Iterable[Listener],
        tell: Callable[[str], None],
        wall: Callable[[], float],
    ) -> RunReport:
        manifest, options, choice, ledger, mode = (
            self.manifest,
            self.options,
            self.choice,
            self.ledger,
            self.mode,
        )
        out = output_dir(manifest, options)
        remove_temp_files(out)
        gate, guard = mode.limits(ledger)
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
        scheduler = Scheduler(
            backend,
            recorder,
            guard,
            config,
            listeners=listeners,
            wall=wall,
            gate=gate,
            prices=_price_book(manifest, options, ledger, guard.stats().budget),
        )
        planned = mode.planned()
        # When the limit counts every call, the balance read would spend one
        # of the run's own calls (a whole window when the jobs fill it exactly).
        # A folder with nothing left to send asks the API nothing at all.
        ask = config.rate_scope == "submit" and not (
            planned is not None
            and _nothing_to_send(ledger, run_jobs(manifest, options.shard), planned, options)
        )
        balance = await scheduler.balance() if ask else None
        estimate = make_plan(manifest).credits
        if balance is not None and micros(balance) < estimate:
            tell(
                f"the account's balance {format_usd(micros(balance))} may not cover this run "
                f"(est. {format_usd(estimate)})"
            )
        run_id = ledger.start_run(argv=options.argv, manifest_sha256=manifest.sha256, at=wall())
        work = await mode.work(ledger, scheduler, guard)

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
        recorder.close()
        if fatal is not None:
            ledger.end_run(run_id, outcome=f"error: {type(fatal).__name__}", at=wall())
            raise fatal
        end = mode.ending(scheduler, guard)
        elsewhere = await mode.finished_elsewhere(ledger)
        if self.cache is not None:
            # After the run, off the jobs' path: the folder's finished jobs, earlier ones too.
            added = self.cache.add(out, ledger.rows("completed"))
            if added:
                tell(f"cache: {added:,} finished job(s) added to {self.cache.root}")
        ledger.end_run(run_id, outcome=end.reason or "finished", at=wall())
        return RunReport(
            stats=stats,
            out=out,
            counts={str(k): v for k, v in ledger.counts().items()},
            stop=end.kind,
            stop_reason=end.reason,
            resume_command=resume_command(manifest, options),
            whole=mode.whole,
            elsewhere=elsewhere,
        )


_FINAL_BATCH = 10_000


def _price_book(
    manifest: Manifest, options: RunOptions, ledger: Ledger, budget: Micros | None
) -> PriceBook:
    """The run's price book; on a resume under a budget, taught the folder's charges.

    A re-attached job is held whatever the budget (runner.scheduling.dispatch),
    at the book's reservation: it must be what the crashed run, which knew the
    price, reserved, not an unobserved class's `safety` x the table. A job sent
    anew is reserved at the price the folder learned too, so the amount a
    stopped run told the user to raise the cap by is what the next run needs.
    """
    book = book_for(manifest.prices, budget)
    if budget is not None:
        _recall_folder_charges(book, run_jobs(manifest, options.shard), ledger)
    return book


_RECALL_BATCH = 500


def _recall_folder_charges(book: PriceBook, jobs: Iterable[Job], ledger: Ledger) -> int:
    """Teach `book` the charges the ledger recorded for `jobs` (completed rows); how many.

    Walks `jobs` a batch at a time, reading only that batch's rows, and stops
    once every charge the ledger records is matched, or at the last charged
    row's index (a charge whose job left the manifest): memory is one batch, not
    every completed row, and a folder whose finished jobs come first stops
    where they end. Every charge is taught (a class's belief is the highest
    per image, as the crashed run's was), so the book is the same as taught
    from all of them at once.
    """
    left = ledger.totals()["completed"].charged_jobs
    learned = 0
    # Never past the last charged row's place in the expansion: a charge of a job
    # the manifest no longer has is never matched, and must not walk a sweep of 10^12.
    last = ledger.last_charged_index()
    it = itertools.takewhile(lambda job: job.index <= last, jobs)
    while left > 0 and (batch := list(itertools.islice(it, _RECALL_BATCH))):
        rows = ledger.get_many(job.key for job in batch)
        charges = {
            key: row.charged
            for key, row in rows.items()
            if row.state == "completed" and row.charged is not None
        }
        learned += recall_charges(book, batch, charges)
        left -= len(charges)
    return learned


def _nothing_to_send(
    ledger: Ledger, jobs: Iterable[Job], planned: int, options: RunOptions
) -> bool:
    """True when every job of the run has a row this run will not send again.

    Read off the ledger's counts first, so that a folder with work left (the
    usual case, and any huge manifest) costs one query; only when the final
    rows could cover the run are its jobs checked, in batches.
    """
    final = {"completed"}
    if not options.retry_failed:
        final.add("failed")
    if not options.resubmit_expired:
        final.add("expired")
    counts = ledger.counts()
    if sum(n for state, n in counts.items() if state in final) < planned:
        return False
    it = iter(jobs)
    while batch := list(itertools.islice(it, _FINAL_BATCH)):
        rows = ledger.get_many(job.key for job in batch)
        if any(job.key not in rows or rows[job.key].state not in final for job in batch):
            return False
    return True


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
                scheduler.request_stop(INTERRUPTED, abandon_polls=True)
            else:
                raise KeyboardInterrupt
