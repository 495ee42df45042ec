"""The bench's output: sections of tables, targets, docs/benchmarks.md and .json. Pure."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Cell = str | int | float | None


@dataclass(frozen=True, slots=True)
class Table:
    """A titled table; numbers are formatted when rendered."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


@dataclass(frozen=True, slots=True)
class Target:
    """A target of the issue, the figure measured against it, and whether it is met."""

    name: str
    target: str
    measured: str
    met: bool
    note: str = ""


@dataclass(frozen=True, slots=True)
class Section:
    """One scenario's results: prose, tables, targets, notes and the raw figures."""

    key: str
    title: str
    intro: str
    tables: tuple[Table, ...] = ()
    targets: tuple[Target, ...] = ()
    notes: tuple[str, ...] = ()
    figures: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def fmt(value: Cell, digits: int = 3) -> str:
    """A cell as text: floats to `digits` significant places, NaN as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf"
        if value == 0:
            return "0"
        magnitude = math.floor(math.log10(abs(value)))
        places = max(0, digits - 1 - magnitude)
        return f"{value:,.{places}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def render_table(table: Table) -> list[str]:
    """Markdown lines of one table, headed by its title in bold."""
    lines = [f"**{table.title}**", ""] if table.title else []
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "|".join(" --- " for _ in table.columns) + "|")
    lines.extend("| " + " | ".join(fmt(c) for c in row) + " |" for row in table.rows)
    lines.append("")
    return lines


def render_targets(targets: Iterable[Target]) -> list[str]:
    """The targets table: each target, the measured figure, met or by how much missed."""
    rows = tuple((t.name, t.target, t.measured, "met" if t.met else "**missed**") for t in targets)
    return render_table(Table("", ("target", "bound", "measured", ""), rows))


def render_markdown(
    sections: Sequence[Section], *, header: Sequence[str], closing: Sequence[str]
) -> str:
    """docs/benchmarks.md: the header, a targets summary, each section, the closing notes."""
    lines = [*header, "", "## Targets", ""]
    lines += render_targets(t for s in sections for t in s.targets)
    for section in sections:
        lines += [f"## {section.title}", "", section.intro.strip(), ""]
        for table in section.tables:
            lines += render_table(table)
        for note in section.notes:
            lines += [note.strip(), ""]
    if closing:
        lines += ["## Closing notes", ""]
        for note in closing:
            lines += [note.strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def to_json(section: Section) -> dict[str, Any]:
    """A section's raw figures and targets, JSON-ready."""
    return {
        "title": section.title,
        "seconds": round(section.seconds, 2),
        "targets": [
            {
                "name": t.name,
                "target": t.target,
                "measured": t.measured,
                "met": t.met,
                "note": t.note,
            }
            for t in section.targets
        ],
        "figures": _clean(section.figures),
    }


def _clean(value: Any) -> Any:
    # JSON has no NaN or infinity: write them as null.
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
