"""Whether two jobs of a manifest would share a file name: decided at load time, bounded.

A name template (`output.name`, runner.naming) must give every image its own
path, or one job's image and sidecar would overwrite another's. Three ways to
know, cheapest first (`find_clash`):

1. **Identity in the template.** ``{index}`` differs between any two jobs;
   ``{key8}`` (the first 32 bits of the job key, which differs between any two
   jobs, repeats included) is trusted the same way, as the default template
   does. O(1).
2. **Enumeration**, when the manifest has at most ENUMERATE_IMAGES images:
   every image's stem is rendered and compared, case-folded (macOS and Windows
   fold case), so the clash found is exact and names both jobs.
3. **Structure**, for a larger manifest (10^12 jobs is a 6-line YAML): every
   factor of a prompt's product with two or more values (a var, a `vars_from`
   file's rows, a sweep axis, a zip group), `repeat`, `include` entries and
   the prompt id across prompts must be told apart by the placeholders the
   template names. A factor's own values are compared folded as the store
   folds them (``Red`` and ``red`` are one name); a `vars_from` file's rows in
   bounded memory (the load-time repeat finder of runner.manifest.data). When
   a factor is not told apart, the clash names two jobs that differ only in it.
   The structural argument treats each placeholder as its own field; a
   template that glues two fields without a separator (``{a}{b}``) is only
   checked exactly by enumeration.

Pure apart from re-reading a `vars_from` file; raises nothing: the caller
words the error with the manifest's file and line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from runner.jobs import Job
from runner.manifest import Manifest, Unit, Value
from runner.manifest.data import _Repeats  # the load-time repeat finder, reused
from runner.naming import IDENTITY_PLACEHOLDERS, fold_name, placeholders, render_stem
from runner.sweep import Space, expand, spaces, tally

ENUMERATE_IMAGES: Final = 10_000
"""Most images whose names are rendered and compared one by one at load time."""


@dataclass(frozen=True, slots=True)
class Clash:
    """Two jobs (or, structurally, two combinations) that would share `name`."""

    first: str
    second: str
    name: str | None
    """The shared stem when it was rendered (enumeration), else None."""
    fix: str

    def message(self) -> str:
        """The problem in one sentence, naming both."""
        shared = f"the name `{self.name}`" if self.name is not None else "a name"
        return f"{self.first} and {self.second} would share {shared}"


def find_clash(manifest: Manifest, template: str) -> Clash | None:
    """Two jobs of `manifest` whose images `template` would name alike, or None.

    See the module docstring for the three ways, chosen by size. `template`
    has passed `runner.naming.check_pattern` (it holds ``{i}``).
    """
    names = placeholders(template)
    if names & IDENTITY_PLACEHOLDERS:
        return None
    images = 0
    for space in spaces(manifest):
        # Summed by arithmetic prompt by prompt, stopping as soon as it is too many to list.
        images += tally(manifest, space).images
        if images > ENUMERATE_IMAGES:
            return _structural(manifest, names)
    return _enumerate(expand(manifest), template)


def describe_job(job: Job) -> str:
    """A job as a message names it: its index, prompt id and the values it was made from."""
    values = [f"{name}={value}" for name, value in (*job.vars, *job.sweep)]
    if job.repeat:
        values.append(f"repeat={job.repeat}")
    shown = f" ({', '.join(values)})" if values else ""
    return f"job {job.index} (prompt `{job.prompt_id}`){shown}"


def _enumerate(jobs: Iterable[Job], template: str) -> Clash | None:
    seen: dict[str, Job] = {}
    for job in jobs:
        for i in range(job.request.n):
            stem = render_stem(job, i, template)
            other = seen.setdefault(stem.casefold(), job)
            if other is not job:
                return Clash(
                    describe_job(other),
                    describe_job(job),
                    stem,
                    "add the placeholders they differ in, or {key8}",
                )
    return None


def _structural(manifest: Manifest, names: frozenset[str]) -> Clash | None:
    first_prompt: str | None = None
    for space in spaces(manifest):
        if first_prompt is None:
            first_prompt = space.prompt.id
        elif "prompt_id" not in names:
            return Clash(
                f"jobs of prompt `{first_prompt}`",
                f"jobs of prompt `{space.prompt.id}`",
                None,
                "add {prompt_id} (or {key8})",
            )
        clash = _space_clash(space, names, manifest.repeat)
        if clash is not None:
            return clash
    return None


def _space_clash(space: Space, names: frozenset[str], repeat: int) -> Clash | None:
    where = f"prompt `{space.prompt.id}`"
    if repeat > 1 and "repeat" not in names:
        return Clash(
            f"repeat 0 of a job of {where}",
            "its repeat 1",
            None,
            "add {repeat} (or {key8})",
        )
    for unit in space.units:
        if len(unit.values) < 2:
            continue
        shown = [k for k, name in enumerate(unit.names) if name in names]
        pair = _same_projection(unit, shown)
        if pair is not None:
            hidden = [name for name in unit.names if name not in names]
            return Clash(
                f"the jobs of {where} with {_values(unit, pair[0])}",
                f"those with {_values(unit, pair[1])} (otherwise alike)",
                None,
                f"add {', '.join('{' + n + '}' for n in hidden or unit.names)} (or {{key8}})",
            )
    for entry in space.include:
        hidden = sorted(name for name, _ in entry.values if name not in names)
        if hidden:
            shown_entry = ", ".join(f"{k}={v}" for k, v in entry.values)
            return Clash(
                f"the include entry ({shown_entry}) of {where}",
                "a product job that differs from it only there",
                None,
                f"add {', '.join('{' + n + '}' for n in hidden)} (or {{key8}})",
            )
    return None


def _same_projection(
    unit: Unit, shown: list[int]
) -> tuple[tuple[Value, ...], tuple[Value, ...]] | None:
    """Two rows of `unit` whose values at `shown` fold to the same name parts, or None."""

    def parts(row: tuple[Value, ...]) -> tuple[str, ...]:
        return tuple(fold_name(str(row[k])) for k in shown)

    rows: Iterator[tuple[Value, ...]] = iter(unit.values)
    if len(unit.values) <= ENUMERATE_IMAGES:
        seen: dict[tuple[str, ...], tuple[Value, ...]] = {}
        for row in rows:
            other = seen.setdefault(parts(row), row)
            if other is not row:
                return other, row
        return None
    # A data file's rows: the 8 MiB bitset and a confirming pass, never a set of every row.
    # Python's 64-bit tuple hash is the digest (both passes run in this process): a chance
    # collision, about n**2 / 2**65, would only name a clash that is not there.
    repeats = _Repeats()
    for row in rows:
        repeats.add(_digest(parts(row)))
    found = repeats.confirm((k, _digest(parts(row))) for k, row in enumerate(unit.values))
    if found is None:
        return None
    first, second = found
    picked = [row for k, row in enumerate(unit.values) if k in (first, second)]
    return picked[0], picked[1]


def _digest(parts: tuple[str, ...]) -> int:
    return hash(parts) & 0xFFFF_FFFF_FFFF_FFFF


def _values(unit: Unit, row: tuple[Value, ...]) -> str:
    return ", ".join(f"{name}={value}" for name, value in zip(unit.names, row, strict=True))
