"""Sweep expansion: a Manifest in, a lazy and deterministic stream of Jobs out. Pure.

Each prompt has a job *space*: the cartesian product of its units (its vars
in declared order, then the sweep axes in declared order, then the zip
groups), walked in odometer order with the last unit varying fastest; minus
the combinations an `exclude` entry matches; then the `include` entries in
file order. Every combination yields `repeat` jobs (repeat index innermost).
Prompts come in file order and `Job.index` counts across all of them.

Nothing is materialised: `itertools.product` holds only the unit lists (a
`vars_from` file's rows are never given to it: `_product` streams them as
the outermost loop, re-reading the file), and
include de-duplication is tested against the product's *definition* (is
each value in its unit's list? does an exclude match?) rather than against
a set of produced jobs. Counts, images and credits come from arithmetic over
the units (`tally`), so `runner plan` of a million jobs walks only the units
that decide a job's price or its exclusion.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from runner.errors import UsageError
from runner.jobs import ImageInput, Job, Request, make_job
from runner.manifest import AXES, Combination, Manifest, Prompt, Unit, Value
from runner.money import Micros, micros, to_usd
from runner.params import price
from runner.providers import provider
from runner.subset import PARAMS, Subset

Assignment = dict[str, Value | None]
"""Axis and var names -> values for one combination (vars may be absent in a tally)."""

# `image` too: on a provider that bills an edit's sources, an edit costs more.
_PRICED = ("mode", "resolution", "n", "image")


@dataclass(frozen=True, slots=True)
class Space:
    """The job space of one prompt: its units and the entries that concern it.

    `varying` names the axes whose values differ between the prompt's jobs
    (swept or zipped with two or more values, or set by an include); they go
    into `Job.sweep`.
    """

    prompt: Prompt
    units: tuple[Unit, ...]
    exclude: tuple[Combination, ...]
    include: tuple[Combination, ...]
    varying: tuple[str, ...]


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


def spaces(manifest: Manifest) -> Iterator[Space]:
    """The job space of each prompt, in file order."""
    for prompt in manifest.all_prompts():
        units = manifest.units(prompt)
        include = tuple(e for e in manifest.include if e.applies_to(prompt))
        varying = [n for u in units if not u.is_var and len(u.values) > 1 for n in u.names]
        named = {name for entry in include for name, _ in entry.values}
        varying += [name for name in AXES if name in named and name not in varying]
        yield Space(
            prompt=prompt,
            units=units,
            exclude=tuple(e for e in manifest.exclude if e.applies_to(prompt)),
            include=include,
            varying=tuple(varying),
        )


def expand(manifest: Manifest) -> Iterator[Job]:
    """Every job of the manifest, lazily, in the documented deterministic order.

    With `manifest.subset` (see `restrict`), only the subset's jobs, each
    with the index and key it has in the whole expansion.
    """
    jobs = _expand(manifest)
    return jobs if manifest.subset is None else manifest.subset.select(jobs)


def restrict(manifest: Manifest, subset: Subset | None) -> Manifest:
    """`manifest` whose expansion, count and plan are those of `subset` (None: all jobs).

    Raises UsageError for a filter naming neither a param nor a var of any
    prompt, with a "did you mean".
    """
    if subset is None:
        return manifest
    known = {*PARAMS, *(name for prompt in manifest.prompts for name in prompt.var_names)}
    for condition in subset.conditions:
        if condition.name is not None and condition.name not in known:
            close = difflib.get_close_matches(condition.name, sorted(known), n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise UsageError(
                f"--filter {str(condition)!r}: `{condition.name}` is neither a request param nor"
                f" a var of any prompt ({hint}params: {', '.join(PARAMS)})"
            )
    return replace(manifest, subset=subset)


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
    jobs_in = _expand(manifest) if subset is None else subset.select(_bounded_walk(manifest))
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


MAX_WALKED_JOBS: Final = 1_000_000
"""Most jobs a subset's plan walks (about a minute at ~50 µs a job) before it refuses."""


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
    for walked, job in enumerate(_expand(manifest)):
        if walked >= MAX_WALKED_JOBS:
            raise refusal
        yield job


def _row_label(manifest: Manifest) -> Callable[[str], str]:
    """A plan row's name for a prompt id: the id of an inline prompt, else its file."""
    inline = {prompt.id for prompt in manifest.prompts}
    files = ", ".join(source.shown for source in manifest.prompt_files)
    return lambda prompt_id: prompt_id if prompt_id in inline else files


def _expand(manifest: Manifest) -> Iterator[Job]:
    index = 0
    for space in spaces(manifest):
        names = space.prompt.var_names
        for values in assignments(space):
            var_values = tuple((name, str(values[name])) for name in names)
            request = _request(manifest, space.prompt, values, dict(var_values))
            sweep = tuple((name, _value(values, name)) for name in space.varying)
            for repeat in range(manifest.repeat):
                yield make_job(
                    index=index,
                    prompt_id=space.prompt.id,
                    request=request,
                    model=manifest.model,
                    endpoint=manifest.api.endpoint,
                    vars=var_values,
                    sweep=sweep,
                    repeat=repeat,
                )
                index += 1


def assignments(space: Space) -> Iterator[Assignment]:
    """The combinations of one prompt (before repeat): the product less excludes, then includes."""
    base = space.prompt.base
    for rows in _product(space.units):
        values: Assignment = dict(base)
        for unit, row in zip(space.units, rows, strict=True):
            values.update(zip(unit.names, row, strict=True))
        if not _excluded(space, values):
            yield values
    yield from _included(space, space.prompt.vars)


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
    named = {name for entry in (*space.exclude, *space.include) for name, _ in entry.values}
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


def fit_in(manifest: Manifest, space: Space, left: Micros) -> tuple[int, Micros]:
    """Jobs and µ$ of the prompt's leading jobs, in expansion order, that fit in `left` µ$.

    The jobs before the first that would pass `left`, as the credit guard
    reserves them, by arithmetic: a subtree of the odometer (the units after
    a fixed prefix) is added whole by its tally when it fits, and descended
    into only where the cap falls, so a cap inside a prompt of 10^12 jobs
    costs about (units x values per unit) tallies, not a walk of the jobs.
    """
    named = {name for entry in (*space.exclude, *space.include) for name, _ in entry.values}
    deciding = named | set(_PRICED)
    jobs, spent, stopped = _fit(
        space.units, dict(space.prompt.base), deciding, manifest, space, left=left
    )
    if stopped:
        return jobs, Micros(spent)
    for values in _included(space, space.prompt.vars):
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
        if _excluded(space, start):
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

    As `_walk`, walking only the units that decide a price or an exclude.
    """
    walked = [u for u in units if deciding.intersection(u.names)]
    times = math.prod(len(u.values) for u in units if not deciding.intersection(u.names))
    jobs = cost = 0
    for rows in _product(walked):
        values = dict(start)
        for unit, row in zip(walked, rows, strict=True):
            values.update(zip(unit.names, row, strict=True))
        if not _excluded(space, values):
            jobs += times
            cost += times * micros(job_credits(manifest, values, space.prompt))
    return jobs * manifest.repeat, cost * manifest.repeat


def job_credits(
    manifest: Manifest, values: Mapping[str, Value | None], prompt: Prompt | None = None
) -> float:
    """Estimated USD of one request of `prompt` with these values, from the manifest's price
    table (with the source images of an edit, where the provider bills them)."""
    sources = 0 if values.get("image") is None else 1 + len(_more_images(prompt, values))
    images = provider(manifest.api.provider).billed_images(_int(values, "n"), sources)
    return price(str(values["mode"]), str(values["resolution"]), images, manifest.prices)


def _walk(
    units: Iterable[Unit],
    deciding: set[str],
    start: Assignment,
    manifest: Manifest,
    space: Space,
    *,
    included: int | None,
) -> Tally:
    """Sum over the product of `units`, walking only those that name a `deciding` key."""
    walked = [u for u in units if deciding.intersection(u.names)]
    skipped = [u for u in units if not deciding.intersection(u.names)]
    times = math.prod(len(u.values) for u in skipped)
    jobs = images = 0
    credits = 0.0
    for rows in _product(walked):
        values = dict(start)
        for unit, row in zip(walked, rows, strict=True):
            values.update(zip(unit.names, row, strict=True))
        keep = (
            not _excluded(space, values) if included is None else _is_new(space, included, values)
        )
        if keep:
            jobs += times
            images += times * _int(values, "n")
            credits += times * job_credits(manifest, values, space.prompt)
    return Tally(jobs, images, credits)


def _included(space: Space, var_units: tuple[Unit, ...]) -> Iterator[Assignment]:
    for j, entry in enumerate(space.include):
        named = dict(entry.values)
        free = [unit for unit in var_units if not named.keys() & set(unit.names)]
        for rows in _product(free):
            values: Assignment = {**space.prompt.base, **named}
            for unit, row in zip(free, rows, strict=True):
                values.update(zip(unit.names, row, strict=True))
            if _is_new(space, j, values):
                yield values


def _excluded(space: Space, values: Assignment) -> bool:
    return any(all(values.get(k) == v for k, v in e.values) for e in space.exclude)


def _is_new(space: Space, j: int, values: Assignment) -> bool:
    """Whether include `j` adds this: not in the product, not made by an earlier include."""
    if _in_product(space, values):
        return False
    return not any(_made_by(space, space.include[i], values) for i in range(j))


def _in_product(space: Space, values: Assignment) -> bool:
    """Whether the product (less excludes) has this combination; absent vars match any value."""
    covered: set[str] = set()
    for unit in space.units:
        covered.update(unit.names)
        present = [i for i, name in enumerate(unit.names) if name in values]
        if present and not any(
            all(row[i] == values[unit.names[i]] for i in present) for row in unit.values
        ):
            return False
    if any(values[name] != space.prompt.base[name] for name in AXES if name not in covered):
        return False
    return not _excluded(space, values)


def _made_by(space: Space, entry: Combination, values: Assignment) -> bool:
    """Whether include `entry` yields this combination (before de-duplication)."""
    named = dict(entry.values)
    if any(values[name] != named.get(name, space.prompt.base[name]) for name in AXES):
        return False
    for unit in space.prompt.vars:
        present = [name for name in unit.names if name in values]
        if not present:
            continue
        if any(name in named for name in unit.names):
            if any(values[name] != named[name] for name in present if name in named):
                return False
        elif not any(
            all(row[i] == values[name] for i, name in enumerate(unit.names) if name in values)
            for row in unit.values
        ):
            return False
    return True


def _product(units: Sequence[Unit]) -> Iterator[tuple[tuple[Value, ...], ...]]:
    """`itertools.product` of the units' values, streaming a leading data-rows unit.

    A `vars_from` unit is always a prompt's first unit (so the outermost,
    slowest loop of the documented order); its rows are read one at a time
    and only the small in-memory units go to `itertools.product`.
    """
    if units and units[0].kind == "rows":
        rest = [unit.values for unit in units[1:]]
        for row in units[0].values:
            for tail in itertools.product(*rest):
                yield (row, *tail)
        return
    yield from itertools.product(*(unit.values for unit in units))


def _request(
    manifest: Manifest, prompt: Prompt, values: Assignment, var_values: Mapping[str, str]
) -> Request:
    text = prompt.render(var_values)
    image = values["image"]
    more = _more_images(prompt, values)
    sources = 0 if image is None else 1 + len(more)
    return Request(
        prompt=text,
        mode=str(values["mode"]),
        aspect_ratio=str(values["aspect_ratio"]),
        resolution=str(values["resolution"]),
        n=_int(values, "n"),
        output_format=str(values["output_format"]),
        image=_image(manifest, prompt, str(image)) if image is not None else None,
        more_images=more,
        billed_sources=provider(manifest.api.provider).billed_images(0, sources),
    )


def _more_images(
    prompt: Prompt | None, values: Mapping[str, Value | None]
) -> tuple[ImageInput, ...]:
    """A multi-image edit's further images: they go with the prompt's own first image only
    (an include entry naming another image makes a plain one-image edit)."""
    image = values.get("image")
    if prompt is None or image is None or image != prompt.base["image"]:
        return ()
    return prompt.more_images


def _image(manifest: Manifest, prompt: Prompt, source: str) -> ImageInput:
    # A prompt read from a file carries its own image; sweep images are the manifest's.
    found = prompt.images.get(source)
    return found if found is not None else manifest.images[source]


def _int(values: Mapping[str, Value | None], name: str) -> int:
    value = values[name]
    assert isinstance(value, int)  # the schema admits only ints for n
    return value


def _value(values: Assignment, name: str) -> str | int:
    value = values[name]
    return "" if value is None else value
