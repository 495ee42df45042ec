"""The manifest's YAML schema: pydantic models at the edge.

The models check shapes, types and allowed values (with messages that list
the allowed ones); their value types, each with its check and its JSON
Schema, are in `runner.manifest.fields`. `runner.manifest.build` then checks
what spans several keys and builds the frozen `Manifest`. Every model
forbids unknown keys, so a typo is an error with a "did you mean" hint
(`messages.py`) instead of a silently ignored setting.
`manifest_json_schema()` is what `runner schema` prints and
`manifests/manifest.schema.json` holds.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from runner.manifest.fields import (
    ID_RULE,
    IMAGE_SOURCE_SCHEMA,
    RESERVED_VARS,
    VAR_NAME,
    AspectRatio,
    BaseUrl,
    DataPath,
    EntryValue,
    ImageSource,
    ImagesPerRequest,
    IncludeValue,
    InFlight,
    Mode,
    OutputFormat,
    RedisUrl,
    Resolution,
    Rpm,
    SafeId,
    SafeName,
    Slug,
    VarValue,
    param_problem,
)
from runner.params import DEFAULT_MODEL
from runner.providers import DEFAULT_PROVIDER, MAX_INPUT_IMAGES

# ID_RULE, RESERVED_VARS, VAR_NAME, ImageSource, SafeId and param_problem live in
# runner.manifest.fields; they stay importable from here, where they used to be.
__all__ = [
    "ID_RULE",
    "RESERVED_VARS",
    "VAR_NAME",
    "ApiModel",
    "AxesModel",
    "BudgetModel",
    "CoordinatorModel",
    "ImageSource",
    "ManifestModel",
    "OutputModel",
    "ParamsModel",
    "PromptModel",
    "SafeId",
    "SweepModel",
    "manifest_json_schema",
    "manifest_schema_text",
    "param_problem",
]

# What `validate` checks that the JSON Schema can say as well, for editors and CI outside
# the repo (tests/test_manifest_schema.py holds the two to agreement on tests/manifests_bad).
_VAR_KEY_PATTERN: Final = (
    "^(?!(?:" + "|".join(sorted(RESERVED_VARS)) + ")$)" + VAR_NAME.pattern.removeprefix("^")
)
# The prompt text as str.format reads it: {name} fields only, {{ and }} for braces.
_TEMPLATE_PATTERN: Final = r"^(?:[^{}]|\{\{|\}\}|\{[A-Za-z_][A-Za-z0-9_]*\})*$"
# A name template: relative, '/' between folders, and {i} somewhere.
_NAME_PATTERN: Final = r"^(?!/)[^\\]*\{i\}[^\\]*$"
# pydantic's own alias, not re-exported: a JSON object as json_schema_extra takes it.
JsonDict = dict[str, "JsonValue"]
JsonValue = int | float | str | bool | None | list["JsonValue"] | JsonDict
_LISTED: Final[JsonDict] = {"minItems": 1}

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


_IMAGES: Final = {
    "type": "array",
    "items": IMAGE_SOURCE_SCHEMA,
    "minItems": 1,
    "maxItems": MAX_INPUT_IMAGES,
    "uniqueItems": True,
}

IncludeEntry = Annotated[
    dict[str, IncludeValue],
    WithJsonSchema(
        {
            "type": "object",
            "properties": {
                "images": {
                    **_IMAGES,
                    "description": "source images of one multi-image edit, in order (instead "
                    "of `image`; the rules of a prompt's `images`)",
                }
            },
            "additionalProperties": {"type": ["string", "number"]},
            "not": {"required": ["image", "images"]},
        }
    ),
]
"""An `include` entry: axes and vars to single values, or `images:` to a list of sources."""


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
    include: list[IncludeEntry] = Field(
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
