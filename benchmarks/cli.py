"""`python -m benchmarks` (`make bench`): run the scenarios, write the report.

    python -m benchmarks                     # everything; writes docs/benchmarks.md and .json
    python -m benchmarks --quick             # a smoke run of under a minute
    python -m benchmarks --only rate,peers   # some scenarios
    python -m benchmarks --out DIR           # write the report to DIR instead

A full run writes docs/. A `--quick` or `--only` run writes to
build/bench/ unless `--out` says otherwise, so a smoke run never replaces
the committed figures. The markdown is also printed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from benchmarks import findings, machine
from benchmarks.clients import ROOT
from benchmarks.processes import ProcessFailed
from benchmarks.report import Section, render_markdown, to_json
from benchmarks.scenarios import emulator, learn, peers, polling, rate, scale, workers
from benchmarks.settings import Settings

SCENARIOS: Final[dict[str, Callable[[Settings], Section]]] = {
    "rate": rate.run,
    "polling": polling.run,
    "peers": peers.run,
    "scale": scale.run,
    "emulator": emulator.run,
    "workers": workers.run,
    "learn": learn.run,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; --only names are checked against SCENARIOS."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="The runner against its peers and the ideal bound, on a loopback emulator.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: under a minute")
    parser.add_argument(
        "--only",
        action="append",
        metavar="SCENARIO",
        help=f"run only these (repeatable or comma-separated): {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for benchmarks.md and benchmarks.json (default: docs/ for a full run, "
        "build/bench/ otherwise)",
    )
    args = parser.parse_args(argv)
    chosen: list[str] = []
    for item in args.only or []:
        chosen += [name.strip() for name in item.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"--only {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}")
    args.scenarios = chosen or list(SCENARIOS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run, write, print. Exit 0, or 1 when a scenario could not run."""
    args = parse_args(argv)
    settings = Settings.make(args.quick)
    partial = args.quick or len(args.scenarios) < len(SCENARIOS)
    out = args.out or (ROOT / "build" / "bench" if partial else ROOT / "docs")
    before = machine.describe(ROOT)
    started = time.perf_counter()
    sections: list[Section] = []
    for name in args.scenarios:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            section = SCENARIOS[name](settings)
        except ProcessFailed as err:
            print(f"bench: {name} failed: {err}", file=sys.stderr)
            return 1
        print(f"bench: {name} done in {section.seconds:.0f} s", file=sys.stderr, flush=True)
        sections.append(section)
    total = time.perf_counter() - started
    after = machine.describe(ROOT)
    command = "make bench" + (
        f" ARGS={shlex.quote(' '.join(argv or sys.argv[1:]))}" if partial else ""
    )
    header = findings.header(before, after, total, command, settings)
    text = render_markdown(
        sections, header=header, closing=findings.closing_notes(sections, before, after)
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.md").write_text(text, encoding="utf-8")
    figures = {
        "command": command,
        "machine": {"before": before, "after": after},
        "seconds": round(total, 1),
        "settings": {
            "quick": settings.quick,
            "scale": settings.scale,
            "small_scale": settings.small_scale,
        },
        "scenarios": {s.key: to_json(s) for s in sections},
    }
    (out / "benchmarks.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    sys.stdout.write(text)
    print(
        f"bench: wrote {out / 'benchmarks.md'} and benchmarks.json in {total:.0f} s",
        file=sys.stderr,
    )
    return 0
