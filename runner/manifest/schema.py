"""The manifest's YAML schema: pydantic models at the edge.

The models check shapes, types and allowed values (with messages that list
the allowed ones); `runner.manifest.build` then checks what spans several
keys and builds the frozen `Manifest`. Every model forbids unknown keys, so
a typo is an error with a "did you mean" hint (`messages.py`) instead of a
silently ignored setting.
`manifest_json_schema()` is what `runner schema` prints and
`manifests/manifest.schema.json` holds.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationInfo, WithJsonSchema
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
from runner.providers import DEFAULT_PROVIDER, MAX_INPUT_IMAGES, N_LIMIT, PROVIDERS

ID_RULE: Final = "1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
# No ".." anywhere: the lookahead lets the JSON Schema say it too (ECMA 262 has lookaheads).
_ID = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

VAR_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""A var's name: it is a `{field}` of the prompt text (and a column of a vars_from file)."""

RESERVED_VARS: Final = frozenset((*AXES, "prompt"))
"""Names a var cannot have: the request params, `image` and `prompt`."""

# What `validate` checks that the JSON Schema can say as well, for editors and CI outside
# the repo (tests/test_manifest_schema.py holds the two to agreement on tests/manifests_bad).
_VAR_KEY_PATTERN: Final = (
    "^(?!(?:" + "|".join(sorted(RESERVED_VARS)) + ")$)" + VAR_NAME.pattern.removeprefix("^")
)
# The prompt text as str.format reads it: {name} fields only, {{ and }} for braces.
_TEMPLATE_PATTERN: Final = r"^(?:[^{}]|\{\{|\}\}|\{[A-Za-z_][A-Za-z0-9_]*\})*$"
# A name template: relative, '/' between folders, and {i} somewhere.
_NAME_PATTERN: Final = r"^(?!/)[^\\]*\{i\}[^\\]*$"
# An input image: a base64 data URI of a known type, an http(s) URL, a Windows drive path,
# or anything without a URL scheme (a path relative to the manifest).
_IMAGE_PATTERN: Final = (
    r"^(?:data:image/(?:png|jpeg|jpg|webp);base64,[A-Za-z0-9+/=\s]+"
    r"|https?://[^/\s]+\S*"
    r"|[A-Za-z]:[\\/].*"
    r"|(?![A-Za-z][A-Za-z0-9+.-]*:).+)$"
)
# pydantic's own alias, not re-exported: a JSON object as json_schema_extra takes it.
JsonDict = dict[str, "JsonValue"]
JsonValue = int | float | str | bool | None | list["JsonValue"] | JsonDict
_LISTED: Final[JsonDict] = {"minItems": 1}
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
ImageSource = Annotated[
    str,
    _param("image"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _IMAGE_PATTERN,
            "description": "path relative to the manifest, http(s) URL or data URI",
        }
    ),
]


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


def _check_scalar(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(
            f"expected a single value (text or a number), got {describe(value)}",
            "write one value per key; lists belong under sweep or vars",
        )
    return value


def _check_var_value(value: object) -> object:
    _check_scalar(value)
    return str(value)


def _check_in_flight(value: object) -> object:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise _fail(
        f"expected a positive integer or `auto`, got {describe(value)}",
        "auto derives it from the rate and the observed latency",
    )


def _check_rpm(value: object) -> object:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise _fail(
        f"expected a whole number at least 1, or `auto`, got {describe(value)}",
        "use 1 or more (the API key's requests per minute), or auto to learn it at run time",
    )


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
InFlight = Annotated[
    int | Literal["auto"],
    PlainValidator(_check_in_flight),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}]}),
]

Rpm = Annotated[
    int | Literal["auto"],
    PlainValidator(_check_rpm),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}]}),
]

DataPath = Annotated[
    str,
    Field(min_length=1),
    WithJsonSchema(
        {"type": "string", "minLength": 1, "description": "path relative to the manifest"}
    ),
]

_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True)


class ParamsModel(BaseModel):
    """Request params; a key left out falls back to the next level (see docs/manifest.md)."""

    model_config = _CONFIG

    mode: Mode | None = None
    aspect_ratio: AspectRatio | None = None
    resolution: Resolution | None = None
    n: ImagesPerRequest | None = None
    output_format: OutputFormat | None = None


def _vars_schema(schema: JsonDict) -> None:
    """Var names as `validate` allows them; each var's list non-empty, no value twice."""
    schema["propertyNames"] = {"pattern": _VAR_KEY_PATTERN}
    values = schema.get("additionalProperties")
    if isinstance(values, dict):
        values.update(minItems=1, uniqueItems=True)


class PromptModel(BaseModel):
    """One prompt: its text, its own vars and params, and an optional input image."""

    model_config = _CONFIG

    id: SafeId = Field(description="names the prompt's output folder")
    prompt: str = Field(
        min_length=1,
        description="text; {var} placeholders, {{ }} for braces",
        json_schema_extra={"pattern": _TEMPLATE_PATTERN},
    )
    vars: dict[str, list[VarValue]] = Field(
        default_factory=dict,
        description="values swept for this prompt only",
        json_schema_extra=_vars_schema,
    )
    vars_from: DataPath | None = Field(
        default=None,
        description="a .csv, .jsonl or .yaml file of var rows (one row = one set of values,"
        " zipped across its columns), relative to the manifest; read lazily",
    )
    image: ImageSource | None = Field(default=None, description="input image: makes it an edit")
    images: list[ImageSource] | None = Field(
        default=None,
        # Counted by the builder against the provider's own limit, with a message naming it.
        json_schema_extra={"minItems": 1, "maxItems": MAX_INPUT_IMAGES},
        description="source images of one multi-image edit, in order (instead of `image`; "
        "xai: up to 3, segmind: 1); the same path rules as `image`",
    )
    params: ParamsModel = Field(default_factory=ParamsModel, description="overrides of defaults")


class AxesModel(BaseModel):
    """Axes to sweep (a cartesian product) or to zip (paired by position): axis -> list."""

    model_config = _CONFIG

    # minItems applies to the list branch of each `list | null`: an empty list makes no jobs.
    mode: list[Mode] | None = Field(default=None, json_schema_extra=_LISTED)
    aspect_ratio: list[AspectRatio] | None = Field(default=None, json_schema_extra=_LISTED)
    resolution: list[Resolution] | None = Field(default=None, json_schema_extra=_LISTED)
    n: list[ImagesPerRequest] | None = Field(default=None, json_schema_extra=_LISTED)
    output_format: list[OutputFormat] | None = Field(default=None, json_schema_extra=_LISTED)
    image: list[ImageSource] | None = Field(default=None, json_schema_extra=_LISTED)


def _unique_lists(schema: JsonDict) -> None:
    properties = schema.get("properties")
    for prop in properties.values() if isinstance(properties, dict) else ():
        if isinstance(prop, dict):
            prop["uniqueItems"] = True


class SweepModel(AxesModel):
    """Axes to sweep (a cartesian product): axis -> list, no value listed twice."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, json_schema_extra=_unique_lists
    )


class BudgetModel(BaseModel):
    """Limits of a run: money (USD) and request rate."""

    model_config = _CONFIG

    max_credits: float | None = Field(
        default=None, ge=0, description="USD; the run never reserves past this (none: no cap)"
    )
    requests_per_minute: Rpm = Field(
        default=5,
        description="the API key's limit; 5 is Segmind's Free tier; "
        "auto: learned at run time (one call, growing per round trip until the first 429)",
    )
    rate_scope: Literal["submit", "all"] = Field(
        default="submit", description="which calls the limit counts: submits only, or every call"
    )
    rate_model: Literal["window", "smooth"] = Field(
        default="window",
        description="window: up to the limit at once in any 60 s (Segmind's windows allow it); "
        "smooth: evenly spaced calls, for servers that refuse bursts",
    )
    max_in_flight: InFlight = Field(default="auto", description="jobs submitted but not finished")
    max_submits_in_flight: int = Field(
        default=4,
        ge=1,
        description="billed sends on the wire at once: what a kill can cost in paid submits "
        "the ledger never saw (fewer: less exposure, slower bursts)",
    )


class OutputModel(BaseModel):
    """Where images and sidecars go."""

    model_config = _CONFIG

    dir: str | None = Field(
        default=None, min_length=1, description="default outputs/<name>, relative to the cwd"
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        json_schema_extra={"pattern": _NAME_PATTERN},
        description="file name template under dir (the store adds the extension), e.g. "
        "{prompt}/{color}-{aspect_ratio}-{i}; placeholders: prompt_id (prompt), slug, key8, i, "
        "index, repeat, the params and the prompt's vars; must hold {i}, and no two jobs may "
        "share a name (default {prompt_id}/{slug}-{key8}-{i})",
    )
    pattern: str | None = Field(
        default=None,
        min_length=1,
        json_schema_extra={"pattern": _NAME_PATTERN},
        description="the older spelling of `name` (give one of them)",
    )


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


class CoordinatorModel(BaseModel):
    """Several workers on one run: where they coordinate (docs/distributed.md)."""

    model_config = _CONFIG

    url: RedisUrl | None = Field(
        default=None,
        description="Redis shared by the workers, e.g. redis://ci-redis:6379/0 "
        "(--coordinator overrides it)",
    )
    lease: float = Field(
        default=15.0,
        ge=1,
        le=3600,
        description="seconds a claimed job stays a worker's without a heartbeat; "
        "a dead worker's jobs go to the others after it",
    )


class ApiModel(BaseModel):
    """Which provider, API root and endpoint to call."""

    model_config = _CONFIG

    provider: Literal["segmind", "xai"] = Field(
        default=DEFAULT_PROVIDER,
        description="who serves the model: segmind (SEGMIND_API_KEY) or xai (XAI_API_KEY); "
        "--provider overrides it",
    )
    base_url: BaseUrl | None = Field(
        default=None, description="API root, e.g. https://api.segmind.com (else the default)"
    )
    endpoint: Literal["v2", "v1"] | None = Field(
        default=None,
        description="v2: submit and poll; v1: one blocking call (default: the provider's first, "
        "v2 on segmind; xai has only v1)",
    )


class ManifestModel(BaseModel):
    """A runner manifest: prompts and sweeps in, images with JSON sidecars out."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        title="runner manifest",
        json_schema_extra={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            # Prompts inline, from a file, or both (the builder checks it with a place).
            "anyOf": [{"required": ["prompts"]}, {"required": ["prompts_from"]}],
        },
    )

    name: SafeName = Field(description="the run's name; the default output is outputs/<name>")
    model: Slug = Field(default=DEFAULT_MODEL, description="the API's model slug")
    api: ApiModel = Field(default_factory=ApiModel)
    defaults: ParamsModel = Field(default_factory=ParamsModel)
    prompts: list[PromptModel] = Field(
        default_factory=list, description="required unless prompts_from names a file"
    )
    prompts_from: DataPath | None = Field(
        default=None,
        description="a .jsonl file, relative to the manifest: one prompt per line"
        ' ({"id", "prompt", optional "params" and "image"}), after `prompts`; read lazily',
    )
    sweep: SweepModel = Field(default_factory=SweepModel)
    zip: list[AxesModel] = Field(default_factory=list)
    include: list[dict[str, EntryValue]] = Field(
        default_factory=list, description="extra combinations; `prompt: <id>` targets one prompt"
    )
    exclude: list[dict[str, EntryValue]] = Field(
        default_factory=list, description="drop product combinations matching all given keys"
    )
    repeat: int = Field(default=1, ge=1, description="independent requests of each combination")
    budget: BudgetModel = Field(default_factory=BudgetModel)
    prices: dict[Mode, dict[Resolution, Annotated[float, Field(ge=0)]]] = Field(
        default_factory=dict, description="USD per image by mode and resolution; overrides"
    )
    output: OutputModel = Field(default_factory=OutputModel)
    coordinator: CoordinatorModel | None = Field(
        default=None, description="run on several workers that share Redis (optional)"
    )
    input_roots: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="more folders local input images may be read from (relative to the "
        "manifest's folder, or absolute); by default only the manifest's own folder",
    )


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of a manifest (draft 2020-12), as `runner schema` prints it."""
    return ManifestModel.model_json_schema()


def manifest_schema_text() -> str:
    """The JSON Schema as text, exactly as committed in manifests/manifest.schema.json."""
    import json

    return json.dumps(manifest_json_schema(), indent=2, ensure_ascii=False) + "\n"
