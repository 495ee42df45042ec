"""The request parameters of Segmind's `grok-imagine-image`, as data.

One place for what the API accepts (see ../shared/api/segmind-wire.md): the
manifest validates against it, the emulator enforces it, the store checks
downloaded sizes against it and the credit guard prices from it. Values
marked *guess* there are kept here as overridable tables, not as code.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

DEFAULT_MODEL: Final = "grok-imagine-image"

MODES: Final = ("standard", "quality")
RESOLUTIONS: Final = ("1k", "2k")
OUTPUT_FORMATS: Final = ("jpeg", "png", "webp")
# The first ten are the vendor's list; the last four are xAI's (a guess for Segmind).
ASPECT_RATIOS: Final = (
    "1:1",
    "3:4",
    "4:3",
    "9:16",
    "16:9",
    "2:3",
    "3:2",
    "9:19.5",
    "19.5:9",
    "9:20",
    "20:9",
    "1:2",
    "2:1",
    "auto",
)
N_MIN: Final = 1
N_MAX: Final = 4

# The API's own defaults when a param is omitted (vendor page).
API_DEFAULTS: Final[Mapping[str, str | int]] = MappingProxyType(
    {
        "mode": "standard",
        "aspect_ratio": "16:9",
        "resolution": "2k",
        "n": 1,
        "output_format": "png",
    }
)

# Names of the params a manifest may set or sweep (besides `prompt` and `image`).
PARAM_NAMES: Final = ("mode", "aspect_ratio", "resolution", "n", "output_format")

ALLOWED: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "mode": MODES,
        "resolution": RESOLUTIONS,
        "output_format": OUTPUT_FORMATS,
        "aspect_ratio": ASPECT_RATIOS,
    }
)

# Landscape width x height per ratio. 1k from third-party sources, 2k is 1k
# doubled (a guess). Portrait ratios swap them; see `pixel_size`.
_LANDSCAPE_1K: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {
        "1:1": (1024, 1024),
        "4:3": (1280, 896),
        "3:2": (1296, 864),
        "16:9": (1408, 768),
        "2:1": (1408, 704),
        "20:9": (1280, 576),
        "19.5:9": (1248, 576),
    }
)
_PORTRAIT: Final[Mapping[str, str]] = MappingProxyType(
    {"3:4": "4:3", "2:3": "3:2", "9:16": "16:9", "1:2": "2:1", "9:20": "20:9", "9:19.5": "19.5:9"}
)
_SCALE: Final[Mapping[str, int]] = MappingProxyType({"1k": 1, "2k": 2})


def pixel_size(aspect_ratio: str, resolution: str) -> tuple[int, int] | None:
    """(width, height) in pixels for a ratio and resolution; None for `auto`.

    Raises KeyError for a ratio or resolution outside the allowed sets.
    """
    if aspect_ratio == "auto":
        return None
    scale = _SCALE[resolution]
    if aspect_ratio in _PORTRAIT:
        w, h = _LANDSCAPE_1K[_PORTRAIT[aspect_ratio]]
        return h * scale, w * scale
    w, h = _LANDSCAPE_1K[aspect_ratio]
    return w * scale, h * scale


# USD per image, keyed by mode then resolution. xAI's list price for the
# underlying model ($0.02 standard, ~$0.05 quality); Segmind's is unpublished,
# so manifests may override it (`prices:`).
DEFAULT_PRICES: Final[Mapping[str, Mapping[str, float]]] = MappingProxyType(
    {
        "standard": MappingProxyType({"1k": 0.02, "2k": 0.02}),
        "quality": MappingProxyType({"1k": 0.05, "2k": 0.05}),
    }
)


def price(
    mode: str,
    resolution: str,
    n: int,
    table: Mapping[str, Mapping[str, float]] = DEFAULT_PRICES,
) -> float:
    """Estimated USD for one request of `n` images; `n` images are billed separately."""
    return table[mode][resolution] * n
