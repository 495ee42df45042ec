"""The checked manifest as frozen values: what `runner.sweep` and `runner.plan` read.

Built by `runner.manifest.build` from a file that passed every check, so
nothing here validates: these are plain data with a few derived views.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, Protocol

from runner.jobs import Endpoint, ImageInput
from runner.params import PARAM_NAMES
from runner.subset import Subset

AXES: Final = (*PARAM_NAMES, "image")
"""The names that can be swept, zipped, included or excluded (besides vars)."""

Value = str | int
"""A param or var value. Vars are text; `n` is an int; an image is its source text."""


@dataclass(frozen=True, slots=True)
class Unit:
    """One factor of a prompt's product: a var, a sweep axis, a zip group, or data rows.

    `names` holds one name (several for a zip group or the columns of a
    `vars_from` file); each item of `values` is a tuple aligned with `names`,
    in the order the manifest (or the file) lists them. For kind "rows" the
    values are a lazy `runner.manifest.data.VarRows` that re-reads the file on
    each iteration, so it must never be handed to `itertools.product` (which
    would hold every row): `runner.sweep` walks it outermost instead.
    """

    kind: Literal["var", "rows", "sweep", "zip"]
    names: tuple[str, ...]
    values: Collection[tuple[Value, ...]]

    @property
    def is_var(self) -> bool:
        """True for a prompt's own vars, declared inline or read from a data file."""
        return self.kind in ("var", "rows")


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt of the manifest.

    `base` holds every axis (the five params and `image`, None for no image)
    resolved as API defaults < manifest `defaults` < the prompt's `params`;
    the sweep, zip and include values are laid over it per job.
    """

    id: str
    template: str
    vars: tuple[Unit, ...]
    base: Mapping[str, Value | None]
    images: Mapping[str, ImageInput] = field(default_factory=lambda: MappingProxyType({}))
    """Input images of a prompt read from a `prompts_from` file (source text -> image);
    the manifest's own images are in `Manifest.images`."""
    more_images: tuple[ImageInput, ...] = ()
    """The 2nd and later source images of a multi-image edit (`images:`), in order; the
    first is `base["image"]`. They go with that first image only (runner.sweep)."""

    @property
    def var_names(self) -> tuple[str, ...]:
        """The prompt's var names, in declared order (a data file's columns first)."""
        return tuple(name for unit in self.vars for name in unit.names)

    def render(self, values: Mapping[str, str]) -> str:
        """The prompt text with `values` substituted for its `{var}` fields."""
        return self.template.format_map(values)


@dataclass(frozen=True, slots=True)
class Combination:
    """An `include` or `exclude` entry: the keys it names and, if given, its target prompt."""

    prompt: str | None
    values: tuple[tuple[str, Value], ...]

    def applies_to(self, prompt: Prompt) -> bool:
        """True if this entry can concern `prompt`: it targets it and names only its vars."""
        if self.prompt is not None and self.prompt != prompt.id:
            return False
        own = set(prompt.var_names)
        return all(name in AXES or name in own for name, _ in self.values)


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits: `max_credits` in USD (None: no cap); the rate counts the calls of `rate_scope`."""

    max_credits: float | None
    requests_per_minute: int | Literal["auto"]  # auto: learned at run time
    rate_scope: Literal["submit", "all"]
    rate_model: Literal["window", "smooth"]
    max_in_flight: int | Literal["auto"]
    # Billed sends on the wire at once: the most a kill can cost in unrecorded submits.
    max_submits_in_flight: int = 4


@dataclass(frozen=True, slots=True)
class Output:
    """`dir` as written (relative paths are to the current directory); `pattern` if given."""

    dir: str
    pattern: str | None


@dataclass(frozen=True, slots=True)
class Coordinator:
    """Workers of one run share Redis at `url`; a claimed job's `lease` lasts that many seconds."""

    url: str | None
    lease: float | None


@dataclass(frozen=True, slots=True)
class Api:
    """`base_url` without a trailing `/v1` or `/v2` (None: the backend's default).

    `provider` names the host (runner.providers); `endpoint` is one it has.
    """

    base_url: str | None
    endpoint: Endpoint
    provider: str = "segmind"


class PromptSource(Protocol):
    """Prompts read lazily from a file (`prompts_from`): each call re-reads the file."""

    @property
    def shown(self) -> str:
        """The file as messages name it."""
        ...

    @property
    def count(self) -> int:
        """How many prompts the file holds (counted when the manifest was loaded)."""
        ...

    def prompts(self) -> Iterator[Prompt]:
        """The file's prompts in file order, one at a time."""
        ...


@dataclass(frozen=True, slots=True)
class Manifest:
    """A checked manifest. `path` is as the user named it, `sha256` of its bytes.

    `sweep` and `zip` apply to every prompt; `images` maps each image
    source text written in the manifest to its loaded `ImageInput` (and an
    include entry's `images:` value to its first source, `image_sets` to
    the others); `prices`
    is USD per image by mode then resolution, the built-in table with the
    manifest's overrides laid over it.
    """

    path: str
    sha256: str
    name: str
    model: str
    api: Api
    prompts: tuple[Prompt, ...]
    sweep: tuple[Unit, ...]
    zip: tuple[Unit, ...]
    include: tuple[Combination, ...]
    exclude: tuple[Combination, ...]
    repeat: int
    budget: Budget
    prices: Mapping[str, Mapping[str, float]]
    output: Output
    images: Mapping[str, ImageInput]
    coordinator: Coordinator | None = None
    image_sets: Mapping[str, tuple[ImageInput, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """The 2nd and later sources of an include entry's multi-image edit (`images:`), by
    the `image` value that names them all (its first source is `images[value]`)."""
    prompt_files: tuple[PromptSource, ...] = ()
    """`prompts_from` files: their prompts follow `prompts` in expansion order."""
    subset: Subset | None = None
    """`--filter` / `--limit`: only these jobs are expanded (`runner.sweep.restrict` sets it)."""

    def all_prompts(self) -> Iterator[Prompt]:
        """Every prompt in expansion order: the inline ones, then each file's, lazily."""
        yield from self.prompts
        for source in self.prompt_files:
            yield from source.prompts()

    def units(self, prompt: Prompt) -> tuple[Unit, ...]:
        """The factors of `prompt`'s product in expansion order: vars, sweep, zip groups."""
        return (*prompt.vars, *self.sweep, *self.zip)
