"""Hostile answers, for tests only: what a broken or malicious API could send instead.

Each fault of `HOSTILE_FAULTS` replaces (or alters) a 200 answer after the
call was handled, so a submit has been accepted and billed, as it would be
by a server that misbehaves only in its answer. Their shapes come from the
``hostile_*`` knobs of EmulatorConfig:

- ``deep_json``: ``[[[...]]]`` nested `hostile_depth` levels;
- ``huge_body``: a JSON document of `hostile_bytes` bytes, streamed, whose
  output is one endless ``data:`` URI (serve it on loopback: in-process,
  httpx's ASGI transport buffers a whole body);
- ``gzip_bomb``: a gzip body that inflates to `hostile_bytes` (about 1/1000
  of that on the wire; its trailer is not valid, as nothing reads that far);
- ``extra_images`` / ``missing_images`` (result, sync): `hostile_images`
  output URLs, or one fewer than the job asked for;
- ``negative_cost`` (result, sync): `hostile_cost` as the reported cost;
- ``control_chars``: an error whose text is `hostile_text` (terminal escape
  sequences, BEL): FAILED on a status or result, 400 elsewhere;
- ``hostile_id`` (submit): the request id `hostile_request_id`, with
  status_url / response_url built from it unquoted;
- ``trickle``: the answer one byte every `trickle_delay` seconds.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Final

from starlette.responses import Response, StreamingResponse

from runner.emulator.config import EmulatorConfig, EndpointKind, FaultKind
from runner.emulator.images import CONTENT_TYPES, EXTENSIONS
from runner.emulator.responses import Trickle, error

_CHUNK: Final = 1024 * 1024


def _json(doc: object, status: int = 200) -> Response:
    # allow_nan: a hostile cost may be NaN or Infinity, which JSONResponse refuses.
    body = json.dumps(doc, allow_nan=True, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json")


def _doc(response: Response) -> dict[str, object] | None:
    try:
        doc = json.loads(bytes(response.body))
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


async def _huge(size: int) -> AsyncIterator[bytes]:
    # A data: URI as the output: the answer is at once a huge body and a huge inline image.
    head = b'{"status":"COMPLETED","output":"data:image/png;base64,'
    yield head
    filler = b"A" * _CHUNK
    left = max(0, size - len(head) - 2)
    while left > 0:
        piece = filler if left >= _CHUNK else filler[:left]
        left -= len(piece)
        yield piece
    yield b'"}'


def _gzip_bomb(size: int) -> bytes:
    """A gzip stream of ~`size` spaces, built from one compressed block repeated.

    After a full flush the compressor starts afresh, so the same 1 MiB of
    input compresses to the same bytes every time: the bomb costs about
    1 KiB per MiB to build instead of a pass over all of it.
    """
    block = b" " * _CHUNK
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    repeated = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    return first + repeated * max(0, math.ceil(size / _CHUNK) - 1)


def _media_urls(base: str, request_id: str, ext: str, count: int) -> list[str]:
    return [f"{base}/media/{request_id}/{index}.{ext}" for index in range(count)]


def _images(doc: dict[str, object], urls: list[str]) -> dict[str, object]:
    return {
        **doc,
        "output": urls if len(urls) != 1 else urls[0],
        "images": [{"url": u} for u in urls],
    }


def _sync_json(response: Response, base: str, count: int) -> Response | None:
    """A v1 image answer turned into a JSON result body naming `count` media URLs."""
    headers: Mapping[str, str] = response.headers
    request_id = headers.get("x-request-id")
    kind = headers.get("content-type", "")
    ext = next((EXTENSIONS[f] for f, t in CONTENT_TYPES.items() if kind.startswith(t)), None)
    if request_id is None or ext is None:
        return None
    urls = _media_urls(base, request_id, ext, count)
    return _json(_images({"status": "COMPLETED", "request_id": request_id}, urls))


def hostile_answer(
    fault: FaultKind,
    kind: EndpointKind,
    response: Response,
    config: EmulatorConfig,
    *,
    base: str,
    n: int | None,
) -> Response:
    """The hostile stand-in for a 200 `response` of an endpoint of `kind`.

    `base` is the base of absolute URLs; `n` the images the job asked for
    (None when the call names no job). An alteration that does not fit the
    answer (extra images on a result not yet COMPLETED) returns it unchanged.
    """
    if fault == "deep_json":
        depth = config.hostile_depth
        return Response(b"[" * depth + b"]" * depth, media_type="application/json")
    if fault == "huge_body":
        return StreamingResponse(_huge(config.hostile_bytes), media_type="application/json")
    if fault == "gzip_bomb":
        return Response(
            _gzip_bomb(config.hostile_bytes),
            media_type="application/json",
            headers={"content-encoding": "gzip"},
        )
    if fault == "trickle":
        body = bytes(response.body)
        return Trickle(response, max(1, len(body)), config.scaled(config.trickle_delay))
    if fault == "control_chars":
        if kind in ("status", "result"):
            return _json({"status": "FAILED", "error": config.hostile_text}, status=422)
        return error(400, config.hostile_text)
    if fault == "hostile_id":
        rid = config.hostile_request_id
        return _json(
            {
                "request_id": rid,
                "status": "QUEUED",
                "status_url": f"{base}/v2/requests/{rid}/status",
                "response_url": f"{base}/v2/requests/{rid}",
            }
        )
    return _altered(fault, kind, response, config, base=base, n=n)


def _altered(
    fault: FaultKind,
    kind: EndpointKind,
    response: Response,
    config: EmulatorConfig,
    *,
    base: str,
    n: int | None,
) -> Response:
    """The result faults: the same answer with other images or another cost."""
    count = config.hostile_images if fault == "extra_images" else max(0, (n or 1) - 1)
    if kind == "sync":
        if fault == "negative_cost":
            altered = Response(bytes(response.body), media_type=response.media_type)
            altered.raw_headers = [
                (k, v) for k, v in response.raw_headers if k.lower() != b"x-cost"
            ] + [(b"x-cost", repr(config.hostile_cost).encode())]
            return altered
        return _sync_json(response, base, count) or response
    doc = _doc(response)
    if doc is None or doc.get("status") != "COMPLETED":
        return response
    if fault == "negative_cost":
        metrics = doc.get("metrics")
        reported = {**(metrics if isinstance(metrics, dict) else {}), "cost": config.hostile_cost}
        return _json({**doc, "metrics": reported})
    images = doc.get("images")
    first = images[0] if isinstance(images, list) and images else None
    url = first.get("url") if isinstance(first, dict) else None
    if not isinstance(url, str):
        return response
    # .../media/<id>/0.png -> the same folder, indices 0..count-1.
    folder, _, name = url.rpartition("/")
    ext = name.partition(".")[2]
    return _json(_images(doc, [f"{folder}/{index}.{ext}" for index in range(count)]))


HOSTILE_FAULTS: Final = frozenset(
    {
        "deep_json",
        "huge_body",
        "gzip_bomb",
        "extra_images",
        "missing_images",
        "negative_cost",
        "control_chars",
        "hostile_id",
        "trickle",
    }
)
