"""The `sweep` and `zip` sections checked into units: lists, lengths, axes set twice.

An axis's values keep the order the manifest writes them in; a sweep list
may not repeat a value, a zip group may (only its whole pairs must differ),
and an axis belongs to one of sweep and the zip groups. Image values are
loaded now (`Checker.image`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from runner.manifest.checker import Checker, Skipped
from runner.manifest.model import Unit, Value
from runner.manifest.schema import AxesModel
from runner.manifest.source import Loc, render_loc


def sweep_units(ck: Checker) -> tuple[Unit, ...]:
    """One unit per swept axis, in the manifest's order."""
    return tuple(
        Unit("sweep", (name,), tuple((v,) for v in values))
        for name, values in _axes(ck, ck.model.sweep, ("sweep",), unique=True)
    )


def zip_units(ck: Checker, sweep: tuple[Unit, ...]) -> tuple[Unit, ...]:
    """One unit per zip group (its axes paired by position), checked against `sweep`."""
    owner: dict[str, str] = {unit.names[0]: f"sweep.{unit.names[0]}" for unit in sweep}
    groups: list[Unit] = []
    for g, group in enumerate(ck.model.zip):
        with ck.collect():
            groups.append(_zip_group(ck, g, group, owner))
    return tuple(groups)


def _axes(
    ck: Checker, axes: AxesModel, loc: Loc, *, unique: bool
) -> Iterator[tuple[str, tuple[Value, ...]]]:
    """(axis, values) in the order the manifest writes them; `unique` checks each list."""
    raw = _get(ck.raw, loc)
    order = list(raw) if isinstance(raw, dict) else []
    for name in order:
        values = getattr(axes, str(name))
        if values is None:
            continue
        checked: tuple[Value, ...] | None = None
        with ck.collect():
            checked = _axis(ck, str(name), values, loc, unique=unique)
        if checked is not None:
            yield str(name), checked


def _axis(
    ck: Checker, name: str, values: list[Value], loc: Loc, *, unique: bool
) -> tuple[Value, ...]:
    if not values:
        raise ck.fail(
            "an empty list would make zero jobs",
            (*loc, name),
            "give at least one value or remove the axis",
        )
    if unique:
        ck.no_duplicates(values, (*loc, name), render_loc((*loc, name)))
    if name == "image":
        values = [ck.image(str(v), (*loc, name, i)) for i, v in enumerate(values)]
    return tuple(values)


def _zip_group(ck: Checker, g: int, group: AxesModel, owner: dict[str, str]) -> Unit:
    loc: Loc = ("zip", g)
    # A zip group may repeat a value in one list; only whole pairs must differ.
    before = len(ck.problems)
    axes = list(_axes(ck, group, loc, unique=False))
    if len(ck.problems) > before:
        raise Skipped  # a list of the group is wrong: its length says nothing more
    if not axes:
        raise ck.fail("an empty zip group", loc, "give two or more axes with lists of equal length")
    for name, _ in axes:
        if name in owner:
            raise ck.fail(
                f"`{name}` is also set in {owner[name]}",
                (*loc, name),
                "an axis may appear in only one of sweep and the zip groups",
                key=True,
            )
        owner[name] = f"zip[{g}].{name}"
    first_name, first_values = axes[0]
    for name, values in axes[1:]:
        if len(values) != len(first_values):
            raise ck.fail(
                f"`{first_name}` has {len(first_values)} values but `{name}` has {len(values)}",
                loc,
                "the lists of a zip group pair up by position, so they must be equally long",
            )
    rows = tuple(zip(*(values for _, values in axes), strict=True))
    ck.no_duplicates(rows, (*loc, first_name), f"zip[{g}] (as pairs)")
    return Unit("zip", tuple(name for name, _ in axes), rows)


def _get(data: Mapping[str, object], loc: Loc) -> object:
    current: object = data
    for part in loc:
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        else:
            return None
    return current
