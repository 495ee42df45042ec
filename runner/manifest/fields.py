"""The manifest's value types: each field's check, in plain words, and its JSON Schema.

A type here is an `Annotated` pydantic type: a validator that refuses a
value with a message and a hint (what is allowed, or "did you mean") and
the JSON Schema fragment that says the same for editors. The models that
put them together are in `runner.manifest.schema`; `param_problem` is also
what `runner.manifest.build` checks include and exclude values with.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

from pydantic import Field, PlainValidator, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from runner.manifest.model import AXES
from runner.manifest.source import describe, shorten
from runner.params import (
    ALLOWED,
    ASPECT_RATIOS,
    DEFAULT_MODEL,
    MODES,
    N_MAX,
    N_MIN,
    OUTPUT_FORMATS,
    RESOLUTIONS,
)
from runner.providers import N_LIMIT, PROVIDERS

ID_RULE: Final = "1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
# No ".." anywhere: the lookahead lets the JSON Schema say it too (ECMA 262 has lookaheads).
_ID = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

VAR_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""A var's name: it is a `{field}` of the prompt text (and a column of a vars_from file)."""

RESERVED_VARS: Final = frozenset((*AXES, "prompt"))
"""Names a var cannot have: the request params, `image` and `prompt`."""

# An input image: a base64 data URI of a known type, an http(s) URL, a Windows drive path,
# or anything without a URL scheme (a path relative to the manifest).
_IMAGE_PATTERN: Final = (
    r"^(?:data:image/(?:png|jpeg|jpg|webp);base64,[A-Za-z0-9+/=\s]+"
    r"|https?://[^/\s]+\S*"
    r"|[A-Za-z]:[\\/].*"
    r"|(?![A-Za-z][A-Za-z0-9+.-]*:).+)$"
)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")

Scalar = str | int | float


def _fail(message: str, hint: str | None = None) -> PydanticCustomError:
    # The message goes through the context so braces in it are never a template.
    return PydanticCustomError("bad_value", "{message}", {"message": message, "hint": hint or ""})


def _more_elsewhere(n_max: int) -> str:
    """Which providers allow more images per request than `n_max`, for a hint."""
    more = [
        f"api.provider {p.name} allows up to {p.n_max}"
        for p in PROVIDERS.values()
        if p.n_max > n_max
    ]
    return f"; {', '.join(more)}" if more else ""


def param_problem(name: str, value: object, *, n_max: int = N_MAX) -> tuple[str, str] | None:
    """Why `value` is not allowed for request param `name` (message, hint), or None if it is.

    `n_max` is the provider's most images per request (runner.providers).
    """
    if name == "n":
        if isinstance(value, bool) or not isinstance(value, int):
            return (
                f"expected an integer from {N_MIN} to {n_max}, got {describe(value)}",
                "n is the number of images per request",
            )
        if not N_MIN <= value <= n_max:
            return (
                f"{value} is out of range: n must be {N_MIN} to {n_max}",
                f"allowed: {N_MIN}..{n_max}; for more images of one combination use `repeat`"
                + _more_elsewhere(n_max),
            )
        return None
    if name == "image":
        if not isinstance(value, str):
            return (
                f"expected a path, an http(s) URL or a data URI, got {describe(value)}",
                "e.g. image: inputs/photo.jpg",
            )
        return None
    allowed = ALLOWED[name]
    if isinstance(value, str) and value in allowed:
        return None
    hint = f"allowed: {', '.join(allowed)}"
    if isinstance(value, str):
        close = difflib.get_close_matches(value, allowed, n=1, cutoff=0.5)
        if close:
            hint = f"did you mean `{close[0]}`? {hint}"
    if name == "aspect_ratio" and isinstance(value, int | float) and not isinstance(value, bool):
        hint += '; quote ratios like "16:9"'
    return f"{describe(value)} is not an allowed {name}", hint


def _param(name: str) -> PlainValidator:
    def check(value: object, info: ValidationInfo) -> object:
        # The provider's limits come in the validation context (build.py).
        context = info.context if isinstance(info.context, dict) else {}
        problem = param_problem(name, value, n_max=int(context.get("n_max", N_MAX)))
        if problem is not None:
            raise _fail(*problem)
        return value

    return PlainValidator(check)


def _enum(values: tuple[str, ...], what: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "enum": list(values), "description": what})


Mode = Annotated[str, _param("mode"), _enum(MODES, "standard is fast; quality costs more")]
AspectRatio = Annotated[str, _param("aspect_ratio"), _enum(ASPECT_RATIOS, "width:height")]
Resolution = Annotated[str, _param("resolution"), _enum(RESOLUTIONS, "output resolution")]
OutputFormat = Annotated[str, _param("output_format"), _enum(OUTPUT_FORMATS, "image format")]
ImagesPerRequest = Annotated[
    int,
    _param("n"),
    WithJsonSchema(
        {
            "type": "integer",
            "minimum": N_MIN,
            "maximum": N_LIMIT,
            "description": f"images per request (segmind: up to {N_MAX}; see api.provider)",
        }
    ),
]
IMAGE_SOURCE_SCHEMA: Final[dict[str, Any]] = {
    "type": "string",
    "pattern": _IMAGE_PATTERN,
    "description": "path relative to the manifest, http(s) URL or data URI",
}
"""The JSON Schema of one input image's text (`ImageSource`)."""

ImageSource = Annotated[str, _param("image"), WithJsonSchema(IMAGE_SOURCE_SCHEMA)]


def _check_id(what: str) -> Callable[[object], object]:
    def check(value: object) -> object:
        if not isinstance(value, str):
            hint = f'quote it: "{value}"' if isinstance(value, int | float) else ID_RULE
            raise _fail(f"expected a string, got {describe(value)}", hint)
        if not _ID.match(value):
            raise _fail(
                f"`{shorten(value)}` is not a safe {what}: it names a folder, so it must be"
                f" {ID_RULE}"
                " (no slashes, no `..`)",
                "e.g. snow-leopard_2",
            )
        return value

    return check


SafeId = Annotated[
    str,
    PlainValidator(_check_id("id")),
    WithJsonSchema({"type": "string", "pattern": _ID.pattern, "description": ID_RULE}),
]
SafeName = Annotated[
    str,
    PlainValidator(_check_id("name")),
    WithJsonSchema({"type": "string", "pattern": _ID.pattern, "description": ID_RULE}),
]


def _check_slug(value: object) -> object:
    if not isinstance(value, str) or not _SLUG.match(value):
        raise _fail(
            f"{describe(value)} is not a model slug",
            f"a slug is lower-case letters, digits, . _ -, e.g. {DEFAULT_MODEL}",
        )
    return value


def scalar_problem(value: object) -> tuple[str, str] | None:
    """Why `value` is not one value (text or a number) of an entry or a var (message, hint)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return (
            f"expected a single value (text or a number), got {describe(value)}",
            "write one value per key; lists belong under sweep or vars",
        )
    return None


def _check_scalar(value: object) -> object:
    problem = scalar_problem(value)
    if problem is not None:
        raise _fail(*problem)
    return value


def _check_include_value(value: object) -> object:
    # A list of texts may be an include entry's `images:`; runner.manifest.entries
    # refuses it under any other key with scalar_problem's words.
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return _check_scalar(value)


def _check_var_value(value: object) -> object:
    _check_scalar(value)
    return str(value)


def _check_count_or_auto(expected: str, hint: str) -> Callable[[object], object]:
    """A check for a whole number >= 1 or `auto` (learned at run time)."""

    def check(value: object) -> object:
        if value == "auto" or (
            isinstance(value, int) and not isinstance(value, bool) and value >= 1
        ):
            return value
        raise _fail(f"expected {expected}, got {describe(value)}", hint)

    return check


def _check_base_url(value: object) -> object:
    if isinstance(value, str) and re.match(r"^https?://[^/\s]+(/\S*)?$", value):
        return value
    raise _fail(f"{describe(value)} is not an http(s) URL", "e.g. https://api.segmind.com")


Slug = Annotated[
    str, PlainValidator(_check_slug), WithJsonSchema({"type": "string", "pattern": _SLUG.pattern})
]
BaseUrl = Annotated[
    str, PlainValidator(_check_base_url), WithJsonSchema({"type": "string", "format": "uri"})
]
VarValue = Annotated[
    str, PlainValidator(_check_var_value), WithJsonSchema({"type": ["string", "number"]})
]
EntryValue = Annotated[
    Scalar, PlainValidator(_check_scalar), WithJsonSchema({"type": ["string", "number"]})
]
IncludeValue = Annotated[
    Scalar | list[str],
    PlainValidator(_check_include_value),
    WithJsonSchema({"type": ["string", "number"]}),
]
"""A value of an `include` entry: one value, or the list of an entry's `images:`."""
_COUNT_OR_AUTO = WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}]})
InFlight = Annotated[
    int | Literal["auto"],
    PlainValidator(
        _check_count_or_auto(
            "a positive integer or `auto`", "auto derives it from the rate and the observed latency"
        )
    ),
    _COUNT_OR_AUTO,
]
Rpm = Annotated[
    int | Literal["auto"],
    PlainValidator(
        _check_count_or_auto(
            "a whole number at least 1, or `auto`",
            "use 1 or more (the API key's requests per minute), or auto to learn it at run time",
        )
    ),
    _COUNT_OR_AUTO,
]

DataPath = Annotated[
    str,
    Field(min_length=1),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "description": "path relative to the manifest"}
    ),
]


def _check_redis_url(value: object) -> object:
    if isinstance(value, str) and re.match(r"^(rediss?://[^/\s]+(/\d+)?|unix:///\S+)$", value):
        return value
    raise _fail(
        f"{describe(value)} is not a Redis URL",
        "e.g. redis://127.0.0.1:6379/0 (rediss:// for TLS); keep a password out of the "
        "manifest: pass it with --coordinator or $RUNNER_COORDINATOR",
    )


RedisUrl = Annotated[
    str, PlainValidator(_check_redis_url), WithJsonSchema({"type": "string", "format": "uri"})
]
