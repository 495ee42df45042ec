"""Reading a body (an API answer, a media download) through a size cap, decompressing
as it streams.

An answer is read chunk by chunk from httpx's raw stream (never
``response.content``, which would hold a body of any size) and decoded here
rather than by httpx: httpx inflates each network chunk whole, so one 64 KiB
chunk of a gzip bomb would become ~64 MiB before anyone could count it.
Here every ``decompress`` call is given the room left under the cap
(``max_length``), so no more than `AnswerLimits.json_bytes` (or
`image_bytes`) + one chunk is ever held, whatever the compression ratio.

Only ``gzip``, ``deflate`` and ``identity`` are decoded, the encodings the
client asks for (``Accept-Encoding`` in runner.backends.wire); any other is
`UnreadableBody`, as is a body over the cap or one that does not inflate.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Final, Protocol

import httpx

MIB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class AnswerLimits:
    """Bytes (decompressed) an API answer may have.

    `json_bytes` bounds every answer but one: a v1 sync answer whose content
    type is an image, which is the image itself and gets `image_bytes` (the
    default media download cap).
    """

    json_bytes: int = 8 * MIB
    image_bytes: int = 64 * MIB


class UnreadableBody(ValueError):
    """A body not read to its end: over the cap (`too_large`), or in an encoding that
    does not decode."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        self.too_large = too_large
        super().__init__(message)


class _Decoder(Protocol):
    def feed(self, data: bytes, room: int) -> bytes: ...

    def more(self, room: int) -> bytes: ...


class _Identity:
    def feed(self, data: bytes, room: int) -> bytes:
        return data

    def more(self, room: int) -> bytes:
        return b""


class _Inflate:
    """zlib with a bound on each call's output; `more` drains what the bound held back."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        # 47 = 32 + 15: gzip or zlib header, detected. deflate is zlib-wrapped
        # by the RFC but sent raw by some servers, so it falls back to raw.
        self._zlib = zlib.decompressobj(47 if encoding == "gzip" else 15)
        self._raw_fallback = encoding == "deflate"

    def feed(self, data: bytes, room: int) -> bytes:
        try:
            return self._zlib.decompress(data, room)
        except zlib.error:
            if not self._raw_fallback:
                raise
            self._raw_fallback = False
            self._zlib = zlib.decompressobj(-15)
            return self._zlib.decompress(data, room)

    def more(self, room: int) -> bytes:
        tail = self._zlib.unconsumed_tail
        return self._zlib.decompress(tail, room) if tail else b""


def _decoder(encoding: str) -> _Decoder:
    if encoding in ("", "identity"):
        return _Identity()
    if encoding in ("gzip", "x-gzip"):
        return _Inflate("gzip")
    if encoding == "deflate":
        return _Inflate("deflate")
    raise UnreadableBody(f"the answer's content encoding {encoding[:40]!r} is not supported")


async def read_body(response: httpx.Response, cap: int) -> bytes:
    """The decoded body of `response`, at most `cap` bytes; raises UnreadableBody past it.

    A Content-Length above the cap is refused before any byte is read.
    """
    declared = (response.headers.get("content-length") or "").strip()
    if declared.isdigit() and int(declared) > cap:
        raise UnreadableBody(
            f"the answer announces {int(declared)} bytes, over the {cap} byte cap", too_large=True
        )
    encodings = [
        part.strip().lower()
        for part in (response.headers.get("content-encoding") or "").split(",")
        if part.strip()
    ]
    if len(encodings) > 1:
        raise UnreadableBody("the answer is encoded more than once")
    decoder = _decoder(encodings[0] if encodings else "")
    chunks: list[bytes] = []
    total = 0
    raw_total = 0
    try:
        async for raw in response.aiter_raw():
            raw_total += len(raw)
            if raw_total > cap:
                raise UnreadableBody(
                    f"the answer is longer than the {cap} byte cap", too_large=True
                )
            data = decoder.feed(raw, cap - total + 1)
            while data:
                total += len(data)
                if total > cap:
                    raise UnreadableBody(
                        f"the answer inflates past the {cap} byte cap (content encoding)"
                        if encodings
                        else f"the answer is longer than the {cap} byte cap",
                        too_large=True,
                    )
                chunks.append(data)
                data = decoder.more(cap - total + 1)
    except zlib.error as exc:
        raise UnreadableBody(
            f"the answer's {encodings[0]} encoding does not decode ({exc})"
        ) from None
    return b"".join(chunks)
