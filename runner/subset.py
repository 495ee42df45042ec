"""Subsets of a run: `--filter EXPR` (repeatable, ANDed) and `--limit N`. Pure.

    runner plan m.yaml --filter 'mug*' --filter mode=quality --filter color=red --limit 5

An expression is one of

- ``GLOB``: the prompt id matches the glob (``mug``, ``mug-*``, ``shot-?``);
- ``NAME=GLOB``: a request param (mode, aspect_ratio, resolution, n,
  output_format, image) or a var of the job has a value matching the glob
  (``mode=quality``, ``color=r*``); a job without that var does not match.

A job is in the subset when every condition holds; `--limit N` then keeps the
first N such jobs in expansion order. The one filter is `Subset.select` over
the lazy job stream (`runner.sweep.expand` applies it), and `Subset.matches`
over the same text values, which is what the gallery and the grid use for
images already made. Globs are `fnmatch.fnmatchcase` (case-sensitive).
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from runner.errors import UsageError
from runner.jobs import Job

if TYPE_CHECKING:
    from runner.shard import Shard

PARAMS: Final = ("mode", "aspect_ratio", "resolution", "n", "output_format", "image")
"""The request params a filter can name (besides vars)."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Condition:
    """One `--filter`: `name` None tests the prompt id, else a param or var's value."""

    name: str | None
    pattern: str

    def holds(self, prompt_id: str, values: Mapping[str, str]) -> bool:
        """Whether a job with this prompt id and these text values meets the condition."""
        if self.name is None:
            return fnmatch.fnmatchcase(prompt_id, self.pattern)
        value = values.get(self.name)
        return value is not None and fnmatch.fnmatchcase(value, self.pattern)

    def __str__(self) -> str:
        return self.pattern if self.name is None else f"{self.name}={self.pattern}"


@dataclass(frozen=True, slots=True)
class Subset:
    """The jobs meeting every condition, at most `limit` of them (None: all)."""

    conditions: tuple[Condition, ...] = ()
    limit: int | None = None
    # `--shard K/N` (runner.shard.shard_of): of the jobs kept, the Kth of every N.
    shard: Shard | None = None

    def matches(self, prompt_id: str, values: Mapping[str, str]) -> bool:
        """Whether a job (its prompt id, params and vars as text) meets every condition."""
        return all(c.holds(prompt_id, values) for c in self.conditions)

    def select(self, jobs: Iterable[Job]) -> Iterator[Job]:
        """The subset of a job stream, lazily and in order."""
        kept: Iterator[Job] = (job for job in jobs if self.matches(job.prompt_id, job_values(job)))
        if self.limit is not None:
            kept = itertools.islice(kept, self.limit)
        shard = self.shard
        if shard is not None:
            kept = (job for position, job in enumerate(kept) if shard.owns(position))
        return kept

    def describe(self) -> str:
        """A short text for messages: ``filter mode=quality, limit 5``."""
        parts = []
        if self.conditions:
            parts.append("filter " + " AND ".join(str(c) for c in self.conditions))
        if self.limit is not None:
            parts.append(f"limit {self.limit:,}")
        if self.shard is not None:
            parts.append(f"shard {self.shard.index}/{self.shard.count}")
        return ", ".join(parts) or "all jobs"


def job_values(job: Job) -> dict[str, str]:
    """A job's params and vars as the text a filter compares (vars win over nothing: disjoint)."""
    request = job.request
    values = {
        "mode": request.mode,
        "aspect_ratio": request.aspect_ratio,
        "resolution": request.resolution,
        "n": str(request.n),
        "output_format": request.output_format,
    }
    if request.image is not None:
        values["image"] = request.image.source
    values.update(job.vars)
    return values


def parse_condition(text: str) -> Condition:
    """Parse one `--filter` expression; UsageError naming it when malformed."""
    if "=" not in text:
        if not text.strip():
            raise UsageError("--filter '': give a prompt id glob or NAME=VALUE, e.g. mode=quality")
        return Condition(None, text.strip())
    name, _, pattern = text.partition("=")
    name = name.strip()
    if not _NAME.match(name):
        raise UsageError(
            f"--filter {text!r}: `{name}` is not a param or var name;"
            " write NAME=VALUE (e.g. mode=quality, color=red) or a prompt id glob"
        )
    return Condition(name, pattern.strip())


def parse_subset(filters: Iterable[str] | None, limit: int | None) -> Subset | None:
    """The subset the CLI flags ask for, or None when neither flag is given."""
    conditions = tuple(parse_condition(text) for text in filters or ())
    if not conditions and limit is None:
        return None
    if limit is not None and limit < 0:
        raise UsageError(f"--limit {limit}: give 0 or more jobs")
    return Subset(conditions, limit)


def add_subset_arguments(parser: argparse.ArgumentParser) -> None:
    """Register `--filter` and `--limit` on a command (plan, run, gallery, grid)."""
    parser.add_argument(
        "--filter",
        action="append",
        metavar="EXPR",
        help="only jobs matching EXPR: a prompt id glob, or NAME=VALUE for a param or var"
        " (globs allowed: color=r*); repeat it to AND several",
    )
    parser.add_argument(
        "--limit", type=int, metavar="N", help="only the first N jobs (after --filter)"
    )


def subset_from(args: argparse.Namespace) -> Subset | None:
    """The subset of parsed `--filter` / `--limit` flags (None: all jobs)."""
    return parse_subset(getattr(args, "filter", None), getattr(args, "limit", None))
