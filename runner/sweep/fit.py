"""Where a cap falls inside one prompt: its leading jobs that fit in µ$, by arithmetic. Pure.

Counted in integer micro-dollars (runner.money), as the credit guard
reserves them, so the cut is the one a run would make.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from runner.manifest import Manifest, Prompt, Unit, Value
from runner.money import Micros, micros
from runner.sweep.space import Assignment, Space, excluded, included
from runner.sweep.tally import deciding_names, job_credits, weighted


def fit_in(manifest: Manifest, space: Space, left: Micros) -> tuple[int, Micros]:
    """Jobs and µ$ of the prompt's leading jobs, in expansion order, that fit in `left` µ$.

    The jobs before the first that would pass `left`, as the credit guard
    reserves them, by arithmetic: a subtree of the odometer (the units after
    a fixed prefix) is added whole by its tally when it fits, and descended
    into only where the cap falls, so a cap inside a prompt of 10^12 jobs
    costs about (units x values per unit) tallies, not a walk of the jobs.
    """
    deciding = deciding_names(space)
    jobs, spent, stopped = _fit(
        space.units, dict(space.prompt.base), deciding, manifest, space, left=left
    )
    if stopped:
        return jobs, Micros(spent)
    for values in included(space, space.prompt.vars):
        fits, cost = _fits_repeats(manifest, space.prompt, values, left - spent)
        jobs, spent = jobs + fits, spent + fits * cost
        if fits < manifest.repeat:
            break
    return jobs, Micros(spent)


def _fit(
    units: Sequence[Unit],
    start: Assignment,
    deciding: set[str],
    manifest: Manifest,
    space: Space,
    *,
    left: int,
) -> tuple[int, int, bool]:
    """(jobs, µ$, stopped) of the leading jobs of the product of `units` under `start`."""
    if not units:
        if excluded(space, start):
            return 0, 0, False
        fits, cost = _fits_repeats(manifest, space.prompt, start, left)
        return fits, fits * cost, fits < manifest.repeat
    head, rest = units[0], units[1:]
    jobs = spent = 0
    rows: Iterable[tuple[Value, ...]] = head.values
    if not deciding.intersection(head.names):
        # Every value of this unit leads to the same subtree: skip whole copies at once.
        per_jobs, per_cost = _micro_tally(rest, deciding, {**start}, manifest, space)
        copies = len(head.values) if per_cost == 0 else min(len(head.values), left // per_cost)
        if copies == len(head.values):
            return copies * per_jobs, copies * per_cost, False
        jobs, spent = copies * per_jobs, copies * per_cost
        rows = itertools.islice(head.values, copies, None)
    for row in rows:
        values = {**start, **dict(zip(head.names, row, strict=True))}
        sub_jobs, sub_cost = _micro_tally(rest, deciding, values, manifest, space)
        if spent + sub_cost <= left:
            jobs, spent = jobs + sub_jobs, spent + sub_cost
            continue
        more, cost, _ = _fit(rest, values, deciding, manifest, space, left=left - spent)
        return jobs + more, spent + cost, True
    return jobs, spent, False


def _fits_repeats(
    manifest: Manifest, prompt: Prompt, values: Assignment, left: int
) -> tuple[int, int]:
    """How many of one combination's `repeat` jobs fit in `left` µ$, and one job's µ$."""
    cost = micros(job_credits(manifest, values, prompt))
    if cost == 0:
        return manifest.repeat, 0
    return min(manifest.repeat, max(0, left // cost)), cost


def _micro_tally(
    units: Sequence[Unit],
    deciding: set[str],
    start: Assignment,
    manifest: Manifest,
    space: Space,
) -> tuple[int, int]:
    """(jobs, µ$) of the product of `units` under `start`, repeat included, in integers.

    As `tally`, walking only the units that decide a price or an exclude.
    """
    jobs = cost = 0
    for values, times in weighted(space, units, deciding, start):
        jobs += times
        cost += times * micros(job_credits(manifest, values, space.prompt))
    return jobs * manifest.repeat, cost * manifest.repeat
