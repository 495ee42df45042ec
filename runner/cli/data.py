"""The data commands: `runner export`, `runner grid` and `runner init`. Thin, over the library.

Each `add_<name>` registers one subcommand (called from `runner.cli`'s
command list, with its common parent parser); the work is in
`runner.export`, `runner.reporting.grid` and `runner.starter`.
"""

from __future__ import annotations

import argparse
import io
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from runner.cli.args import CommandParser, path_value, write
from runner.subset import add_subset_arguments, subset_from

if TYPE_CHECKING:
    from runner.cli.args import Subparsers


def add_export(sub: Subparsers, common: CommandParser) -> None:
    """Register `runner export`."""
    p = sub.add_parser(
        "export",
        parents=[common],
        help="one row per image of an output folder (CSV or JSON Lines), for pipelines",
        description="Write one row per image of OUT, read from its sidecars: job key, prompt,"
        " params, vars, file, sha256, credits, request id and timings.",
    )
    p.add_argument("out", metavar="OUT", type=path_value, help="the output folder")
    form = p.add_mutually_exclusive_group(required=True)
    form.add_argument("--csv", action="store_true", help="CSV with a header row")
    form.add_argument("--jsonl", action="store_true", help="JSON Lines: one object per image")
    p.add_argument(
        "-o", "--output", type=path_value, metavar="PATH", help="write here (default: stdout)"
    )
    add_subset_arguments(p)
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """The handler of `runner export`."""
    from runner.export import ExportFormat, write_export
    from runner.store import write_atomic

    fmt: ExportFormat = "csv" if args.csv else "jsonl"
    subset = subset_from(args)
    if args.output is None:
        try:
            write_export(args.out, sys.stdout, fmt, subset)
            sys.stdout.flush()
        except BrokenPipeError:  # `runner export OUT --csv | head` is not an error
            write(sys.stdout, "")
        return 0
    # A file is written whole and atomically: a reader never sees half an export.
    buffer = io.StringIO()
    count = write_export(args.out, buffer, fmt, subset)
    write_atomic(args.output, buffer.getvalue().encode("utf-8"))
    print(f"{args.output}: {count:,} images", file=sys.stderr)
    return 0


def add_grid(sub: Subparsers, common: CommandParser) -> None:
    """Register `runner grid`."""
    p = sub.add_parser(
        "grid",
        parents=[common],
        help="a labelled contact sheet image (PNG/JPEG/WebP) of an output folder, by two axes",
        description="Compose the images of OUT into one labelled picture: one axis down, one"
        " across (a param such as mode, a var such as color, prompt or repeat), failed cells"
        " marked. Sized for a pull-request comment.",
    )
    p.add_argument("out", metavar="OUT", type=path_value, help="the output folder")
    p.add_argument("--rows", required=True, metavar="AXIS", help="the axis down the sheet")
    p.add_argument("--cols", required=True, metavar="AXIS", help="the axis across the sheet")
    p.add_argument(
        "-o",
        "--output",
        type=path_value,
        required=True,
        metavar="PATH",
        help="grid.png, .jpg or .webp",
    )
    p.add_argument("--title", help="the heading (default: the folder's name)")
    add_subset_arguments(p)
    p.set_defaults(handler=cmd_grid)


def cmd_grid(args: argparse.Namespace) -> int:
    """The handler of `runner grid`."""
    from runner.reporting.grid import write_grid

    layout = write_grid(
        args.out,
        args.output,
        rows=args.rows,
        cols=args.cols,
        subset=subset_from(args),
        title=args.title,
    )
    shown = sum(1 for cell in layout.cells.values() if cell.image is not None)
    print(
        f"{args.output}: {len(layout.rows)} x {len(layout.cols)} cells, {shown} with an image",
        file=sys.stderr,
    )
    return 0


def add_init(sub: Subparsers, common: CommandParser) -> None:
    """Register `runner init`."""
    p = sub.add_parser(
        "init",
        parents=[common],
        help="start a project: a manifest with its schema, a .gitignore, a CI workflow example",
        description="Write a starter manifest.yaml with manifest.schema.json beside it, a"
        " .gitignore for outputs/ and an example GitHub Actions workflow into DIR. Existing"
        " files are kept unless --force.",
    )
    p.add_argument("dir", metavar="DIR", type=path_value, nargs="?", default=Path("."), help="(.)")
    p.add_argument("--name", help="the run's name (default: the folder's name, made safe)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")
    p.set_defaults(handler=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    """The handler of `runner init`."""
    from runner.starter import write_starter

    result = write_starter(args.dir, name=args.name, force=args.force)
    for path in result.written:
        print(f"wrote {path}")
    for path in result.kept:
        print(f"kept  {path} (exists; --force to overwrite)")
    from runner.cli.run import invocation

    # Started the way the user started this command (`.venv/bin/runner` after `make run`).
    manifest = shlex.quote(str(args.dir / "manifest.yaml"))
    me = invocation(sys.argv[0])
    print(f"next: {me} validate {manifest} && {me} plan {manifest}")
    return 0
