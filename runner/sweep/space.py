"""A prompt's job space: its units, its include and exclude entries, its combinations. Pure.

The combinations are the cartesian product of the units (odometer order,
last unit fastest) less the excludes, then the includes in file order, each
de-duplicated against the product's *definition* (is each value in its
unit's list? does an exclude match?) rather than against a set of produced
combinations, so nothing is materialised.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from runner.jobs import ImageInput
from runner.manifest import AXES, Combination, Manifest, Prompt, Unit, Value

Assignment = dict[str, Value | None]
"""Axis and var names -> values for one combination (vars may be absent in a tally)."""


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


def spaces(manifest: Manifest) -> Iterator[Space]:
    """The job space of each prompt, in file order."""
    for prompt in manifest.all_prompts():
        units = manifest.units(prompt)
        include = tuple(
            _own_sources(manifest, prompt, e) for e in manifest.include if e.applies_to(prompt)
        )
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


def assignments(space: Space) -> Iterator[Assignment]:
    """The combinations of one prompt (before repeat): the product less excludes, then includes."""
    for values in combine(space.prompt.base, space.units):
        if not excluded(space, values):
            yield values
    yield from included(space, space.prompt.vars)


def combine(start: Mapping[str, Value | None], units: Sequence[Unit]) -> Iterator[Assignment]:
    """Each combination of the product of `units` set over `start`, in odometer order."""
    for rows in product(units):
        values: Assignment = dict(start)
        for unit, row in zip(units, rows, strict=True):
            values.update(zip(unit.names, row, strict=True))
        yield values


def product(units: Sequence[Unit]) -> Iterator[tuple[tuple[Value, ...], ...]]:
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


def included(space: Space, var_units: tuple[Unit, ...]) -> Iterator[Assignment]:
    """The combinations the include entries add, in file order, each once and none of the
    product's; the vars an entry leaves out take every value of `var_units`."""
    for j, entry in enumerate(space.include):
        named = dict(entry.values)
        free = [unit for unit in var_units if not named.keys() & set(unit.names)]
        for values in combine({**space.prompt.base, **named}, free):
            if is_new(space, j, values):
                yield values


def excluded(space: Space, values: Assignment) -> bool:
    """Whether an exclude entry of the prompt matches this combination."""
    return any(all(values.get(k) == v for k, v in e.values) for e in space.exclude)


def is_new(space: Space, j: int, values: Assignment) -> bool:
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
    return not excluded(space, values)


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


def n_of(values: Mapping[str, Value | None]) -> int:
    """A combination's images per request (`n`)."""
    value = values["n"]
    assert isinstance(value, int)  # the schema admits only ints for n
    return value


def more_images(
    manifest: Manifest, prompt: Prompt | None, values: Mapping[str, Value | None]
) -> tuple[ImageInput, ...]:
    """A multi-image edit's further images: an include entry's `images:` (by the `image`
    value naming them, `Manifest.image_sets`), or the prompt's own, which go with the
    prompt's own first image only (an include entry naming another image makes a plain
    one-image edit)."""
    image = values.get("image")
    if image is None:
        return ()
    listed = manifest.image_sets.get(str(image))
    if listed is not None:
        return listed
    if prompt is None or image != prompt.base["image"]:
        return ()
    return prompt.more_images


def _own_sources(manifest: Manifest, prompt: Prompt, entry: Combination) -> Combination:
    """`entry` for `prompt`: an `images:` list that is the prompt's own sources, in order,
    names them by the prompt's own `image` value, so the include adds no copy of its job."""
    named = dict(entry.values)
    value, own = named.get("image"), prompt.base["image"]
    if value is None or own is None or str(value) not in manifest.image_sets:
        return entry
    first = prompt.images.get(str(own)) or manifest.images.get(str(own))
    listed = (manifest.images[str(value)], *manifest.image_sets[str(value)])
    if listed != (first, *prompt.more_images):
        return entry
    return Combination(
        entry.prompt, tuple((k, own if k == "image" else v) for k, v in entry.values)
    )
