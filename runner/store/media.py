"""Checking downloaded image bytes before they are stored: format, size, completeness.

Cheap checks only; nothing is decoded:

- the format comes from the magic bytes (PNG, JPEG, WEBP), not from a
  content-type or a file name;
- the pixel size comes from the header (Pillow's lazy `Image.open`), and a
  size above the pixel cap is refused before any decode (a decompression
  bomb: a few hundred bytes that declare 100000 x 100000 pixels);
- completeness: for PNG every chunk's CRC and a final IEND (zlib.crc32 runs
  at memory speed), for JPEG the EOI marker at the end, for WEBP the RIFF
  length. These catch a truncated or corrupted download; a re-download may
  fix it, so those errors are retryable.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import Final, Literal

from PIL import Image, UnidentifiedImageError

from runner.errors import DownloadError

ImageFormat = Literal["png", "jpeg", "webp"]

DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
"""Download cap in bytes: a 2k PNG is a few MB."""

DEFAULT_MAX_PIXELS: Final = 8192 * 8192
"""Pixel cap (width x height): far above any size the API makes (2k is ~4.3 Mpx)."""

_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
_PIL_FORMATS: Final[dict[ImageFormat, str]] = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What a checked image is: format, pixel size, byte size and sha256 (hex)."""

    format: ImageFormat
    width: int
    height: int
    bytes: int
    sha256: str


def sniff_format(data: bytes) -> ImageFormat | None:
    """The format the magic bytes announce, or None when they are none of ours."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _png_problem(data: bytes) -> str | None:
    pos = len(_PNG_MAGIC)
    end = len(data)
    while pos + 12 <= end:
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        stop = pos + 8 + length
        if stop + 4 > end:
            return f"PNG chunk {kind!r} runs past the end of the data (truncated)"
        (crc,) = struct.unpack_from(">I", data, stop)
        if zlib.crc32(data[pos + 4 : stop]) != crc:
            return f"PNG chunk {kind!r} at byte {pos} has a bad CRC (corrupted)"
        pos = stop + 4
        if kind == b"IEND":
            return None
    return "PNG has no IEND chunk (truncated)"


def _jpeg_problem(data: bytes) -> str | None:
    # Some encoders pad after EOI; zero padding is harmless.
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return "JPEG does not end with the EOI marker (truncated)"
    return None


def _webp_problem(data: bytes) -> str | None:
    (riff_size,) = struct.unpack_from("<I", data, 4)
    # The RIFF size counts from byte 8; chunks are padded to an even length.
    expected = 8 + riff_size + (riff_size & 1)
    if len(data) < expected:
        return f"WEBP is {len(data)} bytes but its RIFF header says {expected} (truncated)"
    if len(data) > expected:
        return f"WEBP has {len(data) - expected} bytes after its RIFF end (corrupted)"
    return None


def _header_size(data: bytes, fmt: ImageFormat, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header with Pillow, refusing more than `max_pixels`."""
    try:
        with warnings.catch_warnings():
            # Our own cap is applied below, before anything is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]]) as im:
                width, height = im.size
    except Image.DecompressionBombError as err:
        raise DownloadError(
            f"the {fmt} image declares a pixel size far above the cap of {max_pixels} pixels "
            f"(a decompression bomb?); refused without decoding ({err})"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as err:
        raise DownloadError(
            f"the {fmt} header cannot be read ({err}); the data is corrupt", retryable=True
        ) from None
    if width <= 0 or height <= 0 or width * height > max_pixels:
        raise DownloadError(
            f"the {fmt} image declares {width}x{height} pixels, above the cap of "
            f"{max_pixels} (a decompression bomb?); refused without decoding"
        )
    return width, height


def inspect_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Format, pixel size, byte size and sha256 of image bytes, checking they are whole.

    Raises DownloadError: retryable for truncated or corrupt data (unknown
    magic bytes included: an error page or a cut-off body), not retryable for
    a size above `max_pixels`.
    """
    fmt = sniff_format(data)
    if fmt is None:
        head = data[:8].hex(" ") if data else "nothing"
        raise DownloadError(
            f"the data is not a PNG, JPEG or WEBP image (it starts with {head})",
            retryable=True,
        )
    # The size first: a bomb is refused as a bomb, whatever else is wrong with it.
    width, height = _header_size(data, fmt, max_pixels)
    problem = {"png": _png_problem, "jpeg": _jpeg_problem, "webp": _webp_problem}[fmt](data)
    if problem is not None:
        raise DownloadError(problem, retryable=True)
    return ImageInfo(
        format=fmt,
        width=width,
        height=height,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def check_image(
    data: bytes,
    *,
    expected_format: str,
    expected_size: tuple[int, int] | None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageInfo:
    """Check a downloaded image against what was asked; return what it is.

    `expected_format` is the API's output_format (jpeg, png, webp);
    `expected_size` is (width, height) in pixels, or None when it cannot be
    known (aspect_ratio ``auto``, edits). `max_bytes` caps the byte size and
    `max_pixels` the declared width x height, both checked before decoding.

    Raises DownloadError with ``retryable=True`` for truncated or corrupt data
    (a re-download may fix it) and ``retryable=False`` for an image that is
    whole but not what was asked (wrong format or size, too large).
    """
    if len(data) > max_bytes:
        raise DownloadError(f"the image is {len(data)} bytes, above the cap of {max_bytes} bytes")
    info = inspect_image(data, max_pixels=max_pixels)
    if info.format != expected_format:
        raise DownloadError(f"asked for {expected_format} but the image is {info.format}")
    if expected_size is not None and (info.width, info.height) != expected_size:
        want_w, want_h = expected_size
        raise DownloadError(
            f"asked for {want_w}x{want_h} pixels but the image is {info.width}x{info.height}"
        )
    return info
