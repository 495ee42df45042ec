"""A plan's rows: counts per prompt (or prompts file), and the leading jobs within a cap. Pure.

A whole manifest is counted by arithmetic (`tally`, and `fit_in` where the
cap falls); a subset (a filter, a limit or a shard) has no arithmetic over
the units, so its jobs are walked one by one, up to `MAX_WALKED_JOBS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from runner.errors import UsageError
from runner.jobs import Job
from runner.manifest import Manifest
from runner.money import Micros, micros, to_usd
from runner.params import price
from runner.sweep.expand import expand_all
from runner.sweep.fit import fit_in
from runner.sweep.space import spaces
from runner.sweep.tally import Tally, tally

MAX_WALKED_JOBS: Final = 1_000_000
"""Most jobs a subset's plan walks (about a minute at ~50 µs a job) before it refuses."""


@dataclass(frozen=True, slots=True)
class SubsetTally:
    """A subset's counts, walked job by job: per prompt (in order), and what fits a cap.

    `within_jobs` / `within_credits` (USD) are the jobs, in expansion order,
    before the first that would pass the cap (all of them without a cap).
    """

    prompts: tuple[tuple[str, Tally], ...]
    within_jobs: int
    within_credits: float


def tally_subset(manifest: Manifest, cap: float | None) -> SubsetTally:
    """Count `expand(manifest)` (a restricted manifest) job by job, in O(1) memory per prompt.

    Raises UsageError when the walk passes `MAX_WALKED_JOBS` jobs of the
    whole expansion (a subset of a huge manifest).

    Credits are summed in integer micro-dollars (runner.money), as the credit
    guard reserves them, so a long subset does not drift past the cap.
    """
    per_prompt: dict[str, tuple[int, int, int]] = {}
    limit = None if cap is None else micros(cap)
    within_jobs, spent, stopped = 0, 0, False
    label = _row_label(manifest)
    subset = manifest.subset
    jobs_in = expand_all(manifest) if subset is None else subset.select(_bounded_walk(manifest))
    for job in jobs_in:
        request = job.request
        cost = micros(
            price(request.mode, request.resolution, request.billed_images, manifest.prices)
        )
        row = label(job.prompt_id)
        jobs, images, total = per_prompt.get(row, (0, 0, 0))
        per_prompt[row] = (jobs + 1, images + request.n, total + cost)
        if not stopped and (limit is None or spent + cost <= limit):
            within_jobs, spent = within_jobs + 1, spent + cost
        else:
            stopped = True
    return SubsetTally(
        prompts=tuple(
            (pid, Tally(jobs, images, to_usd(total)))
            for pid, (jobs, images, total) in per_prompt.items()
        ),
        within_jobs=within_jobs,
        within_credits=to_usd(spent),
    )


def tally_files(manifest: Manifest, cap: float | None) -> SubsetTally:
    """Count a manifest with `prompts_from` files: one row per inline prompt and per file.

    Each prompt is counted by arithmetic (`tally`) as it streams by, so a
    file of a million prompts plans in the memory of one; only the prompt
    where `cap` (USD) falls is cut, by arithmetic too (`fit_in`), in micro-dollars.
    """
    rows: dict[str, Tally] = {}
    limit = None if cap is None else micros(cap)
    within_jobs, spent, stopped = 0, 0, False
    label = _row_label(manifest)
    for space in spaces(manifest):
        t = tally(manifest, space)
        row = label(space.prompt.id)
        rows[row] = rows.get(row, Tally()) + t
        if stopped:
            continue
        if limit is None or spent + micros(t.credits) <= limit:
            within_jobs, spent = within_jobs + t.jobs, spent + micros(t.credits)
            continue
        stopped = True
        fits, cost = fit_in(manifest, space, Micros(limit - spent))
        within_jobs, spent = within_jobs + fits, spent + cost
    return SubsetTally(tuple(rows.items()), within_jobs, to_usd(spent))


def _bounded_walk(manifest: Manifest) -> Iterator[Job]:
    """The whole expansion, for a subset's walk; UsageError past `MAX_WALKED_JOBS` jobs.

    A filter, a limit or a shard has no arithmetic over the units here: its
    jobs are found by walking the expansion, which on 10^12 jobs would never
    end. Refusing, naming the limit, is the defined end of that walk.
    """
    subset = manifest.subset
    described = subset.describe() if subset is not None else "all jobs"
    refusal = UsageError(
        f"{described}: planning a subset walks the manifest job by job, and it has more"
        f" than {MAX_WALKED_JOBS:,} jobs (the limit of that walk); plan the whole manifest"
        " (counted by arithmetic), or narrow it with exclude or fewer values"
    )
    # Without a --limit to end it early, a walk past the limit is known at once.
    whole = sum(tally(manifest, space).jobs for space in spaces(manifest))
    if subset is not None and subset.limit is None and whole > MAX_WALKED_JOBS:
        raise refusal
    for walked, job in enumerate(expand_all(manifest)):
        if walked >= MAX_WALKED_JOBS:
            raise refusal
        yield job


def _row_label(manifest: Manifest) -> Callable[[str], str]:
    """A plan row's name for a prompt id: the id of an inline prompt, else its file."""
    inline = {prompt.id for prompt in manifest.prompts}
    files = ", ".join(source.shown for source in manifest.prompt_files)
    return lambda prompt_id: prompt_id if prompt_id in inline else files
