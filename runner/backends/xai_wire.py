"""xAI's image API, sans-IO: build the generation request, read its answer.

``POST {base}/v1/images/generations`` with ``Authorization: Bearer <key>``
is synchronous: the answer carries the images (base64 or temporary URLs) and
the exact charge in ``usage.cost_in_usd_ticks`` (1 USD = 10^10 ticks). See
docs/xai-wire.md for every fact and its source. Requests come out as
`runner.backends.wire.WireRequest` values (so the one httpx layer sends both
providers' calls); answers go in as ``(status, headers, body)`` and come out
as a `SyncResult` or one of `runner.errors`. Nothing here opens a socket.

Our params map onto xAI's as `XAI_PARAMS` says: `mode` picks the model
(`QUALITY_MODELS`), `output_format` is not sent (xAI answers JPEG; the
backend converts locally), the rest go as they are.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal, cast

from runner import __version__
from runner.backends.answers import (
    NotJson,
    clean_text,
    decode_body,
    error_text,
    message,
    server_text,
)
from runner.backends.base import DeliveredMetrics, Media, SyncResult, is_request_id
from runner.backends.hints import header, reset_hint, trusted_cost
from runner.backends.media import sniff_image, split_data_uri
from runner.backends.wire import WireRequest
from runner.errors import (
    ApiError,
    AuthError,
    BadRequest,
    InsufficientCredits,
    JobFailed,
    ProtocolError,
    RateLimited,
    ServerError,
    UsageError,
)
from runner.jobs import ImageInput, Request
from runner.money import MICROS_PER_USD, Micros, to_usd

__all__ = [
    "AUTH_HEADER",
    "EDITS_PATH",
    "GENERATIONS_PATH",
    "QUALITY_MODELS",
    "TICKS_PER_MICRO",
    "TICKS_PER_USD",
    "XaiMedia",
    "api_error",
    "generation_request",
    "micros_of_ticks",
    "parse_generation",
    "wire_model",
]

GENERATIONS_PATH: Final = "/v1/images/generations"
EDITS_PATH: Final = "/v1/images/edits"
"""Where a multi-image edit goes: sources as ``images: [{"url": ...}]`` (docs/xai-wire.md)."""
AUTH_HEADER: Final = "authorization"
USER_AGENT: Final = f"runner/{__version__}"
TICKS_PER_USD: Final = 10_000_000_000
TICKS_PER_MICRO: Final = TICKS_PER_USD // MICROS_PER_USD
ResponseFormat = Literal["b64_json", "url"]

# mode `quality` is a model of its own on xAI. The vendor retired
# `grok-imagine-image-pro` on 2026-05-15 in favour of `-quality` (docs/xai-wire.md);
# a manifest naming another model sends it as it is, whatever the mode.
QUALITY_MODELS: Final[Mapping[str, str]] = MappingProxyType(
    {"grok-imagine-image": "grok-imagine-image-quality"}
)
# Which of our params travel to xAI under which name (None: handled locally).
XAI_PARAMS: Final[Mapping[str, str | None]] = MappingProxyType(
    {
        "prompt": "prompt",
        "n": "n",
        "aspect_ratio": "aspect_ratio",
        "resolution": "resolution",
        "mode": None,  # picks the model (QUALITY_MODELS)
        "output_format": None,  # xAI has no such argument; converted after download
    }
)
# Words of a 400 that refuse the content rather than the arguments (a guess).
_POLICY_WORDS: Final = ("moderat", "content policy", "safety", "violat", "not allowed to generate")
# Words of a 403 that mean the team cannot pay (third-party reports).
_BALANCE_WORDS: Final = ("credit", "balance", "billing", "spending limit", "payment")
_HINTS: Final[Mapping[int, str]] = MappingProxyType(
    {
        401: "check XAI_API_KEY",
        403: "the key's team may lack access to this model; check console.x.ai",
    }
)


@dataclass(frozen=True, slots=True)
class XaiMedia(Media):
    """An output image of xAI, with the format the job asked for.

    `convert_to` is our `output_format` (``png``, ``jpeg``, ``webp``); the
    backend re-encodes the bytes locally when xAI's differ.
    """

    convert_to: str | None = None


def wire_model(model: str, mode: str) -> str:
    """The model slug xAI is asked for: the quality variant for mode ``quality``."""
    if mode == "quality":
        return QUALITY_MODELS.get(model, model)
    return model


def _image_url(image: ImageInput, file_bytes: bytes | None) -> str:
    """A public URL as it is, else a ``data:image/...;base64,`` URI (xAI takes both)."""
    if image.kind == "url":
        return image.source
    if image.kind == "data":
        payload, declared = split_data_uri(image.source)
        if payload is None:
            raise UsageError(
                f"input image {image.describe()}: not a readable data URI; "
                "use data:image/png;base64,... or a file path"
            )
        kind = sniff_image(payload) or declared or "image/png"
    else:
        if file_bytes is None:
            raise UsageError(f"input image {image.describe()}: the file was not read")
        payload = file_bytes
        kind = sniff_image(payload) or "image/png"
    return f"data:{kind};base64,{base64.b64encode(payload).decode('ascii')}"


def generation_request(
    base: str,
    model: str,
    request: Request,
    key: str | None,
    *,
    image_bytes: bytes | None = None,
    more_bytes: Sequence[bytes | None] = (),
    response_format: ResponseFormat = "b64_json",
) -> WireRequest:
    """One billed, synchronous generation or edit.

    ``POST {base}/v1/images/generations`` for a generation or a one-image edit
    (``image_url``); ``POST {base}/v1/images/edits`` for a multi-image edit,
    its sources as ``images: [{"url": ...}]`` in the manifest's order.
    `image_bytes` are the bytes of a ``path`` first input image and
    `more_bytes` those of the further ones (None where not a path), read by
    the I/O layer. The key goes only in ``Authorization: Bearer``; Segmind's
    ``x-api-key`` is never sent.
    """
    if not model.strip():
        raise UsageError("model '': give an xAI model, e.g. grok-imagine-image")
    params = request.params()
    body: dict[str, object] = {"model": wire_model(model, request.mode)}
    for ours, theirs in XAI_PARAMS.items():
        if theirs is not None:
            body[theirs] = params[ours]
    body["response_format"] = response_format
    path = GENERATIONS_PATH
    if request.image is not None and request.more_images:
        read = (image_bytes, *more_bytes, *([None] * len(request.more_images)))
        body["images"] = [
            {"url": _image_url(image, data)}
            for image, data in zip(request.images, read, strict=False)
        ]
        path = EDITS_PATH
    elif request.image is not None:
        body["image_url"] = _image_url(request.image, image_bytes)
    headers: list[tuple[str, str]] = [
        ("User-Agent", USER_AGENT),
        ("Accept", "application/json"),
    ]
    if key:
        headers.append(("Authorization", f"Bearer {key}"))
    return WireRequest("POST", f"{base}{path}", tuple(headers), body)


def bearer_of(request: WireRequest) -> str | None:
    """The key a request carries in its Authorization header, so messages can mask it."""
    for name, value in request.headers:
        if name.lower() == AUTH_HEADER and value.startswith("Bearer "):
            return value[len("Bearer ") :]
    return None


def micros_of_ticks(ticks: int) -> Micros:
    """USD ticks (10^-10 USD) as micro-dollars, rounded half up; integer arithmetic only."""
    return Micros((ticks + TICKS_PER_MICRO // 2) // TICKS_PER_MICRO)


def _ticks(doc: Mapping[str, object]) -> int | None:
    usage = doc.get("usage")
    if not isinstance(usage, Mapping):
        return None
    value = usage.get("cost_in_usd_ticks")
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None  # a malformed statistic never fails a paid job


def api_error(
    where: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str | None,
    now_utc: datetime,
) -> ApiError | AuthError:
    """The exception for a non-2xx answer of xAI.

    400 BadRequest (JobFailed when the text refuses the content), 401
    AuthError, 403 InsufficientCredits when the text is about balance or
    billing (else AuthError), 404 / 422 BadRequest (a model or argument the
    API does not know: final for the job), 429 RateLimited and 5xx
    ServerError with `retry_after` from the headers, 3xx and anything else
    ApiError. `secret` is masked in the text.
    """
    text, hint = error_text(status, headers, body, _HINTS, "XAI_BASE_URL")
    lowered = text.lower()
    said = message(where, status, text, secret, hint)
    wait, coarse = reset_hint(headers, now_utc)
    if status == 400 and any(word in lowered for word in _POLICY_WORDS):
        return JobFailed(said, status=status, reason=clean_text(text, secret))
    if status in (400, 404, 422):
        return BadRequest(said, status=status)
    if status == 403 and any(word in lowered for word in _BALANCE_WORDS):
        return InsufficientCredits(
            message(where, status, text, secret, "add credits to the xAI team, or lower the run"),
            status=status,
        )
    if status in (401, 403):
        return AuthError(said, status=status)
    if status == 429:
        return RateLimited(said, status=status, retry_after=wait, coarse=coarse)
    if 500 <= status < 600:
        return ServerError(said, status=status, retry_after=wait)
    return ApiError(said, status=status)


def _protocol(request: WireRequest, status: int, text: str) -> ProtocolError:
    return ProtocolError(message(request.where, status, text, bearer_of(request)), status=status)


def _media_of(
    item: object, index: int, request: WireRequest, status: int, convert_to: str | None
) -> XaiMedia:
    if not isinstance(item, Mapping):
        raise _protocol(request, status, f"data[{index}] is not an object")
    declared = item.get("mime_type")
    content_type = declared.lower() if isinstance(declared, str) and declared else None
    encoded = item.get("b64_json")
    if isinstance(encoded, str) and encoded.strip():
        text = encoded.strip()
        # Kept as text: the backend decodes it under the download size cap
        # (a body that does not decode is then a final DownloadError).
        if not text.lower().startswith("data:"):
            text = f"data:{content_type or 'application/octet-stream'};base64,{text}"
        return XaiMedia(url=text, content_type=content_type, convert_to=convert_to)
    url = item.get("url")
    if isinstance(url, str) and url.strip().lower().startswith(("http://", "https://")):
        return XaiMedia(url=url.strip(), content_type=content_type, convert_to=convert_to)
    keys = ", ".join(sorted(str(k) for k in item)) or "none"
    raise _protocol(
        request, status, f"data[{index}] has neither b64_json nor an http(s) url ({keys})"
    )


def parse_generation(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    request: WireRequest,
    output_format: str | None = None,
    n: int | None = None,
    now_utc: datetime,
) -> SyncResult:
    """The answer of ``POST /v1/images/generations``.

    The images become `XaiMedia` (inline base64 as a data URI, or a URL to
    download) carrying `output_format`; the charge in ticks becomes
    `Metrics.cost` in USD, exact to the micro-dollar. A 2xx answer without
    ``data`` images is a ProtocolError (the call may have been billed).
    """
    secret = bearer_of(request)
    if not 200 <= status < 300:
        raise api_error(request.where, status, headers, body, secret=secret, now_utc=now_utc)
    doc = decode_body(headers, body)
    if isinstance(doc, NotJson):
        raise _protocol(request, status, server_text(doc))
    if not isinstance(doc, dict):
        raise _protocol(request, status, f"expected a JSON object, got JSON {type(doc).__name__}")
    doc = cast(dict[str, object], doc)
    data = doc.get("data")
    if not isinstance(data, list) or not data:
        raise _protocol(request, status, "the answer holds no images (data is empty or missing)")
    # At most the n images asked for are kept (the extras are counted, never decoded).
    keep = data if n is None else data[:n]
    media = tuple(_media_of(item, i, request, status, output_format) for i, item in enumerate(keep))
    ticks = _ticks(doc)
    images = n or len(media)
    cost = trusted_cost(to_usd(micros_of_ticks(ticks)), images) if ticks is not None else None
    request_id = (header(headers, "x-request-id") or "").strip() or None
    if request_id is not None and (
        not is_request_id(request_id) or (secret and secret in request_id)
    ):
        request_id = None  # an id no real server sends is no use to anyone
    delivered = next((m.content_type for m in media if m.content_type), None)
    return SyncResult(
        media=media,
        metrics=DeliveredMetrics(cost=cost, delivered_type=delivered),
        request_id=request_id,
        dropped=len(data) - len(keep),
        missing=0 if n is None else max(0, n - len(keep)),
    )
