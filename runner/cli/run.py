"""`runner run MANIFEST`: the command-line face of runner.run.

Parses the options, asks for confirmation before a large paid run, shows
progress (a bar for people, JSON lines for pipelines), runs, writes the
reports and returns the exit code of ARCHITECTURE.md.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio

from runner.cli.args import (
    CommandParser,
    non_negative_float,
    path_value,
    positive_int,
    rpm_value,
)
from runner.clock import wall_time
from runner.errors import UsageError
from runner.providers import PROVIDERS
from runner.redact import redact_argv
from runner.subset import add_subset_arguments, subset_from

if TYPE_CHECKING:
    from collections.abc import Mapping

    from runner.cli.args import Subparsers
    from runner.manifest import Manifest
    from runner.plan import Plan
    from runner.reporting.exit_codes import FailureTolerance
    from runner.reporting.summary_model import ShardInfo
    from runner.run import RunOptions, RunReport

# How often a run logging to a non-terminal prints its status (runner.reporting.progress).
STATUS_EVERY_S = 30.0
# A paid run above either of these asks first (or needs --yes when no one can answer).
CONFIRM_JOBS = 100
# Where --coordinator comes from when not given: keeps a Redis password off command lines.
COORDINATOR_ENV = "RUNNER_COORDINATOR"
CONFIRM_USD = 5.0


def add_run(sub: Subparsers, common: CommandParser) -> None:
    """Register `runner run`."""
    p = sub.add_parser(
        "run",
        parents=[common],
        help="run a manifest: submit, poll, download, write images and sidecars",
        description="Run every job of a manifest under its rate and credit budget. A re-run "
        "of the same folder resumes: finished jobs are skipped, jobs in flight re-attached.",
    )
    p.add_argument("manifest", metavar="MANIFEST", help="path to the manifest YAML")
    p.add_argument(
        "--backend",
        choices=("auto", "segmind", "xai", "local"),
        default="auto",
        help="segmind (needs SEGMIND_API_KEY), xai (needs XAI_API_KEY), local (the embedded "
        "emulator of the provider's API, no credits), or auto: the provider when its key is "
        "set, else local (default)",
    )
    p.add_argument(
        "--provider",
        choices=("segmind", "xai"),
        help="who serves the model (default: the manifest's api.provider, else segmind)",
    )
    p.add_argument("--base-url", metavar="URL", help="API root (also SEGMIND_BASE_URL)")
    p.add_argument(
        "--out", type=path_value, metavar="DIR", help="output folder (default: output.dir)"
    )
    p.add_argument("--max-credits", type=non_negative_float, metavar="USD")
    p.add_argument(
        "--rpm", type=rpm_value, metavar="N|auto", help="requests per minute (auto: learned)"
    )
    p.add_argument("--max-in-flight", type=positive_int, metavar="N")
    p.add_argument("--shard", metavar="K/N", help="run only shard K of N (CI matrices)")
    add_shard_budget(p)
    p.add_argument(
        "--status-every",
        type=non_negative_float,
        default=STATUS_EVERY_S,
        metavar="SECONDS",
        help="when stderr is not a terminal (a CI log): a status line this often, and at each "
        f"change of the run's state (default {STATUS_EVERY_S:g})",
    )
    p.add_argument(
        "--coordinator",
        metavar="URL",
        default=os.environ.get(COORDINATOR_ENV) or None,
        help="redis://HOST:PORT/DB shared by several workers of one run: they claim jobs, "
        f"share the rate and credit budget, take over a dead worker's jobs (also ${COORDINATOR_ENV}"
        ", coordinator.url; docs/distributed.md)",
    )
    p.add_argument(
        "--run-id",
        metavar="ID",
        help="with --coordinator: which run of this manifest to join (default: the manifest's "
        "hash alone), e.g. ci-$GITHUB_RUN_ID",
    )
    p.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        default=os.environ.get("RUNNER_CACHE") or None,
        help="a cache of finished jobs shared by folders: a job it holds is copied, costing "
        "nothing; finished jobs are added (also $RUNNER_CACHE; docs/store.md)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; send no request")
    p.add_argument("--yes", action="store_true", help="do not ask before a large paid run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--json", action="store_true", help="print one JSON event per line instead of the bar"
    )
    p.add_argument("--retry-failed", action="store_true", help="submit failed jobs again")
    p.add_argument(
        "--resubmit-expired",
        action="store_true",
        help="submit again jobs whose results expired on the server (costs credits)",
    )
    p.add_argument(
        "--fresh", action="store_true", help="start a new ledger (the old one is kept aside)"
    )
    p.add_argument(
        "--time-scale",
        type=float,
        metavar="X",
        help="scale every duration (for an emulator started with the same --time-scale)",
    )
    p.add_argument("--seed", type=int, help="seed the jitter (reproducible runs)")
    p.add_argument(
        "--junit", type=path_value, metavar="PATH", help="write JUnit XML, a test per job"
    )
    p.add_argument(
        "--max-failures",
        metavar="N",
        help="exit 0 despite up to N failed jobs (a count, or a fraction: 0.05 or 5%%)",
    )
    add_subset_arguments(p)
    p.set_defaults(handler=cmd_run)


def _options(args: argparse.Namespace) -> RunOptions:
    from runner.run import RunOptions
    from runner.shard import parse_shard

    if args.time_scale is not None and not args.time_scale > 0:
        raise UsageError(f"--time-scale must be above 0, got {args.time_scale}")
    return RunOptions(
        backend=args.backend,
        base_url=args.base_url,
        out=args.out,
        max_credits=args.max_credits,
        rpm=args.rpm,
        max_in_flight=args.max_in_flight,
        shard=parse_shard(args.shard) if args.shard else None,
        resubmit_expired=args.resubmit_expired,
        retry_failed=args.retry_failed,
        fresh=args.fresh,
        time_scale=args.time_scale,
        seed=args.seed,
        handle_signals=True,
        argv=tuple(
            redact_argv(sys.argv[1:], *(os.environ.get(h.key_env) for h in PROVIDERS.values()))
        ),
        coordinator=args.coordinator,
        run_id=args.run_id,
        provider=args.provider,
        cache=args.cache,
    )


def _confirm(plan: Plan, options: RunOptions, yes: bool, provider: str) -> None:
    from runner.backends.select import choose_backend
    from runner.money import micros
    from runner.plan import usd

    choice = choose_backend(
        options.backend,
        base_url_arg=options.base_url,
        manifest_base_url=None,
        env=os.environ,
        provider=provider,
    )
    if choice.kind == "local" or yes:
        return
    if plan.jobs <= CONFIRM_JOBS and plan.credits <= micros(CONFIRM_USD):  # plan.credits: µ$
        return
    title = PROVIDERS[choice.provider].title
    question = f"This run sends {plan.jobs:,} jobs to {title}, est {usd(plan.credits)}"
    question += f"; {cap_allows(plan)}." if plan.max_credits is not None else " (no credit cap)."
    if not sys.stdin.isatty():
        raise UsageError(f"{question} Pass --yes to confirm (no terminal to ask on).")
    answer = input(f"{question} Go on? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("not confirmed; nothing was sent")


def _local_speed(plan: Plan, options: RunOptions, provider: str) -> str | None:
    """For a run on the embedded emulator: its speed and what the plan's duration becomes."""
    from runner.backends.select import choose_backend
    from runner.plan import duration
    from runner.providers import LOCAL_TIME_SCALE

    choice = choose_backend(
        options.backend,
        base_url_arg=options.base_url,
        manifest_base_url=None,
        env=os.environ,
        provider=provider,
    )
    if choice.kind != "local":
        return None
    scale = options.time_scale or LOCAL_TIME_SCALE
    return (
        f"on the embedded emulator at {1 / scale:g}x speed: no credits spent, "
        f"at least ~{duration(plan.min_duration_s * scale)}"
    )


def cap_allows(plan: Plan) -> str:
    """What the credit cap lets a paid run spend, in words (for the confirmation)."""
    from runner.plan import usd

    assert plan.max_credits is not None
    cap = usd(plan.max_credits)
    if plan.fits:
        return f"the cap of {cap} allows all of it"
    within = plan.jobs_within_budget or 0
    spend = usd(plan.credits_within_budget or 0)
    return f"the cap of {cap} allows {within:,} of them ({spend}), then the run stops"


def add_shard_budget(p: argparse.ArgumentParser) -> None:
    """`--shard-budget split|full` (for `run` and `plan`)."""
    p.add_argument(
        "--shard-budget",
        choices=("split", "full"),
        default="split",
        help="with --shard K/N: each shard gets 1/N of max_credits and requests_per_minute "
        "(split, default: N shards together keep the manifest's budget), or all of it (full)",
    )


def shard_share(
    manifest: Manifest,
    args: argparse.Namespace,
    max_credits: float | None,
    rpm: int | Literal["auto"] | None,
) -> tuple[float | None, int | Literal["auto"] | None, str | None]:
    """The cap (USD) and rpm this shard runs under, and a line saying so (None: not split)."""
    from runner.money import format_usd, micros
    from runner.shard import parse_shard, split_budget

    if not getattr(args, "shard", None) or args.shard_budget == "full":
        return max_credits, rpm, None
    shard = parse_shard(args.shard)
    cap = max_credits if max_credits is not None else manifest.budget.max_credits
    share = split_budget(shard, cap, rpm or manifest.budget.requests_per_minute)
    credits = (
        "no credit cap"
        if share.max_credits is None
        else f"max_credits {format_usd(micros(share.max_credits))}"
    )
    line = (
        f"shard {shard.index}/{shard.count} runs under 1/{shard.count} of the budget: "
        f"{credits}, {share.rpm} requests/minute (--shard-budget full: all of it)"
    )
    return share.max_credits, share.rpm, line


def cmd_run(args: argparse.Namespace) -> int:
    """The handler of `runner run`."""
    from runner.manifest import load_manifest
    from runner.plan import make_plan, render_text
    from runner.reporting.exit_codes import parse_max_failures
    from runner.shard import shard_of
    from runner.sweep import restrict

    manifest = restrict(load_manifest(args.manifest, provider=args.provider), subset_from(args))
    options = _options(args)
    tolerance = parse_max_failures(args.max_failures) if args.max_failures else None
    max_credits, rpm, share = shard_share(manifest, args, options.max_credits, options.rpm)
    options = replace(options, max_credits=max_credits, rpm=rpm)
    plan = make_plan(shard_of(manifest, options.shard), rpm=rpm, max_credits=max_credits)
    if args.dry_run:
        sys.stdout.write(render_text(plan))
        if share:
            print(share)
        local = _local_speed(plan, options, manifest.api.provider)
        if local:
            print(local)
        return 0
    if share:
        print(f"note: {share}", file=sys.stderr)
    _confirm(plan, options, args.yes, manifest.api.provider)
    return anyio.run(partial(_run, manifest, options, args, tolerance, plan, share))


def invocation(argv0: str) -> str:
    """How the user started runner, for hints: `.venv/bin/runner`, `runner`, `python -m runner`."""
    name = Path(argv0).name
    if not argv0 or name in ("__main__.py", "-c", "-m"):
        return "python -m runner"
    return shlex.quote(argv0)


def resume_hint(
    command: str, argv0: str, *, retry_failed: bool = False, max_credits: int | None = None
) -> str:
    """`command` (runner.run.resume_command) as the user would type it next.

    Started the way the user started this run; with `--retry-failed` when
    jobs failed and `--max-credits X` (X in µ$, shown in USD rounded up to
    the cent) when the budget stopped the run.
    """
    from runner.money import to_usd

    head, _, rest = command.partition(" ")
    parts = [invocation(argv0) if head == "runner" else head, rest]
    if retry_failed:
        parts.append("--retry-failed")
    if max_credits is not None:
        cents = -(-max_credits // 10_000)  # up to the cent: the hint must be enough
        parts.append(f"--max-credits {to_usd(cents * 10_000):.2f}")
    return " ".join(part for part in parts if part)


def _credits_for_the_rest(out: Path, plan: Plan, spent_usd: float, per_kill: int) -> int:
    """A cap (µ$) that lets the unfinished jobs run: what is spent plus their estimate.

    The rest's estimate is the plan's (every job of the manifest or shard)
    less the completed jobs' estimates: jobs never reached are not in the
    ledger. The cap counts the folder's earlier spend too (resume), so the
    rest's estimate alone would stop the next run just as this one stopped.
    It counts what the next run's budget will count besides: the folder's
    possible spend (lost answers, kills mid-submit; `per_kill` is
    max_submits_in_flight), and, while jobs are left and the folder knows no
    charge to learn prices from, the first job reserved at the safety factor
    x the table (runner.scheduling.prices), taken at the dearest prompt's
    job. Without them the hint could name the very cap that stopped the run.
    """
    from runner.money import micros
    from runner.scheduling.prices import PricePolicy
    from runner.store import Ledger

    ledger = Ledger.open_readonly(out)
    try:
        totals = ledger.totals()
        possible = ledger.possible_extra_spend(per_kill)
    finally:
        ledger.close()
    rest = max(0, plan.credits - totals["completed"].estimate)
    dearest = max((-(-p.credits // p.jobs) for p in plan.prompts if p.jobs), default=0)
    unlearned = rest and not totals["completed"].charged_jobs
    scout = math.ceil(dearest * (PricePolicy().safety - 1)) if unlearned else 0
    return micros(spent_usd) + possible + rest + scout


# Above this many jobs the reports read the ledger alone instead of holding
# every job of the manifest in memory (jobs never reached are then unlisted).
REPORT_ALL_JOBS_UP_TO = 50_000


async def _run(  # noqa: PLR0917 (called through functools.partial for anyio.run)
    manifest: Manifest,
    options: RunOptions,
    args: argparse.Namespace,
    tolerance: FailureTolerance | None,
    plan: Plan,
    share: str | None = None,
) -> int:
    from runner.reporting.progress import JsonEvents, ProgressBar
    from runner.run import run_manifest

    listener: JsonEvents | ProgressBar = (
        JsonEvents(sys.stdout)
        if args.json
        else ProgressBar(enabled=not args.no_progress, status_every=args.status_every)
    )

    def notice(text: str) -> None:
        print(f"note: {text}", file=sys.stderr)

    if isinstance(listener, ProgressBar):
        listener.opening(plan.jobs)
    started = wall_time()
    try:
        report = await run_manifest(manifest, options, listeners=[listener], notice=notice)
    except Exception as err:
        listener.close()
        _report_error(manifest, options, args, err, started=started, plan=plan)
        raise
    finally:
        listener.close()
    return _report(
        manifest,
        options,
        args,
        report,
        tolerance=tolerance,
        started=started,
        plan=plan,
        share=share,
    )


def shard_info(options: RunOptions, args: argparse.Namespace) -> ShardInfo | None:
    """summary.json's `shard` for a `--shard K/N` run (None for a whole run)."""
    from runner.reporting.summary_model import ShardInfo

    if options.shard is None:
        return None
    return ShardInfo(index=options.shard.index, count=options.shard.count, budget=args.shard_budget)


def report_title(name: str, options: RunOptions) -> str:
    """The gallery's title and the JUnit file's name: the manifest's name, and a shard's K/N."""
    shard = options.shard
    return name if shard is None else f"{name} (shard {shard.index}/{shard.count})"


def _report_error(
    manifest: Manifest,
    options: RunOptions,
    args: argparse.Namespace,
    err: Exception,
    *,
    started: float,
    plan: Plan,
) -> None:
    """A run that ended in an error (a refused key, a disk fault, a bug) still leaves its
    summary.json / summary.md (with the exit code `main` returns for `err`) and its JUnit.

    Only when the folder has a ledger (the error may come before one exists);
    a failure here is reported in one line and never hides `err` itself.
    """
    from runner.reporting.exit_codes import ExitDecision, exit_code
    from runner.reporting.junit import write_junit
    from runner.reporting.summary import summarize_folder, with_exit, write_summary
    from runner.run import output_dir, run_jobs
    from runner.store import ledger_path

    out = output_dir(manifest, options)
    if not ledger_path(out).is_file():
        return
    try:
        jobs = None
        if plan.jobs <= REPORT_ALL_JOBS_UP_TO and options.coordinator is None:
            jobs = {job.key: job for job in run_jobs(manifest, options.shard)}
        summary = summarize_folder(
            out, jobs=jobs, prices=manifest.prices, manifest=manifest.path, started_at=started
        )
        summary = summary.model_copy(update={"shard": shard_info(options, args)})
        decision = ExitDecision(exit_code(err), f"error: {err}")
        write_summary(out, with_exit(summary, decision))
        if args.junit:
            name = report_title(manifest.name, options)
            write_junit(args.junit, out, jobs=jobs, prices=manifest.prices, name=name)
    except Exception as failure:  # the run's own error is what the user must see
        print(f"note: the reports of {out} were not written: {failure}", file=sys.stderr)


def _report(
    manifest: Manifest,
    options: RunOptions,
    args: argparse.Namespace,
    report: RunReport,
    *,
    tolerance: FailureTolerance | None,
    started: float,
    plan: Plan,
    share: str | None = None,
) -> int:
    """Write summary.json / summary.md / gallery.html (and JUnit), print, decide the exit code."""
    from runner.reporting.exit_codes import EXIT_CREDITS, EXIT_INTERRUPTED, decide_exit
    from runner.reporting.gallery import write_gallery
    from runner.reporting.junit import write_junit
    from runner.reporting.summary import (
        render_text,
        summarize_folder,
        summary_event,
        with_exit,
        write_summary,
    )
    from runner.run import run_jobs

    out = report.out
    jobs = None
    # A worker of a shared run reports the jobs it ran (its folder), not the manifest's.
    if plan.jobs <= REPORT_ALL_JOBS_UP_TO and report.whole:
        jobs = {job.key: job for job in run_jobs(manifest, options.shard)}
    summary = summarize_folder(
        out,
        stats=report.stats,
        jobs=jobs,
        prices=manifest.prices,
        manifest=manifest.path,
        started_at=started,
    ).model_copy(update={"shard": shard_info(options, args)})
    # The reason repeats the kind for a plain Ctrl-C: "interrupted: interrupted".
    reason = "" if report.stop_reason == report.stop else report.stop_reason or ""
    decision = decide_exit(
        _counts_for_exit(summary.jobs.by_state, report.elsewhere),
        stop=report.stop,
        stop_reason=reason,
        max_failures=tolerance,
    )
    if sum(report.elsewhere.values()):
        n = sum(report.elsewhere.values())
        decision = replace(
            decision, reason=f"{decision.reason} ({n} of them finished by another worker)"
        )
    summary = with_exit(summary, decision)
    write_summary(out, summary)
    # What is printed at the end is made now and the summary let go: it lists every
    # failure, which the gallery and JUnit (reading the folder again) do not need.
    told = summary_event(summary) if args.json else render_text(summary, out_label=str(out)) + "\n"
    failed = bool(summary.jobs.by_state.get("failed"))
    spent_usd = summary.credits.spent_usd
    del summary
    title = report_title(manifest.name, options)
    write_gallery(out, jobs=jobs, prices=manifest.prices, title=title)
    if args.junit:
        write_junit(args.junit, out, jobs=jobs, prices=manifest.prices, name=title)
    try:
        sys.stdout.write(told)
        if share and not args.json:
            print(share)
        stopped = decision.code in (EXIT_INTERRUPTED, EXIT_CREDITS) or report.stop == "error"
        if stopped or failed:
            hint = resume_hint(
                report.resume_command,
                sys.argv[0],
                retry_failed=failed and not args.retry_failed,
                # A split shard's --max-credits is divided again: the hint names the whole.
                max_credits=_credits_for_the_rest(
                    out, plan, spent_usd, manifest.budget.max_submits_in_flight
                )
                * (options.shard.count if share and options.shard else 1)
                if decision.code == EXIT_CREDITS
                else None,
            )
            print(f"resume with: {hint}", file=sys.stderr if args.json else sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:  # stdout's reader is gone; the reports are on disk
        from runner.reporting.progress import detach_stdout

        detach_stdout()
    return decision.code


def _counts_for_exit(by_state: Mapping[str, int], elsewhere: Mapping[str, int]) -> dict[str, int]:
    """The folder's jobs by state, those another worker finished counted as done (shared runs).

    A worker that lost a job to a taker (it stalled past its lease) keeps it
    unfinished in its folder; the run's record says it ended, so it counts
    as completed for the exit code, not as work left.
    """
    counts = dict(by_state)
    for state, n in elsewhere.items():
        moved = min(n, counts.get(state, 0))
        counts[state] = counts.get(state, 0) - moved
        counts["completed"] = counts.get("completed", 0) + moved
    return counts
