"""Data files a manifest names: `vars_from` rows and `prompts_from` prompts, read lazily.

    prompts:
      - id: ad
        prompt: "a {product} on a {color} table"
        vars_from: data/products.csv     # one row = one set of var values

    prompts_from: prompts.jsonl          # one line = one prompt

A file is named relative to the manifest and follows the input images' path
rule (`images.resolve_local`: inside the manifest's folder or `input_roots`).
Loading reads it once, start to end, one row at a time: it checks every row
(an error names ``file:line``), counts the rows and looks for a repeated
row or id through 8-byte digests in an 8 MiB bitset and a confirming pass
(`_Repeats`), never a set of the rows. Expansion reads it again, one row at a time, so a file of a
million rows plans and runs in the memory of a few rows. The file must not
change between the two: `VarRows` and `PromptRows` keep its sha256 for the
record, and expansion stops with a ManifestError if a re-read row no longer
passes the checks.

Formats, by suffix (`vars_from`): `.csv` (a header row names the columns;
values are text as written), `.jsonl` (one JSON object of text or numbers
per line) and `.yaml`/`.yml` (a list of flat mappings; numbers become text
as in the manifest's own `vars`). `prompts_from` is `.jsonl`: each line
``{"id": ..., "prompt": ..., "params": {...}, "image": ...}`` (params and image
optional). A file prompt's text is literal: braces are not var fields.
The readers of each format are in `runner.manifest.rows`.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.errors import ManifestError
from runner.jobs import ImageInput
from runner.manifest.fields import ImageSource, SafeId
from runner.manifest.hosting import sources_problem
from runner.manifest.images import load_image
from runner.manifest.model import Prompt, Value
from runner.manifest.rows import VAR_FORMATS, DataFile, Format, locate, read_rows
from runner.manifest.schema import ParamsModel
from runner.manifest.source import MAX_PROMPT_CHARS, describe, shorten
from runner.providers import SEGMIND, Provider

__all__ = [
    "VAR_FORMATS",
    "DataFile",
    "Format",
    "PromptRows",
    "VarRows",
    "locate",
    "scan_prompts",
    "scan_vars",
]

_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _var_text(value: object) -> str | None:
    """A var value as text (numbers as the manifest's vars write them), or None if not a scalar."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)


def _digest(parts: Sequence[str]) -> int:
    # 8 bytes of sha256 over the length-prefixed parts: collisions are confirmed by value.
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "big") + data)
    return int.from_bytes(h.digest()[:8], "big")


class _Repeats:
    """Finds a value seen twice among millions in 8 MiB: a bitset, then a confirming pass.

    Each digest sets one of 2**26 bits; a digest whose bit was already set is
    a candidate (with a million rows, a few thousand are, mostly by chance).
    `confirm` then re-walks the digests with their lines and counts only the
    candidates, so the memory is the bitset plus the candidates, never a set
    of every row.
    """

    _BITS: Final = 26

    def __init__(self) -> None:
        self.bits = bytearray(1 << (self._BITS - 3))
        self.candidates: set[int] = set()
        self.count = 0

    def add(self, digest: int) -> None:
        index = digest & ((1 << self._BITS) - 1)
        byte, bit = index >> 3, 1 << (index & 7)
        if self.bits[byte] & bit:
            self.candidates.add(digest)
        self.bits[byte] |= bit
        self.count += 1

    def confirm(self, walk: Iterable[tuple[int, int]]) -> tuple[int, int] | None:
        """The lines (first, second) of the first repeated digest in `walk`, or None."""
        if not self.candidates:
            return None
        first: dict[int, int] = {}
        for line, digest in walk:
            if digest in self.candidates:
                if digest in first:
                    return first[digest], line
                first[digest] = line
        return None


# -- vars_from


@dataclass(frozen=True, slots=True)
class VarRows:
    """The rows of a `vars_from` file as the values of one sweep unit, read lazily.

    Each iteration re-reads the file and yields one tuple per row, aligned
    with `columns`. `count` and `sha256` are from the load-time pass. Hashable
    and immutable, so it can sit in a frozen `Unit`.
    """

    file: DataFile
    columns: tuple[str, ...]
    count: int
    sha256: str

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[Value, ...]]:
        for _, values in _lines_of(self.file, self.columns):
            yield values

    def __contains__(self, item: object) -> bool:
        return any(values == item for _, values in _lines_of(self.file, self.columns))


def scan_vars(data: DataFile, reserved: frozenset[str]) -> VarRows:
    """Check every row of a `vars_from` file in one pass; the lazy rows it describes.

    The columns are the first row's keys (a CSV's header); every row must
    have exactly them, with text or number values, and no row may repeat
    another (it would repeat identical requests).
    """
    columns: tuple[str, ...] | None = None
    repeats = _Repeats()
    for line, row in read_rows(data):
        if columns is None:
            # A CSV's columns are its header (line 1); the other formats' the first row's keys.
            columns = _columns(data, tuple(row), 1 if data.format == "csv" else line, reserved)
        repeats.add(_digest(_check_row(data, columns, line, row)))
    if columns is None or not repeats.count:
        raise data.error(
            "the file has no rows: it would make zero jobs", 1, "add rows, or remove vars_from"
        )
    found = repeats.confirm((line, _digest(row)) for line, row in _lines_of(data, columns))
    if found is not None:
        raise data.error(
            f"this row repeats line {found[0]}",
            found[1],
            "remove the repeat: it would make duplicate jobs; use `repeat` for more requests",
        )
    return VarRows(data, columns, repeats.count, _file_sha256(data))


def _lines_of(data: DataFile, columns: tuple[str, ...]) -> Iterator[tuple[int, tuple[str, ...]]]:
    for line, row in read_rows(data):
        yield line, _check_row(data, columns, line, row)


def _file_sha256(data: DataFile) -> str:
    with data.path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _columns(
    data: DataFile, names: tuple[str, ...], line: int, reserved: frozenset[str]
) -> tuple[str, ...]:
    if not names:
        raise data.error("the first row names no columns", line, "e.g. product,color")
    seen: set[str] = set()
    for name in names:
        if not _VAR_NAME.match(name):
            raise data.error(
                f"the column `{shorten(name)}` is not a usable var name",
                line,
                "use letters, digits and _ (not starting with a digit), e.g. color",
            )
        if name in reserved:
            raise data.error(
                f"the column `{name}` is a request param or keyword, so it cannot be a var",
                line,
                f"rename the column (e.g. {name}_text); sweep params under `sweep`",
            )
        if name in seen:
            raise data.error(f"the column `{name}` is named twice", line)
        seen.add(name)
    return names


def _check_row(
    data: DataFile, columns: tuple[str, ...], line: int, row: Mapping[str, object]
) -> tuple[str, ...]:
    if tuple(row) != columns and set(row) != set(columns):
        missing = [c for c in columns if c not in row]
        extra = [c for c in row if c not in columns]
        what = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
        raise data.error(
            f"this row's columns differ from the first row's ({what})",
            line,
            f"every row has the same columns: {', '.join(columns)}",
        )
    values = []
    for name in columns:
        text = _var_text(row[name])
        if text is None:
            raise data.error(
                f"`{name}` is {describe(row[name])}: expected text or a number",
                line,
                "write one value per column",
            )
        values.append(text)
    return tuple(values)


# -- prompts_from


class PromptLineModel(BaseModel):
    """One line of a `prompts_from` file."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: SafeId
    # The same cap as a prompt written in the manifest (runner.manifest.source).
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    params: ParamsModel = Field(default_factory=ParamsModel)
    image: ImageSource | None = None
    # A multi-image edit, as a manifest prompt's `images:` (the first is `image`).
    images: list[ImageSource] | None = None


@dataclass(frozen=True, slots=True)
class PromptRows:
    """The prompts of a `prompts_from` file, built one line at a time on each iteration.

    `base` is every axis resolved from the API defaults and the manifest's
    `defaults`; a line's `params` and `image` are laid over it. Images are
    read and hashed again on each pass (never kept for the whole file).
    """

    file: DataFile
    count: int
    sha256: str
    base: Mapping[str, Value | None]
    base_dir: Path
    roots: tuple[Path, ...]
    # The provider that takes the edits (how many source images one may have).
    host: Provider = SEGMIND

    @property
    def shown(self) -> str:
        """The file as messages name it."""
        return self.file.shown

    def prompts(self) -> Iterator[Prompt]:
        """The file's prompts in file order."""
        for _, prompt in self._prompts(frozenset()):
            yield prompt

    def _prompts(self, swept: frozenset[str]) -> Iterator[tuple[int, Prompt]]:
        for line, row in read_rows(self.file):
            try:
                model = PromptLineModel.model_validate(row)
            except ValidationError as err:
                message, hint = _line_problem(err)
                raise self.file.error(message, line, hint) from None
            own: dict[str, Value | None] = dict(model.params.model_dump(exclude_none=True))
            sources = self._sources(model, line)
            images: dict[str, ImageInput] = {}
            for text in sources:
                try:
                    images[text] = load_image(text, self.base_dir, self.roots)
                except ManifestError as err:
                    raise self.file.error(err.message, line, err.hint) from None
            if sources:
                own["image"] = sources[0]
            clash = sorted(swept.intersection(own))
            if clash:
                raise self.file.error(
                    f"`{clash[0]}` is set for this prompt and also swept in the manifest",
                    line,
                    "a prompt may set only axes that are not swept",
                )
            # Literal text: a file prompt has no vars, so braces are doubled for `render`.
            template = model.prompt.replace("{", "{{").replace("}", "}}")
            base = MappingProxyType({**self.base, **own})
            more = tuple(images[text] for text in sources[1:])
            yield (
                line,
                Prompt(model.id, template, (), base, MappingProxyType(images), more_images=more),
            )

    def _sources(self, model: PromptLineModel, line: int) -> list[str]:
        """A line's source images in order (`image`, or the `images` list), checked."""
        if model.images is None:
            return [] if model.image is None else [model.image]
        problem = sources_problem(
            model.images, with_image=model.image is not None, provider=self.host
        )
        if problem is not None:
            raise self.file.error(problem.message, line, problem.hint)
        return model.images


def scan_prompts(
    data: DataFile,
    *,
    base: Mapping[str, Value | None],
    base_dir: Path,
    roots: Sequence[Path],
    swept: frozenset[str],
    inline_ids: Sequence[str],
    host: Provider = SEGMIND,
) -> PromptRows:
    """Check every line of a `prompts_from` file in one pass; the lazy prompts it describes.

    Ids must be unique across the file and the manifest's own `prompts`;
    `host` is the provider whose limit on source images an edit must keep.
    """
    source = PromptRows(data, 0, "", MappingProxyType(dict(base)), base_dir, tuple(roots), host)
    repeats = _Repeats()
    for i in inline_ids:
        repeats.add(_digest([i]))
    for _, prompt in source._prompts(swept):
        repeats.add(_digest([prompt.id]))
    count = repeats.count - len(inline_ids)
    if count == 0:
        raise data.error("the file has no prompts", 1, "add lines, or remove prompts_from")
    inline = [(0, _digest([i])) for i in inline_ids]
    walk = ((line, _digest([p.id])) for line, p in source._prompts(swept))
    found = repeats.confirm(itertools.chain(inline, walk))
    if found is not None:
        first, line = found
        raise data.error(
            "this prompt id is also an id under the manifest's `prompts`"
            if first == 0
            else f"duplicate prompt id (line {first} has it too)",
            line,
            "give each prompt its own id: the id names its output folder",
        )
    return PromptRows(data, count, _file_sha256(data), source.base, base_dir, tuple(roots), host)


def _line_problem(err: ValidationError) -> tuple[str, str | None]:
    first = err.errors()[0]
    loc = ".".join(str(part) for part in first["loc"])
    ctx = first.get("ctx") or {}
    message = str(ctx.get("message") or first["msg"])
    hint = str(ctx.get("hint") or "") or None
    if first["type"] == "extra_forbidden":
        message, hint = f"unknown key `{loc}`", "a line holds id, prompt, params, image or images"
    elif first["type"] == "missing":
        message, hint = f"`{loc}` is required but missing", 'e.g. {"id": "a", "prompt": "..."}'
    return (f"{loc}: {message}" if loc else message), hint
