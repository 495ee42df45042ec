"""Output images as they appear in answers: URLs, data URIs, base64. Pure.

Segmind's result shape for image models is only partly documented (see
../shared/api/segmind-wire.md): ``output`` may be a URL, a list of URLs, a
data URI or plain base64, and ``images: [{url, content_type, ...}]`` is also
seen. `media_from_body` accepts all of them and returns `Media` values:
a URL to download, or bytes that came inline. `select_media` keeps at most
the images a job asked for and counts the rest, undecoded.

Inline payloads longer than `MAX_INLINE_CHARS` are refused before they are
decoded (the answer that carries them is capped too, but the cap is checked
where the decoding happens).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Final, Literal
from urllib.parse import unquote_to_bytes, urljoin

from runner.backends.base import Media
from runner.errors import DownloadError
from runner.redact import printable

_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_INLINE_FIELDS: Final = ("url", "b64_json", "base64", "data")
# Characters of one inline (data URI or base64) image: 8 MiB of text, about
# 6 MiB of image, the most an API answer may hold at all (runner.backends.bounded).
MAX_INLINE_CHARS: Final = 8 * 1024 * 1024


class UnreadableOutput(ValueError):
    """An output item that is neither a URL nor an image; the wire layer reports it."""


def sniff_image(data: bytes) -> str | None:
    """The image content type that `data` starts with (PNG, JPEG, WEBP, GIF), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    return None


def media_kind(media: Media) -> Literal["url", "inline"]:
    """``"url"`` for media to download, ``"inline"`` for bytes that came in the answer."""
    if media.data is not None or (media.url or "")[:5].lower() == "data:":
        return "inline"
    return "url"


def split_data_uri(text: str) -> tuple[bytes | None, str | None]:
    """(payload, declared content type) of a ``data:`` URI; (None, None) if it is not one."""
    if text[:5].lower() != "data:" or "," not in text:
        return None, None
    head, payload = text[5:].split(",", 1)
    params = [part.strip() for part in head.split(";")]
    content_type = params[0].lower() or None
    if any(part.lower() == "base64" for part in params[1:]):
        return b64decode(payload), content_type
    return unquote_to_bytes(payload), content_type


def b64decode(text: str) -> bytes | None:
    """Strict base64 (standard or URL-safe alphabet, padding optional); None if it is not."""
    compact = "".join(text.split())
    if not compact:
        return None
    compact += "=" * (-len(compact) % 4)
    try:
        raw = compact.encode("ascii")
        if "-" in compact or "_" in compact:
            return base64.b64decode(raw, altchars=b"-_", validate=True)
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def decode_inline(media: Media) -> bytes:
    """The bytes of inline media: bytes already decoded, or a data: URI / base64 text.

    Raises DownloadError for media that is a URL to download, is longer than
    MAX_INLINE_CHARS or does not decode.
    """
    if media.data is not None:
        return media.data
    text = (media.url or "").strip()
    if len(text) > MAX_INLINE_CHARS:
        raise DownloadError(
            f"inline image of {len(text)} characters is over the {MAX_INLINE_CHARS} cap"
        )
    data, _ = split_data_uri(text)
    if data is None and text[:5].lower() != "data:" and "://" not in text[:10]:
        data = b64decode(text)
    if data is None:
        shown = text[:40] + ("…" if len(text) > 40 else "")
        raise DownloadError(
            f"inline image {printable(shown)!r} does not decode (not a data URI or base64)"
        )
    return data


def media_of_text(text: str, base_url: str, content_type: str | None = None) -> Media:
    """One output string as Media; `base_url` resolves a root-relative path.

    Raises UnreadableOutput for text that is none of URL, data URI, base64 image.
    """
    stripped = text.strip()
    head = stripped[:8].lower()
    if len(stripped) > MAX_INLINE_CHARS and not head.startswith(("http://", "https://")):
        raise UnreadableOutput(f"an inline image of {len(stripped)} characters (over the cap)")
    if head.startswith(("http://", "https://")):
        return Media(url=stripped, content_type=content_type)
    if head.startswith("data:"):
        data, declared = split_data_uri(stripped)
        if data is None:
            raise UnreadableOutput("a data: URI that does not decode")
        return Media(data=data, content_type=declared or content_type or sniff_image(data))
    data = b64decode(stripped)
    kind = sniff_image(data) if data is not None else None
    if data is not None and kind is not None:
        return Media(data=data, content_type=content_type or kind)
    # Base64 of a JPEG starts with "/9j/", so a path is tried only after base64.
    if stripped.startswith("/") and not stripped.startswith("//"):
        return Media(url=urljoin(base_url, stripped), content_type=content_type)
    shown = stripped[:40] + ("…" if len(stripped) > 40 else "")
    raise UnreadableOutput(f"{shown!r} is neither an http(s) URL, a data URI nor base64 image")


def _media_of_item(item: object, base_url: str) -> Media | None:
    if isinstance(item, str):
        return media_of_text(item, base_url) if item.strip() else None
    if isinstance(item, Mapping):
        declared = item.get("content_type") or item.get("mime_type")
        content_type = declared if isinstance(declared, str) and declared else None
        for name in _INLINE_FIELDS:
            value = item.get(name)
            if isinstance(value, str) and value.strip():
                return media_of_text(value, base_url, content_type)
    return None


def _unique(items: list[object], base_url: str, limit: int | None) -> tuple[list[Media], int]:
    """The first `limit` distinct media of `items` (all when None), and how many
    further non-empty items there were (counted, not decoded)."""
    seen: set[tuple[str | None, bytes | None]] = set()
    unique: list[Media] = []
    for position, item in enumerate(items):
        if limit is not None and len(unique) >= limit:
            rest = items[position:]
            return unique, sum(1 for extra in rest if _non_empty(extra))
        media = _media_of_item(item, base_url)
        if media is None:
            continue
        identity = (media.url, media.data)
        if identity not in seen:
            seen.add(identity)
            unique.append(media)
    return unique, 0


def _non_empty(item: object) -> bool:
    if isinstance(item, str):
        return bool(item.strip())
    return isinstance(item, Mapping) and any(
        isinstance(item.get(name), str) and str(item.get(name)).strip() for name in _INLINE_FIELDS
    )


def select_media(
    doc: Mapping[str, object], base_url: str, limit: int | None = None
) -> tuple[tuple[Media, ...], int]:
    """(The output images of a result body, how many more it named past `limit`).

    Reads ``images[]`` when it yields any image, else ``output``: a URL
    string, a list of URLs, a data URI, plain base64 image bytes, or
    ``images: [{url, content_type, ...}]``. Duplicates are dropped, order
    kept; items past the `limit`-th image are counted, not decoded. `base_url`
    is the URL of the answer, for root-relative media paths. Raises
    UnreadableOutput for an item that is none of these.
    """
    images = doc.get("images")
    if isinstance(images, list) and images:
        found, dropped = _unique(images, base_url, limit)
        if found:
            return tuple(found), dropped
    output = doc.get("output")
    if output is None:
        return (), 0
    found, dropped = _unique(output if isinstance(output, list) else [output], base_url, limit)
    return tuple(found), dropped


def media_from_body(doc: Mapping[str, object], base_url: str) -> tuple[Media, ...]:
    """Every output image of a result body (`select_media` without a limit)."""
    return select_media(doc, base_url)[0]
