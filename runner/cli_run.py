"""`runner run MANIFEST`: the command-line face of runner.run.

Parses the options, asks for confirmation before a large paid run, shows
progress (a bar for people, JSON lines for pipelines), runs, writes the
reports and returns the exit code of ARCHITECTURE.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from runner.errors import UsageError

if TYPE_CHECKING:
    from runner.cli import Subparsers
    from runner.manifest import Manifest
    from runner.plan import Plan
    from runner.run import RunOptions

# A paid run above either of these asks first (or needs --yes when no one can answer).
CONFIRM_JOBS = 100
CONFIRM_USD = 5.0


def add_run(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Register `runner run`."""
    from runner.cli import _non_negative_float, _positive_int

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
        choices=("auto", "segmind", "local"),
        default="auto",
        help="segmind (needs SEGMIND_API_KEY), local (the embedded emulator, no credits), "
        "or auto: segmind when SEGMIND_API_KEY is set, else local (default)",
    )
    p.add_argument("--base-url", metavar="URL", help="API root (also SEGMIND_BASE_URL)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: output.dir)")
    p.add_argument("--max-credits", type=_non_negative_float, metavar="USD")
    p.add_argument("--rpm", type=_positive_int, metavar="N", help="requests per minute")
    p.add_argument("--max-in-flight", type=_positive_int, metavar="N")
    p.add_argument("--shard", metavar="K/N", help="run only shard K of N (CI matrices)")
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
        argv=tuple(_safe_argv(sys.argv[1:])),
    )


def _safe_argv(argv: list[str]) -> list[str]:
    key = os.environ.get("SEGMIND_API_KEY")
    return [a.replace(key, "***") if key else a for a in argv]


def _confirm(plan: Plan, options: RunOptions, yes: bool) -> None:
    from runner.backends.select import choose_backend
    from runner.plan import usd

    choice = choose_backend(
        options.backend, base_url_arg=options.base_url, manifest_base_url=None, env=os.environ
    )
    if choice.kind == "local" or yes:
        return
    if plan.jobs <= CONFIRM_JOBS and plan.credits <= CONFIRM_USD:
        return
    question = f"This run sends {plan.jobs:,} jobs to Segmind, est {usd(plan.credits)}."
    if not sys.stdin.isatty():
        raise UsageError(f"{question} Pass --yes to confirm (no terminal to ask on).")
    answer = input(f"{question} Go on? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UsageError("not confirmed; nothing was sent")


def cmd_run(args: argparse.Namespace) -> int:
    """The handler of `runner run`."""
    from runner.manifest import load_manifest
    from runner.plan import make_plan, render_text

    manifest = load_manifest(args.manifest)
    options = _options(args)
    plan = make_plan(manifest, rpm=options.rpm, max_credits=options.max_credits)
    if args.dry_run:
        sys.stdout.write(render_text(plan))
        return 0
    _confirm(plan, options, args.yes)
    return anyio.run(partial(_run, manifest, options, args))


async def _run(manifest: Manifest, options: RunOptions, args: argparse.Namespace) -> int:
    from runner.reporting.progress import JsonEvents, ProgressBar
    from runner.run import exit_code, run_manifest

    listener: JsonEvents | ProgressBar
    if args.json:
        listener = JsonEvents(sys.stdout)
    else:
        listener = ProgressBar(enabled=not args.no_progress)

    def notice(text: str) -> None:
        print(f"note: {text}", file=sys.stderr)

    try:
        report = await run_manifest(manifest, options, listeners=[listener], notice=notice)
    finally:
        listener.close()
    s = report.stats
    out = sys.stderr if args.json else sys.stdout
    print(
        f"{s.completed} completed, {s.failed} failed, {s.skipped} skipped, {s.expired} expired; "
        f"{s.images} images in {report.out}; ${s.credits_spent:.2f} spent",
        file=out,
    )
    if report.stop_reason:
        print(f"stopped: {report.stop_reason}", file=out)
    code = exit_code(report)
    if code in (130, 3) or report.stats.failed:
        print(f"resume with: {report.resume_command}", file=out)
    return code
