"""The `runner` command: parse arguments, call the library, print, return an exit code.

Thin on purpose: every decision lives in the library. A subcommand is one
`_add_<name>(subparsers)` that builds its parser and sets `handler` to one
`_cmd_<name>(args) -> int`; `_COMMANDS` lists them in help order.

Exit codes (ARCHITECTURE.md): 0 done; 1 some jobs failed or another runner
error; 2 bad manifest, usage or auth; 3 stopped by the credit guard;
130 interrupted. A user error prints one message, never a traceback, unless
`--debug` asks for it (the exit code stays the same).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from runner import __version__
from runner.cli.args import (
    CommandParser,
    Handler,
    common,
    non_negative_float,
    path_value,
    rpm_value,
    write,
)
from runner.errors import RunnerError, UsageError
from runner.reporting.exit_codes import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    exit_code,
)
from runner.subset import add_subset_arguments, subset_from

if TYPE_CHECKING:
    from runner.cli.args import Subparsers
    from runner.plan import Plan


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]) and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse's own --help, --version and usage errors
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    undo = debug_logging() if getattr(args, "debug", False) else None
    try:
        return handler(args)
    except (RunnerError, KeyboardInterrupt) as err:
        if getattr(args, "debug", False):
            # The traceback, and the same exit code as without --debug.
            traceback.print_exc()
        if isinstance(err, KeyboardInterrupt):
            print("runner: interrupted", file=sys.stderr)
        else:
            print(f"error: {err}", file=sys.stderr)
        return exit_code(err)
    finally:
        if undo is not None:
            undo()


def debug_logging(stream: TextIO | None = None) -> Callable[[], None]:
    """`--debug`: runner's loggers at DEBUG to stderr, e.g. every HTTP call on ``runner.http``.

    Only the ``runner`` loggers: other libraries' DEBUG output (Pillow's chunk
    trace, httpcore's connection trace) adds nothing ours lacks, and a
    library's request line is no place to risk a query string. Returns the
    function that undoes it (`main` calls it when the command ends).
    """
    import logging

    logger = logging.getLogger("runner")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    return undo


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="runner",
        description="Batch text-to-image jobs from a YAML manifest, under a rate and a"
        " credit budget.",
    )
    parser.add_argument("--version", action="version", version=f"runner {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="log every HTTP call (no key, no query strings) and show a traceback for errors",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=CommandParser)
    for add in _COMMANDS:
        add(sub)
    return parser


def _add_validate(sub: Subparsers) -> None:
    p = sub.add_parser(
        "validate",
        parents=[common()],
        help="check a manifest; print its job count and estimated credits",
        description="Check a manifest (no requests). Exit 0 if it is usable, 2 if not.",
    )
    p.add_argument("manifest", metavar="MANIFEST", help="path to the manifest YAML")
    p.add_argument(
        "--strict",
        action="store_true",
        help="also exit 1 when the estimate does not fit under budget.max_credits",
    )
    p.set_defaults(handler=_cmd_validate)


def _cmd_validate(args: argparse.Namespace) -> int:
    from runner.manifest import load_manifest
    from runner.plan import make_plan, usd

    plan = make_plan(load_manifest(args.manifest))
    print(f"ok: {plan.jobs:,} jobs, {plan.images:,} images, est {usd(plan.credits)}")
    return _budget_check(plan) if args.strict else EXIT_OK


def _budget_check(plan: Plan) -> int:
    """EXIT_FAILED (1), with one line on stderr, when the plan's estimate exceeds its cap."""
    from runner.plan import usd

    if plan.fits is not False:
        return EXIT_OK
    within = plan.jobs_within_budget or 0
    cap = usd(plan.max_credits) if plan.max_credits is not None else "the cap"
    print(
        f"budget: est {usd(plan.credits)} does not fit under {cap}: "
        f"{within:,} of {plan.jobs:,} jobs would run",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _add_plan(sub: Subparsers) -> None:
    from runner.cli.run import add_shard_budget

    p = sub.add_parser(
        "plan",
        parents=[common()],
        help="jobs, images, estimated credits and shortest duration; no requests",
        description="Count what a run would do, per prompt and in total, without any request.",
    )
    p.add_argument("manifest", metavar="MANIFEST", help="path to the manifest YAML")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument(
        "--rpm", type=rpm_value, metavar="N|auto", help="override budget.requests_per_minute"
    )
    p.add_argument(
        "--max-credits", type=non_negative_float, metavar="USD", help="override budget.max_credits"
    )
    p.add_argument(
        "--provider",
        metavar="NAME[,NAME]",
        help="override api.provider (its limits apply); several, e.g. segmind,xai, "
        "compare credits and shortest duration side by side",
    )
    p.add_argument(
        "--jobs", action="store_true", help="list every job instead (with --json: JSON Lines)"
    )
    p.add_argument("--csv", action="store_true", help="with --jobs: the list as CSV")
    p.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when the estimate does not fit under the budget's max_credits",
    )
    p.add_argument("--shard", metavar="K/N", help="plan only shard K of N (as run --shard)")
    add_shard_budget(p)
    add_subset_arguments(p)
    p.set_defaults(handler=_cmd_plan)


def _cmd_plan_compare(args: argparse.Namespace) -> int:
    from runner.plan_compare import compare, comparison_json, parse_providers, render_comparison

    rows = compare(
        args.manifest,
        parse_providers(args.provider),
        rpm=args.rpm,
        max_credits=args.max_credits,
    )
    if args.json:
        write(sys.stdout, json.dumps(comparison_json(rows), indent=2) + "\n")
    else:
        write(sys.stdout, render_comparison(rows))
    return EXIT_OK


def _cmd_plan(args: argparse.Namespace) -> int:
    from runner.cli.run import shard_share
    from runner.manifest import load_manifest
    from runner.plan import make_plan, plan_json, render_text
    from runner.shard import parse_shard, shard_of
    from runner.sweep import restrict

    if args.provider and "," in args.provider:
        return _cmd_plan_compare(args)
    if args.provider:
        from runner.plan_compare import parse_providers

        parse_providers(args.provider)
    subset = subset_from(args)
    manifest = restrict(load_manifest(args.manifest, provider=args.provider), subset)
    if subset is not None and not (args.jobs or args.csv or args.json):
        print(f"note: a subset of the manifest ({subset.describe()})", file=sys.stderr)
    if args.jobs or args.csv:
        from runner.joblist import write_jobs

        try:
            write_jobs(manifest, sys.stdout, "csv" if args.csv else "json" if args.json else "text")
            sys.stdout.flush()
        except BrokenPipeError:  # `runner plan M --jobs --csv | head` is not an error
            write(sys.stdout, "")
        return EXIT_OK
    max_credits, rpm, share = shard_share(manifest, args, args.max_credits, args.rpm)
    shard = parse_shard(args.shard) if args.shard else None
    plan = make_plan(shard_of(manifest, shard), rpm=rpm, max_credits=max_credits)
    if args.json:
        write(sys.stdout, json.dumps(plan_json(plan), indent=2) + "\n")
    else:
        local = _without_a_key(plan, manifest.api.provider)
        write(sys.stdout, render_text(plan) + "".join(f"{s}\n" for s in (share, local) if s))
    return _budget_check(plan) if args.check else EXIT_OK


def _without_a_key(plan: Plan, provider: str) -> str | None:
    """What `runner run` does without the provider's key: the embedded emulator, faster."""
    from runner.plan import duration
    from runner.providers import LOCAL_TIME_SCALE, PROVIDERS

    key = PROVIDERS[provider].key_env
    if os.environ.get(key):
        return None
    return (
        f"{key} is not set: `run` goes to the embedded emulator at {1 / LOCAL_TIME_SCALE:g}x "
        f"speed: no credits spent, at least ~{duration(plan.min_duration_s * LOCAL_TIME_SCALE)}"
    )


def _add_schema(sub: Subparsers) -> None:
    p = sub.add_parser(
        "schema",
        parents=[common()],
        help="print the JSON Schema of a manifest",
        description="Print the JSON Schema of a manifest (manifests/manifest.schema.json).",
    )
    p.add_argument("--write", type=path_value, metavar="PATH", help="write it to PATH instead")
    p.set_defaults(handler=_cmd_schema)


def _cmd_schema(args: argparse.Namespace) -> int:
    if args.write is not None:
        from runner.starter import write_schema

        write_schema(args.write)
        print(f"{args.write}: the manifest's JSON Schema", file=sys.stderr)
        return EXIT_OK
    write(sys.stdout, schema_text())
    return EXIT_OK


def schema_text() -> str:
    """The manifest's JSON Schema as committed in manifests/manifest.schema.json."""
    from runner.manifest.schema import manifest_schema_text

    return manifest_schema_text()


def _add_run(sub: Subparsers) -> None:
    from runner.cli.run import add_run

    add_run(sub, common())


def _add_export(sub: Subparsers) -> None:
    from runner.cli.data import add_export

    add_export(sub, common())


def _add_grid(sub: Subparsers) -> None:
    from runner.cli.data import add_grid

    add_grid(sub, common())


def _add_init(sub: Subparsers) -> None:
    from runner.cli.data import add_init

    add_init(sub, common())


def _add_status(sub: Subparsers) -> None:
    p = sub.add_parser(
        "status",
        parents=[common()],
        help="counts by state, credits, and the oldest in-flight job of an output folder",
        description="Show an output folder's progress from its ledger (safe during a run).",
    )
    p.add_argument("out", metavar="OUT", type=path_value, nargs="?", help="the output folder")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.add_argument(
        "--coordinator",
        metavar="URL",
        nargs="?",
        const="",
        help="also (or only) show the shared runs on this Redis, across their workers "
        "(no URL: $RUNNER_COORDINATOR)",
    )
    p.add_argument("--run-id", metavar="ID", help="with --coordinator: only this run")
    p.add_argument("--manifest", metavar="MANIFEST", help="with --coordinator: only its run")
    p.set_defaults(handler=_cmd_status)


def _cmd_status(args: argparse.Namespace) -> int:
    from runner.store import folder_status, render_status

    if args.coordinator is not None:
        from runner.coordination.status import status_text

        url = args.coordinator or os.environ.get("RUNNER_COORDINATOR", "")
        write(
            sys.stdout,
            status_text(url, run_id=args.run_id, manifest=args.manifest, as_json=args.json),
        )
        if args.out is None:
            return EXIT_OK
    elif args.out is None:
        raise UsageError("runner status: name an output folder OUT, or --coordinator URL")
    status = folder_status(args.out)
    if args.json:
        doc = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(status).items()}
        write(sys.stdout, json.dumps(doc, indent=2) + "\n")
    else:
        text = render_status(status)
        write(sys.stdout, text if text.endswith("\n") else text + "\n")  # a shell prompt after it
    return EXIT_OK


def _add_verify(sub: Subparsers) -> None:
    p = sub.add_parser(
        "verify",
        parents=[common()],
        help="check every image against its sidecar; exit 1 on any problem",
        description="Check every image of an output folder against its sidecar (sha256, "
        "size, format, pixels); report orphans and leftover temp files. Exit 1 on any problem.",
    )
    p.add_argument("out", metavar="OUT", type=path_value, help="the output folder")
    p.set_defaults(handler=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    from runner.store import render_verify, verify

    report = verify(args.out)
    write(sys.stdout, render_verify(report))
    return EXIT_OK if report.clean else EXIT_FAILED


def _add_gallery(sub: Subparsers) -> None:
    p = sub.add_parser(
        "gallery",
        parents=[common()],
        help="(re)write OUT/gallery.html, a contact sheet of an output folder",
        description="Write OUT/gallery.html: one self-contained page (works from file://) "
        "laying the images out in a grid by the swept parameters of your choice.",
    )
    p.add_argument("out", metavar="OUT", type=path_value, help="the output folder")
    add_subset_arguments(p)
    p.set_defaults(handler=_cmd_gallery)


def _cmd_gallery(args: argparse.Namespace) -> int:
    from runner.reporting.gallery import write_gallery

    result = write_gallery(args.out, subset=subset_from(args))
    write(sys.stdout, f"{result.path}\n")
    return EXIT_OK


def _add_merge(sub: Subparsers) -> None:
    p = sub.add_parser(
        "merge",
        parents=[common()],
        help="combine the output folders of shards or of a shared run's workers into one "
        "verified folder",
        description="Copy the images and sidecars of several output folders (the shards or "
        "workers of one run) into OUT, merge their ledgers, write summary and gallery (and "
        "JUnit), verify, and check that every job of the manifest is there. Refuses differing "
        "copies of a job (paid twice) before writing anything. Exit 1 when a job of the "
        "manifest is missing (unless --partial) or OUT does not verify. docs/ci.md",
    )
    p.add_argument(
        "sources", metavar="OUT_A", type=path_value, nargs="+", help="the folders to merge"
    )
    p.add_argument(
        "--into", metavar="OUT", type=path_value, required=True, help="the merged folder"
    )
    p.add_argument("--title", help="the gallery's title (default: the folder's name)")
    p.add_argument(
        "--manifest",
        metavar="MANIFEST",
        help="check completeness against this manifest (default: the one the folders' "
        "sidecars name)",
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="exit 0 although jobs of the manifest are missing (they are still listed)",
    )
    p.add_argument(
        "--junit",
        type=path_value,
        metavar="PATH",
        help="write the merged JUnit XML: a test per job of the manifest (the shards' "
        "--junit files in one)",
    )
    p.set_defaults(handler=_cmd_merge)


# Above this many jobs a merge does not hold the manifest's jobs to check them.
MERGE_CHECK_UP_TO = 1_000_000


def _cmd_merge(args: argparse.Namespace) -> int:
    from runner.merge import merge, recorded_manifest, render_merge
    from runner.params import DEFAULT_PRICES

    path = args.manifest or recorded_manifest(args.sources)
    if path is not None and not args.manifest and args.partial and not Path(path).is_file():
        print(
            f"note: {path} (the folders' manifest) is gone: completeness not checked",
            file=sys.stderr,
        )
        path = None
    jobs = None
    prices = DEFAULT_PRICES
    name = "runner"
    if path is None and not args.partial:
        raise UsageError(
            "runner merge: the folders name no manifest to check completeness against; "
            "pass --manifest MANIFEST (or --partial to merge without the check)"
        )
    if path is not None:
        from runner.manifest import load_manifest
        from runner.sweep import count_jobs, expand

        try:
            manifest = load_manifest(path)
        except UsageError as err:
            raise UsageError(
                f"runner merge: cannot check completeness against {path}: {err} "
                "(pass --manifest MANIFEST, or --partial)"
            ) from None
        total = count_jobs(manifest)
        if total > MERGE_CHECK_UP_TO:
            raise UsageError(
                f"runner merge: {path} has {total:,} jobs, above the {MERGE_CHECK_UP_TO:,} a "
                "merge checks; pass --partial to merge without the check"
            )
        jobs = {job.key: job for job in expand(manifest)}
        prices = manifest.prices
        name = manifest.name or name
    report = merge(
        args.sources,
        args.into,
        argv=[str(s) for s in args.sources],
        title=args.title,
        jobs=jobs,
        prices=prices,
        manifest=path,
    )
    if args.junit is not None:
        from runner.reporting.junit import write_junit

        write_junit(args.junit, args.into, jobs=jobs, name=name, prices=prices)
    write(sys.stdout, render_merge(report))
    if not report.complete:
        hint = "" if args.partial else " (--partial: accept it)"
        print(
            f"runner merge: {report.missing_count:,} job(s) of the manifest are missing; merge "
            f"the folders of the shards that ran them{hint}",
            file=sys.stderr,
        )
    if not report.verify.clean or (not report.complete and not args.partial):
        return EXIT_FAILED
    return EXIT_OK


def _add_emulator(sub: Subparsers) -> None:
    p = sub.add_parser(
        "emulator",
        parents=[common()],
        help="serve the Segmind API emulator on loopback",
        description="Serve the local emulator of the Segmind API (docs/emulator.md).",
    )
    # Only `runner emulator` itself imports the emulator (uvicorn, starlette, Pillow).
    p.populate = _emulator_arguments
    p.set_defaults(handler=_cmd_emulator)


def _emulator_arguments(parser: argparse.ArgumentParser) -> None:
    from runner.emulator.server import add_arguments

    add_arguments(parser)


def _cmd_emulator(args: argparse.Namespace) -> int:
    from runner.emulator.server import main_from_args

    return main_from_args(args)


_COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_run,
    _add_plan,
    _add_validate,
    _add_init,
    _add_status,
    _add_verify,
    _add_gallery,
    _add_grid,
    _add_export,
    _add_merge,
    _add_emulator,
    _add_schema,
)
