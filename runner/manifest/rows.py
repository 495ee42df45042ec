"""Data files a manifest names, read row by row: CSV, JSON Lines, YAML. No checks of meaning.

`locate` resolves a `vars_from` / `prompts_from` value by the input images'
path rule (`images.resolve_local`); `read_rows` yields each row of the file
with its 1-based line, one at a time, whatever the format: `.csv` (the
header names the columns; values are text as written), `.jsonl` (one JSON
object per line) and `.yaml` / `.yml` (a list of flat mappings, read event
by event, never composed whole; scalars by the manifest's own YAML 1.2
rules). Syntax errors are ManifestErrors naming the file and line.
`runner.manifest.data` checks what the rows mean.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

import yaml

from runner.errors import ManifestError
from runner.manifest.images import resolve_local
from runner.manifest.source import describe, shorten
from runner.manifest.yaml12 import CoreLoader, parse_int

Format = Literal["csv", "jsonl", "yaml"]

VAR_FORMATS: Final[Mapping[str, Format]] = MappingProxyType(
    {".csv": "csv", ".jsonl": "jsonl", ".yaml": "yaml", ".yml": "yaml"}
)
"""`vars_from` file suffixes and the format each is read as."""


@dataclass(frozen=True, slots=True)
class DataFile:
    """A data file a manifest names: `path` resolved, `shown` as messages name it."""

    path: Path
    shown: str
    format: Format

    def error(
        self, message: str, line: int | None = None, hint: str | None = None
    ) -> ManifestError:
        """A ManifestError at `line` of this file."""
        return ManifestError(message, path=self.shown, line=line, hint=hint)


def locate(
    text: str,
    base_dir: Path,
    roots: Sequence[Path],
    manifest_path: str,
    *,
    formats: Mapping[str, Format],
) -> DataFile:
    """Resolve a `vars_from` / `prompts_from` value by the input path rules; no reading yet.

    Raises ManifestError without a place (the builder adds the manifest's line).
    """
    suffix = Path(text).suffix.lower()
    if suffix not in formats:
        raise ManifestError(
            f"`{shorten(text)}` is not a {' / '.join(sorted(formats))} file",
            hint="name the file with one of those suffixes; the suffix says how it is read",
        )
    target = resolve_local(text, base_dir, roots, "data file")
    if not target.is_file():
        raise ManifestError(
            f"the data file `{text}` does not exist (looked for {target})",
            hint="data paths are relative to the manifest's folder; check the name",
        )
    shown = str(Path(manifest_path).parent / text)
    return DataFile(target, shown, formats[suffix])


# -- rows: one reader per format, each yielding (line, {column: value}) lazily


def read_rows(data: DataFile) -> Iterator[tuple[int, dict[str, object]]]:
    """The file's rows in order with their 1-based line, one at a time."""
    try:
        if data.format == "csv":
            yield from _csv_rows(data)
        elif data.format == "jsonl":
            yield from _jsonl_rows(data)
        else:
            yield from _yaml_rows(data)
    except UnicodeDecodeError as err:
        raise data.error(f"not UTF-8 text (byte {err.start})", hint="save it as UTF-8") from None
    except OSError as err:
        raise data.error(
            f"cannot read the file: {err.strerror}", hint="check its permissions"
        ) from None


def _csv_rows(data: DataFile) -> Iterator[tuple[int, dict[str, object]]]:
    with data.path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        header: list[str] | None = None
        try:
            for cells in reader:
                if not cells:
                    continue  # a blank line
                if header is None:
                    header = [cell.strip() for cell in cells]
                    twice = [name for name in header if header.count(name) > 1]
                    if twice:
                        raise data.error(f"the column `{twice[0]}` is named twice", 1)
                    continue
                if len(cells) != len(header):
                    raise data.error(
                        f"this row has {len(cells)} values but the header names {len(header)}"
                        " columns",
                        reader.line_num,
                        "give one value per column; quote values that hold a comma",
                    )
                yield reader.line_num, dict(zip(header, cells, strict=True))
        except csv.Error as err:
            raise data.error(f"not valid CSV: {err}", reader.line_num) from None


def _jsonl_rows(data: DataFile) -> Iterator[tuple[int, dict[str, object]]]:
    with data.path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise data.error(
                    f"not valid JSON: {err.msg} (column {err.colno})",
                    number,
                    "each line is one JSON object",
                ) from None
            if not isinstance(row, dict):
                raise data.error(
                    f"expected a JSON object, got {describe(row)}",
                    number,
                    'each line is one object, e.g. {"product": "mug"}',
                )
            yield number, row


def _yaml_rows(data: DataFile) -> Iterator[tuple[int, dict[str, object]]]:
    """A YAML list of flat mappings, read event by event (never composed whole)."""
    resolver = CoreLoader("")
    rows = _YamlRows(data, resolver)
    with data.path.open(encoding="utf-8-sig") as handle:
        try:
            for event in yaml.parse(handle, Loader=CoreLoader):
                row = rows.feed(event)
                if row is not None:
                    yield row
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark
            where = mark.line + 1 if mark is not None else None
            raise data.error(f"not valid YAML: {err.problem}", where) from None
        finally:
            resolver.dispose()


class _YamlRows:
    """The state of `_yaml_rows`: depth 0 before the list, 1 in it, 2 in a row, 3 after."""

    _FRAME = (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent)

    def __init__(self, data: DataFile, resolver: CoreLoader) -> None:
        self.data, self.resolver = data, resolver
        self.depth, self.line = 0, 0
        self.row: dict[str, object] = {}
        self.key: str | None = None

    def feed(self, event: yaml.Event) -> tuple[int, dict[str, object]] | None:
        """Take one parser event; a finished row, if this event ends one."""
        mark = event.start_mark
        where = mark.line + 1 if mark is not None else 0
        if isinstance(event, yaml.SequenceStartEvent) and self.depth == 0:
            self.depth = 1
        elif isinstance(event, yaml.MappingStartEvent) and self.depth == 1:
            self.depth, self.row, self.key, self.line = 2, {}, None, where
        elif isinstance(event, yaml.MappingEndEvent) and self.depth == 2:
            self.depth = 1
            return self.line, self.row
        elif isinstance(event, yaml.SequenceEndEvent) and self.depth == 1:
            self.depth = 3
        elif isinstance(event, yaml.ScalarEvent) and self.depth == 2:
            self._scalar(event, where)
        elif isinstance(event, yaml.DocumentStartEvent):
            if self.depth == 3:
                raise self.data.error("a second YAML document", where, "keep one list")
        elif not isinstance(event, self._FRAME):
            raise self.data.error(
                "expected a list of flat mappings (column: value), without anchors",
                where,
                "e.g. - {product: mug, color: red}",
            )
        return None

    def _scalar(self, event: yaml.ScalarEvent, where: int) -> None:
        value = _yaml_scalar(self.resolver, event)
        if self.key is None:
            self.key = str(value)
            if self.key in self.row:
                raise self.data.error(f"the key `{self.key}` is written twice", where)
        else:
            self.row[self.key], self.key = value, None


def _yaml_scalar(resolver: CoreLoader, event: yaml.ScalarEvent) -> object:
    # The manifest's own scalar rules (YAML 1.2 core schema), so `2.50` is "2.5" in both.
    if event.style is not None or not event.implicit[0]:
        return event.value
    tag = str(resolver.resolve(yaml.ScalarNode, event.value, (True, False)))  # type: ignore[no-untyped-call]
    if tag.endswith(":int"):
        return parse_int(event.value)
    if tag.endswith(":float"):
        return float(event.value)
    if tag.endswith(":bool"):
        return event.value.lower() == "true"
    if tag.endswith(":null"):
        return None
    return event.value
