"""Pydantic's validation errors in plain words: the place, what was wrong, the fix.

Every problem is reported at once, in file order, each placed at its
file:line:column (the first `SHOWN`, then a count of the rest), so a user
fixes them in one pass. A misspelt key also makes its right spelling
"missing"; the typo is reported first, with a "did you mean".
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Final, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from runner.errors import ManifestError
from runner.manifest.schema import ManifestModel
from runner.manifest.source import Loc, Source, describe, render_loc

# Problems shown at once; past this a count stands for the rest.
SHOWN: Final = 20


def translate(err: ValidationError, source: Source) -> ManifestError:
    """Pydantic's errors as one ManifestError with place and fix for each, in file order."""
    groups: dict[Loc, list[ErrorDetails]] = {}
    on_key: set[Loc] = set()
    for detail in err.errors():
        loc = tuple(detail["loc"])
        if detail["type"] not in ("missing", "extra_forbidden", "invalid_key"):
            # Drop union-member tags and `[key]` markers: keep the part written in the file.
            known = source.known(loc) or loc
            if "[key]" in loc:
                on_key.add(known)
            loc = known
        groups.setdefault(loc, []).append(detail)

    def order(item: tuple[Loc, list[ErrorDetails]]) -> tuple[bool, int, int]:
        # A misspelt key also makes its correct spelling "missing": report the typo first.
        missing = item[1][0]["type"] == "missing"
        mark = source.mark(item[0], key=True)
        return (missing, *((mark.line, mark.column) if mark else (0, 0)))

    problems = []
    for loc, details in sorted(groups.items(), key=order):
        message, hint, key = _explain(loc, details)
        problems.append(source.error(message, loc, hint=hint or None, key=key or loc in on_key))
    return combine(problems)


def combine(problems: Sequence[ManifestError]) -> ManifestError:
    """One ManifestError for `problems` (at least one, already in the order to show).

    The first `SHOWN` are shown (nested ones flattened), the rest counted.
    """
    flat: list[ManifestError] = []
    more = 0
    for problem in problems:
        flat += [problem, *problem.others]
        more += problem.more
    first, shown = flat[0], tuple(flat[1:SHOWN])
    more += max(0, len(flat) - SHOWN)
    if not shown and not more:
        return first
    return ManifestError(
        first.message,
        path=first.path,
        line=first.line,
        column=first.column,
        field=first.field,
        hint=first.hint,
        others=tuple(
            ManifestError(
                p.message, path=p.path, line=p.line, column=p.column, field=p.field, hint=p.hint
            )
            for p in shown
        ),
        more=more,
    )


_EXPECT: Final = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
}


def _explain(loc: Loc, details: list[ErrorDetails]) -> tuple[str, str, bool]:
    """(message, hint, points at the key) for the errors at one place."""
    first = details[0]
    kind = first["type"]
    ctx = first.get("ctx") or {}
    if kind == "missing":
        parent = render_loc(loc[:-1]) or "the top level of the manifest"
        return f"`{loc[-1]}` is required but missing", f"add `{loc[-1]}:` to {parent}", False
    if kind == "extra_forbidden":
        return (*_unknown_key(loc), True)
    if kind == "invalid_key":
        return f"the key {describe(first['input'])} is not text", "quote the key", True
    if kind == "bad_value":
        return str(ctx.get("message", first["msg"])), str(ctx.get("hint", "")), False
    expected = [_expect(d) for d in details if d["type"] in _EXPECT or d["type"] == "literal_error"]
    if expected:
        got = describe(first["input"])
        return f"expected {' or '.join(expected)}, got {got}", _type_hint(loc, first), False
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return (
            f"must be at least {bound}, got {describe(first['input'])}",
            f"use {bound} or more",
            False,
        )
    if kind == "too_short":
        return "must not be empty", "give at least one item", False
    if kind == "string_too_short":
        return "must not be an empty string", "", False
    return str(first["msg"]), "", False


def _expect(detail: ErrorDetails) -> str:
    if detail["type"] == "literal_error":
        return str((detail.get("ctx") or {}).get("expected", "an allowed value"))
    return _EXPECT[detail["type"]]


def _type_hint(loc: Loc, detail: ErrorDetails) -> str:
    if detail["type"] == "list_type":
        if len(loc) >= 2 and (loc[0] == "sweep" or loc[0] == "zip"):
            return "write a list, e.g. [a, b]; a single value for every job belongs in `defaults`"
        return "write a YAML list: [a, b] or one `- item` per line"
    if detail["type"] in ("dict_type", "model_type", "model_attributes_type"):
        return "write `key: value` lines under it"
    if detail["type"] == "literal_error":
        return "choose one of the allowed values"
    if isinstance(detail["input"], int | float) and detail["type"] == "string_type":
        return "quote it to make it text"
    return ""


def _unknown_key(loc: Loc) -> tuple[str, str]:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    allowed = list(model.model_fields) if model is not None else []
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    where = render_loc(loc[:-1]) or "the top level"
    if close:
        hint = f"did you mean `{close[0]}`? allowed keys in {where}: {', '.join(allowed)}"
    else:
        hint = f"allowed keys in {where}: {', '.join(allowed)}"
    return f"unknown key `{key}`", hint


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc`, if there is one."""
    current: type[BaseModel] = ManifestModel
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        found = _find_model(field.annotation) if field is not None else None
        if found is None:
            return None
        current = found
    return current


def _find_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None
