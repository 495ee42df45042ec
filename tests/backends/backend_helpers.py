"""Shared values of the backend tests: a recognisable fake key, real tiny images, requests."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from runner.emulator import EmulatorConfig, Latency
from runner.jobs import ImageInput, Request

# Recognisable so a test can assert it never leaks into a message.
FAKE_KEY = "sk-FAKEKEY-5eCr3t-0123456789abcdef"


def encode_image(fmt: str, size: tuple[int, int] = (4, 3)) -> bytes:
    """A real image in `fmt` ("PNG", "JPEG", "WEBP") of `size` pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buffer, format=fmt)
    return buffer.getvalue()


def make_request(
    *, prompt: str = "a red fox", n: int = 1, fmt: str = "png", image: ImageInput | None = None
) -> Request:
    return Request(
        prompt=prompt,
        mode="standard",
        aspect_ratio="1:1",
        resolution="1k",
        n=n,
        output_format=fmt,
        image=image,
    )


# A fixed UTC at clock zero, so rate-limit reset stamps are reproducible.
UTC_AT_ZERO = 1_800_000_000.0


def small_config(**over: Any) -> EmulatorConfig:
    """Fast, small images: 64x64 for 1:1 at 1k, a fixed 10 s latency, one key."""
    settings: dict[str, Any] = {
        "latency": Latency("fixed", 10.0, 0.0),
        "sizes": {("1:1", "1k"): (64, 64)},
        "api_keys": frozenset({FAKE_KEY}),
        "utc_offset": UTC_AT_ZERO,
    }
    settings.update(over)
    return EmulatorConfig(**settings)
