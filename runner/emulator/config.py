"""Every knob of the emulator, as one frozen value.

Durations are in *nominal* seconds (what the real API would take) and are
multiplied by `time_scale` before use, so a benchmark can run a "10 s" job in
0.1 s with ``time_scale=0.01``. Money is in USD. Values the vendor does not
publish (marked *guess* in docs/emulator.md) are knobs rather than code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from random import Random
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from runner import params

EndpointKind = Literal["submit", "sync", "status", "result", "media", "credits", "other"]
FaultKind = Literal[
    "500",
    "502",
    "504",
    "429",
    "drop_before",
    "drop_after",
    "slow",
    "slow_body",
    "truncate",
    "cut",
    "corrupt",
    # Hostile answers (runner.emulator.hostile), for tests of the client's defences.
    "deep_json",
    "huge_body",
    "gzip_bomb",
    "extra_images",
    "missing_images",
    "negative_cost",
    "control_chars",
    "hostile_id",
    "trickle",
]
LimiterKind = Literal["fixed", "sliding", "bucket"]
RateScope = Literal["submit", "all"]
LatencyKind = Literal["fixed", "uniform", "lognormal"]
ResetHint = Literal["exact", "second", "none"]

ENDPOINT_KINDS: Final[tuple[EndpointKind, ...]] = get_args(EndpointKind)
FAULT_KINDS: Final[tuple[FaultKind, ...]] = get_args(FaultKind)
LIMITERS: Final[tuple[LimiterKind, ...]] = get_args(LimiterKind)
RATE_SCOPES: Final[tuple[RateScope, ...]] = get_args(RateScope)
RESET_HINTS: Final[tuple[ResetHint, ...]] = get_args(ResetHint)
# Faults that only make sense on a body of image bytes.
MEDIA_ONLY_FAULTS: Final = frozenset({"truncate", "cut", "corrupt"})
# Endpoint kinds that can be given faults ("other" is the 404 catch-all).
FAULTABLE: Final = frozenset(ENDPOINT_KINDS) - {"other"}
_API_KINDS: Final = frozenset({"submit", "sync", "status", "result", "credits"})
# The endpoint kinds each hostile fault fits (the rest fit every kind but media).
FAULT_ENDPOINTS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "deep_json": _API_KINDS,
        "huge_body": _API_KINDS,
        "gzip_bomb": _API_KINDS | {"media"},
        "control_chars": _API_KINDS,
        "extra_images": frozenset({"result", "sync"}),
        "missing_images": frozenset({"result", "sync"}),
        "negative_cost": frozenset({"result", "sync"}),
        "hostile_id": frozenset({"submit"}),
        "trickle": FAULTABLE,
    }
)
DEFAULT_HOSTILE_TEXT: Final = (
    "\x1b]0;pwned by the server\x07\x1b[2J\x1b[31mred alert\x1b[0m\x07 "
    "\x9b31m 8-bit CSI \u202eevil\u202c done"
)

DEFAULT_BLOCK_PATTERNS: Final = (r"(?i)\bblocked\b", r"(?i)\bnsfw\b")
DEFAULT_BLOCK_MESSAGE: Final = (
    "Content moderated: the prompt was refused by the safety system. "
    "Rephrase the prompt and submit again."
)


@dataclass(frozen=True, slots=True)
class Latency:
    """A distribution of job latencies in nominal seconds.

    ``fixed``: always `a`. ``uniform``: between `a` and `b`. ``lognormal``:
    median `a`, shape `b` (sigma of the underlying normal).
    """

    kind: LatencyKind = "lognormal"
    a: float = 10.0
    b: float = 0.25

    def __post_init__(self) -> None:
        if self.kind not in get_args(LatencyKind):
            raise ValueError(
                f"latency: unknown kind {self.kind!r}; use fixed, uniform or lognormal"
            )
        if self.a < 0 or self.b < 0 or not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError("latency: values must be finite and >= 0")
        if self.kind == "uniform" and self.b < self.a:
            raise ValueError("latency: uniform:A,B needs A <= B")

    def sample(self, rng: Random) -> float:
        """One latency in nominal seconds."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return self.a * math.exp(rng.gauss(0.0, self.b))

    @classmethod
    def parse(cls, text: str) -> Latency:
        """Read ``fixed:10``, ``uniform:5,15`` or ``lognormal:10,0.25`` (a bare number is fixed)."""
        kind, _, rest = text.partition(":")
        if not rest:
            kind, rest = "fixed", text
        try:
            numbers = [float(part) for part in rest.split(",")]
        except ValueError:
            raise ValueError(
                f"latency {text!r}: use fixed:S, uniform:A,B or lognormal:MEDIAN,SIGMA"
            ) from None
        if kind == "fixed" and len(numbers) == 1:
            return cls("fixed", numbers[0], 0.0)
        if kind in ("uniform", "lognormal") and len(numbers) == 2:
            return cls(kind, numbers[0], numbers[1])  # type: ignore[arg-type]
        raise ValueError(f"latency {text!r}: use fixed:S, uniform:A,B or lognormal:MEDIAN,SIGMA")


@dataclass(frozen=True, slots=True)
class FaultRate:
    """Inject `fault` into a fraction `rate` (0..1) of the calls of one endpoint kind."""

    endpoint: EndpointKind
    fault: FaultKind
    rate: float

    def __post_init__(self) -> None:
        check_fault(self.endpoint, self.fault)
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault {self.endpoint}:{self.fault}: rate must be within 0..1")

    @classmethod
    def parse(cls, text: str) -> FaultRate:
        """Read ``ENDPOINT:FAULT=RATE``, e.g. ``submit:500=0.05`` or ``media:truncate=0.1``."""
        head, _, rate = text.partition("=")
        endpoint, _, fault = head.partition(":")
        try:
            value = float(rate)
        except ValueError:
            raise ValueError(
                f"fault {text!r}: use ENDPOINT:FAULT=RATE, e.g. submit:500=0.05"
            ) from None
        check_fault(endpoint, fault)
        return cls(endpoint, fault, value)  # type: ignore[arg-type]


def check_fault(endpoint: str, fault: str) -> None:
    """Raise ValueError naming the allowed values when a fault does not fit an endpoint."""
    if endpoint not in FAULTABLE:
        raise ValueError(
            f"fault endpoint {endpoint!r} is not one of {', '.join(sorted(FAULTABLE))}"
        )
    if fault not in FAULT_KINDS:
        raise ValueError(f"fault {fault!r} is not one of {', '.join(FAULT_KINDS)}")
    if fault in MEDIA_ONLY_FAULTS and endpoint != "media":
        raise ValueError(f"fault {fault!r} applies to media downloads only, not to {endpoint!r}")
    fits = FAULT_ENDPOINTS.get(fault)
    if fits is not None and endpoint not in fits:
        raise ValueError(
            f"fault {fault!r} applies to {', '.join(sorted(fits))} only, not to {endpoint!r}"
        )


def _default_prices() -> Mapping[str, Mapping[str, float]]:
    return params.DEFAULT_PRICES


def _no_sizes() -> Mapping[tuple[str, str], tuple[int, int]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Every knob of the emulator; see docs/emulator.md for each one and its default.

    Durations (`latency`, `rate_window`, `retention`, `slow_delay`,
    `trickle_delay`) are nominal seconds, multiplied by `time_scale`.
    """

    # The model slugs served; any other slug is 404 "Model <slug> not found".
    models: tuple[str, ...] = (params.DEFAULT_MODEL,)
    # Queue: W workers; each job's latency drawn from `latency` (seeded by `seed`).
    workers: int = 4
    latency: Latency = field(default_factory=Latency)
    time_scale: float = 1.0
    # Records (status, result, media) live this long after submission, then 404.
    retention: float = 3600.0
    # None accepts any key or none; a set answers 401 to a missing or other key.
    api_keys: frozenset[str] | None = None
    # Opening balance of every account (one per key), USD.
    credits: float = 1000.0
    unlimited_credits: bool = False
    prices: Mapping[str, Mapping[str, float]] = field(default_factory=_default_prices)
    # Rate limit per key: `rpm` calls per `rate_window`; None turns it off.
    rpm: int | None = None
    rate_window: float = 60.0
    rate_scope: RateScope = "submit"
    limiter: LimiterKind = "fixed"
    burst: int = 2  # token bucket capacity (limiter "bucket")
    retry_after_header: bool = False
    # How a 429 states its reset (a guess each): "exact" to the millisecond, rounded
    # up; "second" truncated to the whole second (up to 1 s early, as some servers
    # print it); "none" leaves the header out.
    reset_hint: ResetHint = "exact"
    # A QUEUED phase before a worker takes the job, drawn per job (nominal seconds),
    # which the job's `inference_time` does not cover; None: only the wait for a
    # free worker. `report_queue_time` False leaves `queue_time` out of answers, so
    # a client sees only the PROCESSING half.
    queue_delay: Latency | None = None
    report_queue_time: bool = True
    # Whether the result endpoint answers a job in progress with its state
    # (**guess**, the default) or with a 404 until the job is done, as a
    # server documenting the result only for finished jobs might.
    result_in_progress: bool = True
    # The listening socket's accept backlog on loopback (`runner emulator`,
    # serve_in_thread): a small one makes a burst of connects overflow it.
    backlog: int = 2048
    # Content blocks: a prompt matching any pattern ends FAILED with `block_message`.
    block_patterns: tuple[str, ...] = DEFAULT_BLOCK_PATTERNS
    block_message: str = DEFAULT_BLOCK_MESSAGE
    # (aspect_ratio, resolution) -> (width, height), over runner.params.pixel_size.
    sizes: Mapping[tuple[str, str], tuple[int, int]] = field(default_factory=_no_sizes)
    # 400 for params the model does not list (the real API's handling is unknown).
    strict_params: bool = True
    # Faults: seeded rates per endpoint kind, and their shapes.
    seed: int = 0
    faults: tuple[FaultRate, ...] = ()
    burst_429: int = 3
    slow_delay: float = 5.0
    trickle_chunks: int = 8
    trickle_delay: float = 0.5
    # Shapes of the hostile faults (runner.emulator.hostile); test-only knobs.
    hostile_bytes: int = 600 * 1024 * 1024
    hostile_depth: int = 100_000
    hostile_images: int = 3
    hostile_cost: float = -1000.0
    hostile_text: str = DEFAULT_HOSTILE_TEXT
    hostile_request_id: str = "../../x"
    # UTC seconds at clock zero; None takes the wall clock at first use.
    utc_offset: float | None = None
    # Base of the absolute URLs in answers; None uses the request's own base URL.
    public_base_url: str | None = None
    # Encoded images kept for repeated downloads (an LRU of this many entries).
    media_cache: int = 32

    def __post_init__(self) -> None:
        _check_numbers(self)
        _check_choices(self)
        _check_tables(self)

    def scaled(self, seconds: float) -> float:
        """Nominal seconds -> emulator clock seconds (times `time_scale`)."""
        return seconds * self.time_scale


# Lowest allowed value of each numeric knob; `_POSITIVE` ones must also be above zero.
_MINIMUMS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "workers": 1,
        "burst": 1,
        "burst_429": 1,
        "trickle_chunks": 1,
        "hostile_bytes": 0,
        "hostile_depth": 1,
        "hostile_images": 0,
        "media_cache": 0,
        "backlog": 1,
        "credits": 0,
        "retention": 0,
        "slow_delay": 0,
        "trickle_delay": 0,
        "time_scale": 0,
        "rate_window": 0,
    }
)
_POSITIVE: Final = frozenset({"time_scale", "rate_window"})


def _check_numbers(config: EmulatorConfig) -> None:
    for name, low in _MINIMUMS.items():
        value = getattr(config, name)
        if not math.isfinite(value) or value < low or (name in _POSITIVE and value == 0):
            bound = f"> {low}" if name in _POSITIVE else f">= {low}"
            raise ValueError(f"{name}: must be a finite number {bound} (got {value!r})")
    if config.rpm is not None and config.rpm < 1:
        raise ValueError("rpm: must be >= 1 (or None to turn the limit off)")


def _check_choices(config: EmulatorConfig) -> None:
    if not config.models:
        raise ValueError("models: serve at least one model slug")
    if config.rate_scope not in RATE_SCOPES:
        raise ValueError(f"rate_scope: use one of {', '.join(RATE_SCOPES)}")
    if config.limiter not in LIMITERS:
        raise ValueError(f"limiter: use one of {', '.join(LIMITERS)}")
    if config.reset_hint not in RESET_HINTS:
        raise ValueError(f"reset_hint: use one of {', '.join(RESET_HINTS)}")
    for pattern in config.block_patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"block_patterns: {pattern!r} is not a regex: {err}") from None


def _check_tables(config: EmulatorConfig) -> None:
    for mode in params.MODES:
        for resolution in params.RESOLUTIONS:
            if resolution not in config.prices.get(mode, {}):
                raise ValueError(f"prices: no price for mode {mode!r}, resolution {resolution!r}")
    for (ratio, resolution), (width, height) in config.sizes.items():
        if ratio not in params.ASPECT_RATIOS or resolution not in params.RESOLUTIONS:
            raise ValueError(f"sizes: unknown aspect ratio / resolution {ratio}@{resolution}")
        if width < 1 or height < 1:
            raise ValueError(f"sizes: {ratio}@{resolution} must be at least 1x1")


def parse_size(text: str) -> tuple[tuple[str, str], tuple[int, int]]:
    """Read ``RATIO@RES=WxH``, e.g. ``16:9@2k=2816x1536``, for `EmulatorConfig.sizes`."""
    head, _, dims = text.partition("=")
    ratio, _, resolution = head.partition("@")
    width, _, height = dims.lower().partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        raise ValueError(f"size {text!r}: use RATIO@RES=WxH, e.g. 16:9@2k=2816x1536") from None
    if ratio not in params.ASPECT_RATIOS or resolution not in params.RESOLUTIONS:
        raise ValueError(f"size {text!r}: use RATIO@RES=WxH, e.g. 16:9@2k=2816x1536")
    return (ratio, resolution), size


class ConfigFile(BaseModel):
    """A settings file for `runner emulator --config` (JSON or YAML); every key optional.

    Same names as EmulatorConfig; `latency` and `faults` use the command-line
    forms (``lognormal:10,0.25``, ``submit:500=0.05``) and `sizes` maps
    ``RATIO@RES`` to ``WxH``.
    """

    model_config = ConfigDict(extra="forbid")

    models: list[str] | None = None
    workers: int | None = None
    latency: str | None = None
    time_scale: float | None = None
    retention: float | None = None
    api_keys: list[str] | None = None
    credits: float | None = None
    unlimited_credits: bool | None = None
    prices: dict[str, dict[str, float]] | None = None
    rpm: int | None = None
    rate_window: float | None = None
    rate_scope: RateScope | None = None
    limiter: LimiterKind | None = None
    burst: int | None = None
    retry_after_header: bool | None = None
    reset_hint: ResetHint | None = None
    queue_delay: str | None = None
    report_queue_time: bool | None = None
    result_in_progress: bool | None = None
    backlog: int | None = None
    block_patterns: list[str] | None = None
    block_message: str | None = None
    sizes: dict[str, str] | None = None
    strict_params: bool | None = None
    seed: int | None = None
    faults: list[str] | None = None
    burst_429: int | None = None
    slow_delay: float | None = None
    trickle_chunks: int | None = None
    trickle_delay: float | None = None
    hostile_bytes: int | None = None
    hostile_depth: int | None = None
    hostile_images: int | None = None
    hostile_cost: float | None = None
    hostile_text: str | None = None
    hostile_request_id: str | None = None
    utc_offset: float | None = None
    public_base_url: str | None = None
    media_cache: int | None = None


def config_kwargs_from_file(source: str, data: object) -> dict[str, Any]:
    """EmulatorConfig keyword arguments from a parsed settings file; ValueError names `source`."""
    try:
        model = ConfigFile.model_validate(data if data is not None else {})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "<top level>"
        raise ValueError(f"{source}: {where}: {first['msg']}") from None
    kwargs: dict[str, Any] = {k: v for k, v in model.model_dump().items() if v is not None}
    try:
        if "models" in kwargs:
            kwargs["models"] = tuple(kwargs["models"])
        if "latency" in kwargs:
            kwargs["latency"] = Latency.parse(kwargs["latency"])
        if "queue_delay" in kwargs:
            kwargs["queue_delay"] = Latency.parse(kwargs["queue_delay"])
        if "api_keys" in kwargs:
            kwargs["api_keys"] = frozenset(kwargs["api_keys"])
        if "block_patterns" in kwargs:
            kwargs["block_patterns"] = tuple(kwargs["block_patterns"])
        if "sizes" in kwargs:
            kwargs["sizes"] = dict(parse_size(f"{k}={v}") for k, v in kwargs["sizes"].items())
        if "faults" in kwargs:
            kwargs["faults"] = tuple(FaultRate.parse(f) for f in kwargs["faults"])
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    return kwargs
