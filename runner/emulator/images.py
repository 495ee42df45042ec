"""Real images of the right size and format, deterministic for (prompt, params, index).

A generated image is drawn in palette mode ("P"): a background and a few
shapes whose colours and places come from a hash of the prompt, the params
and the image index, with the prompt text written over them. Palette mode
keeps a 2k PNG encode near 10 ms instead of ~90 ms for RGB (figures in
docs/emulator.md). An edit (an input image) keeps the input's size and is
derived from it: posterized, tinted and written on, in RGB.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import textwrap
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from random import Random
from typing import Final

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from runner import params

CONTENT_TYPES: Final[Mapping[str, str]] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
}
EXTENSIONS: Final[Mapping[str, str]] = {"png": "png", "jpeg": "jpg", "webp": "webp"}
_MAX_LINES: Final = 6


class ImageInputError(ValueError):
    """The `image` param is neither an http(s) URL nor a decodable base64 / data-URI image."""


@dataclass(frozen=True, slots=True)
class EditSource:
    """The input image of an edit: its bytes (base64 / data URI) or its URL text."""

    data: bytes | None = None
    url: str | None = None
    size: tuple[int, int] | None = None  # (width, height) of `data`, read at submit


def parse_image_param(value: str) -> EditSource:
    """Read the `image` param: an http(s) URL, a data URI or bare base64 of an image.

    The emulator has no network, so a URL is kept as text and stands for an
    image derived from it. Raises ImageInputError when the value is unusable.
    """
    text = value.strip()
    if text.startswith(("http://", "https://")):
        return EditSource(url=text)
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or ";base64" not in header:
            raise ImageInputError("a data URI must be base64, e.g. data:image/png;base64,...")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError("not an http(s) URL, a data URI or valid base64") from None
    try:
        with Image.open(io.BytesIO(data)) as probe:
            size = probe.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise ImageInputError("the base64 data is not an image Pillow can read") from None
    return EditSource(data=data, size=size)


def output_size(
    aspect_ratio: str,
    resolution: str,
    overrides: Mapping[tuple[str, str], tuple[int, int]],
) -> tuple[int, int]:
    """(width, height) in pixels of a generated image; `auto` is taken as 1:1."""
    ratio = "1:1" if aspect_ratio == "auto" else aspect_ratio
    override = overrides.get((ratio, resolution))
    if override is not None:
        return override
    size = params.pixel_size(ratio, resolution)
    assert size is not None  # only "auto" has no size, and it was replaced above
    return size


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, ImportError):  # Pillow without FreeType: fixed small bitmap font
        return ImageFont.load_default()


def _wrap(text: str, width_px: int, font_px: int) -> str:
    chars = max(8, int(width_px / (font_px * 0.55)))
    lines = textwrap.wrap(" ".join(text.split()), width=chars) or [""]
    if len(lines) > _MAX_LINES:
        lines = [*lines[: _MAX_LINES - 1], lines[_MAX_LINES - 1][: chars - 1] + "…"]
    return "\n".join(lines)


def _caption(
    draw: ImageDraw.ImageDraw,
    size: tuple[int, int],
    text: str,
    ink: int | tuple[int, ...],
    shade: int | tuple[int, ...],
    *,
    bottom: bool = False,
) -> None:
    width, height = size
    font_px = max(10, min(width, height) // 18)
    body = _wrap(text, int(width * 0.9), font_px)
    font = _font(font_px)
    left, top = width // 20, height // 20
    box = draw.multiline_textbbox((left, top), body, font=font, spacing=font_px // 4)
    if bottom:
        # An edit's caption goes low, clear of any caption in its input.
        top += height - height // 10 - int(box[3])
        box = draw.multiline_textbbox((left, top), body, font=font, spacing=font_px // 4)
    pad = font_px // 3
    draw.rectangle((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), fill=shade)
    draw.multiline_text((left, top), body, font=font, fill=ink, spacing=font_px // 4)


def render(
    prompt: str, *, mode: str, aspect_ratio: str, resolution: str, index: int, size: tuple[int, int]
) -> Image.Image:
    """A generated image of `size`: the same arguments always give the same pixels."""
    digest = _digest(prompt, mode, aspect_ratio, resolution, index)
    rng = Random(digest)
    width, height = size
    image = Image.new("P", size, 0)
    palette = [rng.randrange(256) for _ in range(16 * 3)]
    # Entries 14 and 15 are the caption's ink and shade, readable on anything.
    palette[14 * 3 : 16 * 3] = [255, 255, 255, 16, 16, 16]
    image.putpalette(palette)
    draw = ImageDraw.Draw(image)
    bands = 2 + digest[0] % 4
    for band in range(bands):
        top = height * band // bands
        draw.rectangle((0, top, width, height * (band + 1) // bands), fill=1 + band)
    for _ in range(4 + digest[1] % 5):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1 = x0 + rng.randrange(width // 8, width // 2)
        y1 = y0 + rng.randrange(height // 8, height // 2)
        colour = 5 + rng.randrange(9)
        shape = rng.randrange(3)
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
    _caption(draw, size, f"{prompt}  [#{index + 1}]", ink=14, shade=15)
    return image


def render_edit(
    source: EditSource,
    prompt: str,
    *,
    mode: str,
    aspect_ratio: str,
    resolution: str,
    index: int,
    sizes: Mapping[tuple[str, str], tuple[int, int]],
) -> Image.Image:
    """An edit of `source`: the input's size, posterized, tinted from the prompt, captioned.

    A URL input (not fetched) is replaced by an image generated from the URL
    text at the aspect ratio's size.
    """
    if source.data is not None:
        with Image.open(io.BytesIO(source.data)) as opened:
            base = opened.convert("RGB")
    else:
        size = output_size(aspect_ratio, resolution, sizes)
        base = render(
            source.url or "",
            mode=mode,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            index=0,
            size=size,
        ).convert("RGB")
    digest = _digest("edit", prompt, mode, index)
    tint = Image.new("RGB", base.size, (digest[0], digest[1], digest[2]))
    edited = Image.blend(ImageOps.posterize(base, 3), tint, 0.35)
    _caption(
        ImageDraw.Draw(edited),
        edited.size,
        f"edit: {prompt}  [#{index + 1}]",
        ink=(255, 255, 255),
        shade=(16, 16, 16),
        bottom=True,
    )
    return edited


def encode(image: Image.Image, output_format: str) -> bytes:
    """The image encoded as png, jpeg or webp, with settings chosen for speed."""
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, "PNG", compress_level=1)
        return buffer.getvalue()
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if output_format == "jpeg":
        rgb.save(buffer, "JPEG", quality=85)
    else:
        # method 0 is libwebp's fastest; higher methods cost several times more.
        rgb.save(buffer, "WEBP", quality=80, method=0)
    return buffer.getvalue()


class MediaCache:
    """A small thread-safe LRU of encoded images, so a retried download does not re-encode."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> bytes | None:
        """The cached bytes for (request_id, index), or None."""
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: tuple[str, int], data: bytes) -> None:
        """Remember `data`, evicting the least recently used entry beyond capacity."""
        if self._capacity == 0:
            return
        with self._lock:
            self._items[key] = data
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
