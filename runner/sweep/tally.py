"""Counts of a job space by arithmetic over its units: jobs, images, estimated credits. Pure.

Only the units that decide a job's price or whether an include or exclude
entry applies are walked; every other unit multiplies the count by its
length. So `runner plan` of a million jobs walks only those units.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from runner.manifest import Manifest, Prompt, Unit, Value
from runner.params import price
from runner.providers import provider
from runner.sweep.expand import expand
from runner.sweep.space import (
    Assignment,
    Space,
    combine,
    excluded,
    is_new,
    more_images,
    n_of,
    spaces,
)

# `image` too: on a provider that bills an edit's sources, an edit costs more.
_PRICED = ("mode", "resolution", "n", "image")


@dataclass(frozen=True, slots=True)
class Tally:
    """Counts for a set of jobs: jobs, images (sum of n) and estimated credits (USD)."""

    jobs: int = 0
    images: int = 0
    credits: float = 0.0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.jobs + other.jobs, self.images + other.images, self.credits + other.credits
        )


def count_jobs(manifest: Manifest) -> int:
    """The number of jobs `expand` yields, by arithmetic (no jobs are built).

    A subset (`restrict`) is counted by walking its jobs instead.
    """
    if manifest.subset is not None:
        return sum(1 for _ in expand(manifest))
    return sum(tally(manifest, space).jobs for space in spaces(manifest))


def tally(manifest: Manifest, space: Space) -> Tally:
    """Jobs, images and credits of one prompt, repeat included, by arithmetic over its units.

    Only the units that decide a job's price or whether an exclude or include
    applies are walked; the others multiply. Equal to summing over
    `assignments` (tests check it), in O(those units' product), not O(jobs).
    """
    named = _entry_names(space)
    deciding = named | set(_PRICED)
    total = _walk(space.units, deciding, dict(space.prompt.base), manifest, space, included=None)
    for j, entry in enumerate(space.include):
        free = tuple(u for u in space.prompt.vars if not dict(entry.values).keys() & set(u.names))
        start: Assignment = {**space.prompt.base, **dict(entry.values)}
        total += _walk(free, named, start, manifest, space, included=j)
    return Tally(
        total.jobs * manifest.repeat,
        total.images * manifest.repeat,
        total.credits * manifest.repeat,
    )


def deciding_names(space: Space) -> set[str]:
    """The names whose values decide a job's price or whether an include or exclude applies."""
    return _entry_names(space) | set(_PRICED)


def weighted(
    space: Space,
    units: Sequence[Unit],
    deciding: set[str],
    start: Assignment,
    *,
    included: int | None = None,
) -> Iterator[tuple[Assignment, int]]:
    """The kept combinations of the product of `units` over `start`, each with the number of
    jobs it stands for (before repeat).

    Only the units that name a `deciding` key are walked; the others multiply.
    Kept: not excluded, or with `included`, new to that include entry.
    """
    walked = [u for u in units if deciding.intersection(u.names)]
    times = math.prod(len(u.values) for u in units if not deciding.intersection(u.names))
    for values in combine(start, walked):
        keep = not excluded(space, values) if included is None else is_new(space, included, values)
        if keep:
            yield values, times


def job_credits(
    manifest: Manifest, values: Mapping[str, Value | None], prompt: Prompt | None = None
) -> float:
    """Estimated USD of one request of `prompt` with these values, from the manifest's price
    table (with the source images of an edit, where the provider bills them)."""
    sources = 0 if values.get("image") is None else 1 + len(more_images(manifest, prompt, values))
    images = provider(manifest.api.provider).billed_images(n_of(values), sources)
    return price(str(values["mode"]), str(values["resolution"]), images, manifest.prices)


def _entry_names(space: Space) -> set[str]:
    return {name for entry in (*space.exclude, *space.include) for name, _ in entry.values}


def _walk(
    units: Sequence[Unit],
    deciding: set[str],
    start: Assignment,
    manifest: Manifest,
    space: Space,
    *,
    included: int | None,
) -> Tally:
    """Sum over the product of `units`, walking only those that name a `deciding` key."""
    jobs = images = 0
    credits = 0.0
    for values, times in weighted(space, units, deciding, start, included=included):
        jobs += times
        images += times * n_of(values)
        credits += times * job_credits(manifest, values, space.prompt)
    return Tally(jobs, images, credits)
