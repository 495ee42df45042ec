"""Safe YAML loading that remembers where every value was written.

A manifest error must name file:line:column, so the file is composed into
PyYAML's node tree first; walking that tree records the start mark of every
value and every mapping key by its path (``("prompts", 1, "params", "n")``),
the same tuples pydantic reports as an error's ``loc``.

Plain scalars resolve by YAML 1.2's core schema (`yaml12.CoreLoader`), and
only the safe constructors exist. Explicitly written duplicate keys are an
error (PyYAML would silently keep the last); keys brought in by a ``<<``
merge may be overridden, as YAML intends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runner.errors import ManifestError
from runner.manifest.yaml12 import INT_TAG, MERGE_TAG, CoreLoader, parse_int

MAX_MANIFEST_BYTES: Final = 10 * 1024 * 1024
"""A manifest larger than this (10 MiB) is refused before it is parsed.

The same cap holds for its size with every YAML alias expanded (each use of
an anchor counts the anchored text again), so an alias cannot make a small
file into a huge manifest.
"""

MAX_PROMPT_CHARS: Final = 10_000
"""Longest prompt text, and longest var value, in characters.

The vendor page (grok-imagine-image) states no limit; 10,000 characters is
far above any useful prompt (the page's example has 260) and keeps a job's
request, its sidecar and its ledger row small, whatever the manifest says.
"""

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Mark:
    """A place in the file, 1-based."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Source:
    """A parsed manifest file and the place of each of its values.

    `path` is the file as the user named it (used in messages), `base_dir`
    the folder relative paths in it resolve against, `sha256` the hex digest
    of its bytes.
    """

    path: str
    base_dir: Path
    sha256: str
    data: object
    values: Mapping[Loc, Mark]
    keys: Mapping[Loc, Mark]

    def mark(self, loc: Loc, *, key: bool = False) -> Mark | None:
        """Where `loc` was written: its key (`key=True`) or its value.

        Falls back to the nearest enclosing value that has a place, so a
        missing key points at the mapping that lacks it.
        """
        if key and loc in self.keys:
            return self.keys[loc]
        for end in range(len(loc), -1, -1):
            found = self.values.get(loc[:end])
            if found is not None:
                return found
        return None

    def known(self, loc: Loc) -> Loc:
        """The longest prefix of `loc` that names a value written in the file."""
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.values:
                return loc[:end]
        return ()

    def error(
        self, message: str, loc: Loc = (), *, hint: str | None = None, key: bool = False
    ) -> ManifestError:
        """A ManifestError placed at `loc` (its key when `key`), with the field named."""
        where = self.mark(loc, key=key)
        return ManifestError(
            message,
            path=self.path,
            line=where.line if where else None,
            column=where.column if where else None,
            field=render_loc(loc) or None,
            hint=hint,
        )


def render_loc(loc: Loc) -> str:
    """``("prompts", 1, "params", "n")`` -> ``prompts[1].params.n``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def read_source(path: Path, *, display: str | None = None) -> Source:
    """Read and parse a manifest file; every failure is a ManifestError naming the file."""
    shown = display if display is not None else str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError(
            "no such file", path=shown, hint="check the path; relative paths start here"
        ) from None
    except IsADirectoryError:
        raise ManifestError("is a folder, not a manifest file", path=shown) from None
    except OSError as err:
        raise ManifestError(
            f"cannot read the file: {err.strerror}", path=shown, hint="check its permissions"
        ) from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"the file is over the {MAX_MANIFEST_BYTES // (1024 * 1024)} MB limit for a manifest",
            path=shown,
            hint="a manifest lists prompts and sweeps; put large inputs in image files",
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ManifestError(
            f"not UTF-8 text (byte {err.start})", path=shown, hint="save the file as UTF-8"
        ) from None
    return parse_source(
        text,
        path=shown,
        base_dir=path.resolve().parent,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


_QUICK_CHECK_CHARS: Final = 256 * 1024
"""From this size on, the caps are checked by libyaml's parser before the full parse."""


def _quick_caps(text: str, path: str) -> None:
    """Refuse a large text over the size or prompt caps, with libyaml's fast parser.

    PyYAML's pure-Python scanner takes minutes over a few MiB of scalar text
    (a hostile manifest); libyaml composes it in about a second. Only the
    caps are checked here (`_Walk.caps`); any YAML error is left to the full
    parse, which words it and places it. Without libyaml this does nothing.
    """
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is None or len(text) < _QUICK_CHECK_CHARS:
        return
    loader = fast(text)
    try:
        node = loader.get_single_node()
    except (yaml.YAMLError, RecursionError):
        return
    finally:
        loader.dispose()
    if node is not None:
        _Walk(path).caps(node)


def parse_source(text: str, *, path: str, base_dir: Path, sha256: str = "") -> Source:
    """Parse YAML text into a Source; no file access."""
    _quick_caps(text, path)
    loader = CoreLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ManifestError(
                "the manifest is empty",
                path=path,
                hint="start from manifests/example.yaml; `name` and `prompts` are required",
            )
        walk = _Walk(path)
        walk.caps(node)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        raise _yaml_error(err, path) from None
    except yaml.YAMLError as err:
        raise ManifestError(f"not valid YAML: {err}", path=path) from None
    except RecursionError:
        raise ManifestError(
            "the YAML is nested too deeply", path=path, hint="a manifest is a few levels deep"
        ) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ManifestError(
            f"the manifest must be a mapping of keys (name, prompts, ...), not {describe(data)}",
            path=path,
            line=node.start_mark.line + 1,
            hint="start from manifests/example.yaml",
        )
    return Source(
        path=path,
        base_dir=base_dir,
        sha256=sha256,
        data=data,
        values=MappingProxyType(walk.values),
        keys=MappingProxyType(walk.keys),
    )


def describe(value: object) -> str:
    """A short phrase for a YAML value's type and text, for messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}` (a boolean)"
    if isinstance(value, int):
        return f"`{value}` (an integer)"
    if isinstance(value, float):
        return f"`{value}` (a number)"
    if isinstance(value, str):
        return f"`{shorten(value)}` (a string)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def shorten(text: str, limit: int = 40) -> str:
    """`text`, cut with an ellipsis when longer than `limit` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _yaml_error(err: yaml.MarkedYAMLError, path: str) -> ManifestError:
    mark = err.problem_mark or err.context_mark
    problem = err.problem or "cannot parse"
    hint = None
    if isinstance(err, yaml.constructor.ConstructorError) and "constructor for the tag" in problem:
        tag = problem.split("tag", 1)[1].strip(" '")
        tag = tag.replace("tag:yaml.org,2002:", "!!")
        problem = f"the YAML tag {tag} is not allowed"
        hint = "manifests are plain YAML (loaded safely): remove the tag"
    elif err.context:
        context = err.context
        if err.context_mark and mark and err.context_mark.line != mark.line:
            context += f" (started on line {err.context_mark.line + 1})"
        problem = f"{context}, {problem}"
    if "'\\t'" in problem:
        hint = "YAML indents with spaces, not tabs"
    return ManifestError(
        f"not valid YAML: {problem}",
        path=path,
        line=mark.line + 1 if mark else None,
        column=mark.column + 1 if mark else None,
        hint=hint or "check the indentation, quoting and brackets near this place",
    )


def _mark(node: Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


class _Walk:
    """Records the place of every value and key, by path, before construction."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.values: dict[Loc, Mark] = {}
        self.keys: dict[Loc, Mark] = {}
        # An aliased node is walked once: the places of its first use are kept,
        # and an alias bomb (nested anchors) costs nothing to walk.
        self._seen: set[int] = set()
        # Each node's text size with its aliases expanded, computed once.
        self._sizes: dict[int, int] = {}

    def caps(self, node: Node) -> None:
        """Refuse `node` (the document) over the expanded size cap; then walk it (`node`)."""
        expanded = self.expanded_size(node)
        if expanded > MAX_MANIFEST_BYTES:
            raise ManifestError(
                f"with its YAML aliases expanded the manifest is {expanded:,} characters,"
                f" over the limit of {MAX_MANIFEST_BYTES:,} (each use of an anchor counts"
                " its text again)",
                path=self.path,
                hint="write fewer aliases of large values, or move the data to a vars_from file",
            )
        self.node(node, ())

    def expanded_size(self, node: Node) -> int:
        """Characters of `node`'s scalars and keys, every alias counted at each use.

        Memoised by node, so an alias bomb (anchors nesting anchors) costs
        one visit per node while its size multiplies.
        """
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        self._sizes[id(node)] = 0  # a recursive alias (not valid YAML) counts nothing twice
        if isinstance(node, ScalarNode):
            size = len(node.value)
        elif isinstance(node, SequenceNode):
            size = sum(self.expanded_size(item) for item in node.value)
        elif isinstance(node, MappingNode):
            size = sum(self.expanded_size(k) + self.expanded_size(v) for k, v in node.value)
        else:
            size = 0
        self._sizes[id(node)] = size
        return size

    def node(self, node: Node, loc: Loc) -> None:
        self.values.setdefault(loc, _mark(node))
        if id(node) in self._seen:
            return
        self._seen.add(id(node))
        if isinstance(node, ScalarNode) and _is_prompt_text(loc):
            self._prompt_text(node, loc)
        if isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                self.node(item, (*loc, i))
        elif isinstance(node, MappingNode):
            self._mapping(node, loc)

    def _mapping(self, node: MappingNode, loc: Loc) -> None:
        written: dict[Any, Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                self._merge(value_node, loc)
                continue
            key = _key(key_node)
            if key in written:
                first = _mark(written[key])
                where = _mark(key_node)
                raise ManifestError(
                    f"the key `{key}` is written twice (first on line {first.line})",
                    path=self.path,
                    line=where.line,
                    column=where.column,
                    hint="keep one of them; YAML would silently use the last",
                )
            written[key] = key_node
            self.keys[(*loc, key)] = _mark(key_node)
            self.values[(*loc, key)] = _mark(value_node)
            self.node(value_node, (*loc, key))

    def _merge(self, value_node: Node, loc: Loc) -> None:
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        for source in sources:
            if isinstance(source, MappingNode):
                for key_node, item in source.value:
                    key = _key(key_node)
                    self.keys.setdefault((*loc, key), _mark(key_node))
                    self.node(item, (*loc, key))

    def _prompt_text(self, node: ScalarNode, loc: Loc) -> None:
        length = len(node.value)
        if length <= MAX_PROMPT_CHARS:
            return
        where = _mark(node)
        what = "a prompt" if loc[-1] == "prompt" else "a var value"
        raise ManifestError(
            f"{_dotted(loc)}: {what} of {length:,} characters is over the limit of"
            f" {MAX_PROMPT_CHARS:,}",
            path=self.path,
            line=where.line,
            column=where.column,
            hint="shorten it; a prompt is sent whole with every job of it",
        )


def _is_prompt_text(loc: Loc) -> bool:
    """Whether `loc` is a prompt's text or one of its var values (capped at MAX_PROMPT_CHARS)."""
    if len(loc) < 3 or loc[0] != "prompts" or not isinstance(loc[1], int):
        return False
    return (len(loc) == 3 and loc[2] == "prompt") or (len(loc) >= 5 and loc[2] == "vars")


def _dotted(loc: Loc) -> str:
    """`loc` as pydantic's messages write it: ``prompts[1].vars.color[0]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _key(node: Node) -> str | int:
    """A mapping key as pydantic will report it in a `loc`."""
    if isinstance(node, ScalarNode):
        if node.tag == INT_TAG:
            return parse_int(str(node.value))
        return str(node.value)
    return f"<{type(node).__name__}>"
