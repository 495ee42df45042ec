"""Segmind's wire protocol, sans-IO: build requests, read answers.

Nothing here opens a socket: requests come out as `WireRequest` values,
answers go in as ``(status, headers, body)`` and come out as the values of
`runner.backends.base` or as exceptions of `runner.errors` (the mapping of
codes to errors is in `answers`, wait hints and metrics in `hints`, output
shapes in `media`). See ../shared/api/segmind-wire.md for the protocol.

A body that announces COMPLETED or FAILED is valid whatever its HTTP code:
Segmind serves FAILED under 422, and the vendor SDK reads it as a body.

A hostile answer (over the size cap, nested too deep, a list too long, an
encoding that does not decode) is `bad_answer`: on a status or result call,
whose job is paid and kept by the server, a TransportError(sent=True) the
scheduler retries like a lost answer; elsewhere a ProtocolError. A result
naming more images than the job asked for keeps the first n (`dropped`
counts the rest); one naming fewer is marked `missing`. A submit's request
id with characters no real id has is refused.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal, NoReturn, cast
from urllib.parse import quote, urlsplit

from runner import __version__
from runner.backends.answers import (
    HostileBody,
    NotJson,
    api_error,
    clean_text,
    content_type,
    cut,
    decode_body,
    message,
    safe_url,
    server_text,
)
from runner.backends.base import (
    Media,
    Result,
    State,
    StatusReport,
    Submission,
    SyncResult,
    is_request_id,
)
from runner.backends.hints import (
    header,
    merge_metrics,
    metrics_from_headers,
    number,
    parse_metrics,
    retry_after,
    seed_of,
)
from runner.backends.media import (
    UnreadableOutput,
    decode_inline,
    media_kind,
    select_media,
    sniff_image,
    split_data_uri,
)
from runner.errors import ApiError, JobFailed, ProtocolError, TransportError, UsageError
from runner.jobs import ImageInput, Request
from runner.params import N_MAX

__all__ = [
    "KEY_HEADER",
    "USER_AGENT",
    "WireRequest",
    "api_error",
    "bad_answer",
    "credits_request",
    "decode_inline",
    "image_field",
    "media_kind",
    "normalize_base_url",
    "parse_credits",
    "parse_result",
    "parse_status",
    "parse_submit",
    "parse_sync",
    "result_request",
    "retry_after",
    "sniff_image",
    "status_request",
    "submit_request",
    "sync_request",
]

USER_AGENT: Final = f"runner/{__version__}"
KEY_HEADER: Final = "x-api-key"
STATES: Final[tuple[State, ...]] = ("QUEUED", "PROCESSING", "COMPLETED", "FAILED")
# v1 answers raw image bytes; an Accept of JSON alone could be refused with a
# 406, which on Segmind means "insufficient credits".
SYNC_ACCEPT: Final = "image/*, application/json;q=0.9"
# Only what runner.backends.bounded decodes under its cap (httpx would offer
# br and zstd too, when their packages are installed).
ACCEPT_ENCODING: Final = "gzip, deflate"

Headers = Mapping[str, str]
CallKind = Literal["submit", "sync", "status", "result", "credits", "other"]


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One HTTP request to send. `headers` may hold the API key, so they stay out of repr."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    json: dict[str, object] | None = None
    # Which call this is: a bad answer to a status or result is retried, not final.
    kind: CallKind = "other"

    @property
    def images(self) -> int | None:
        """The ``n`` this request asks for, when it carries one (submit, sync)."""
        n = (self.json or {}).get("n")
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None

    @property
    def where(self) -> str:
        """``"<METHOD> <path>"``: how messages name this request (no host, no query)."""
        return f"{self.method} {urlsplit(self.url).path or '/'}"

    @property
    def secret(self) -> str | None:
        """The API key this request carries, so messages can mask it."""
        for name, value in self.headers:
            if name.lower() == KEY_HEADER:
                return value
        return None


# --- base URL -------------------------------------------------------------------------


def normalize_base_url(url: str, *, source: str = "base URL") -> str:
    """The API root: no trailing ``/``, ``/v1`` or ``/v2`` (the vendor SDK's convention).

    `source` names where the URL came from (``--base-url``, ``SEGMIND_BASE_URL``,
    ``manifest api.base_url``). Raises UsageError for a scheme other than
    http/https, a missing host, a bad port, credentials, a query or a fragment.
    """
    text = url.strip()
    shown = safe_url(text)
    example = "e.g. https://api.segmind.com"
    try:
        parts = urlsplit(text)
        _ = parts.port  # parsing the port is what validates it
    except ValueError:
        raise UsageError(f"{source}: {shown!r} is not a valid URL; use {example}") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"{source}: {text[:80]!r} must start with https:// or http:// ({example})")
    if not parts.hostname:
        raise UsageError(f"{source}: {shown!r} has no host; use {example}")
    if parts.username is not None or parts.password is not None:
        raise UsageError(
            f"{source}: {shown!r} carries credentials; remove them from the URL "
            "and set SEGMIND_API_KEY instead"
        )
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise UsageError(
            f"{source}: {shown!r} has a query or fragment; give only the API root ({example})"
        )
    path = parts.path.rstrip("/")
    if path.endswith(("/v1", "/v2")):
        path = path[:-3].rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the default port filled in; raises ValueError on junk."""
    parts = urlsplit(url)
    port = parts.port
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


# --- requests -------------------------------------------------------------------------


def api_headers(
    key: str | None, *, accept: str = "application/json"
) -> tuple[tuple[str, str], ...]:
    """The headers of an API call; ``x-api-key`` only when a key is set."""
    headers = [("User-Agent", USER_AGENT), ("Accept", accept), ("Accept-Encoding", ACCEPT_ENCODING)]
    if key:
        headers.append((KEY_HEADER, key))
    return tuple(headers)


def image_field(image: ImageInput, file_bytes: bytes | None = None) -> str:
    """The wire form of an input image: a URL as is, else plain base64 (no ``data:`` prefix).

    Segmind documents the field as "URL or base64". `file_bytes` are the bytes
    of a ``path`` image, read by the I/O layer. Raises UsageError for a data
    URI that does not decode or a path image without its bytes.
    """
    if image.kind == "url":
        return image.source
    if image.kind == "data":
        payload, _ = split_data_uri(image.source)
        if payload is None:
            raise UsageError(
                f"input image {image.describe()}: not a readable data URI; "
                "use data:image/png;base64,... or a file path"
            )
        return base64.b64encode(payload).decode("ascii")
    if file_bytes is None:
        raise UsageError(f"input image {image.describe()}: the file was not read")
    return base64.b64encode(file_bytes).decode("ascii")


def _body(request: Request, image_bytes: bytes | None) -> dict[str, object]:
    body: dict[str, object] = dict(request.params())
    if request.image is not None:
        body["image"] = image_field(request.image, image_bytes)
    return body


def _model_path(model: str) -> str:
    if not model.strip() or model in (".", ".."):
        raise UsageError(f"model {model!r}: give a Segmind model slug, e.g. grok-imagine-image")
    return quote(model, safe="-._~")


def submit_request(
    base: str, model: str, request: Request, key: str | None, *, image_bytes: bytes | None = None
) -> WireRequest:
    """``POST {base}/v2/{model}``: queue one job (billed, not idempotent)."""
    return WireRequest(
        "POST",
        f"{base}/v2/{_model_path(model)}",
        api_headers(key),
        _body(request, image_bytes),
        kind="submit",
    )


def sync_request(
    base: str, model: str, request: Request, key: str | None, *, image_bytes: bytes | None = None
) -> WireRequest:
    """``POST {base}/v1/{model}``: run one job and wait for its image(s) (billed)."""
    return WireRequest(
        "POST",
        f"{base}/v1/{_model_path(model)}",
        api_headers(key, accept=SYNC_ACCEPT),
        _body(request, image_bytes),
        kind="sync",
    )


def status_request(submission: Submission, key: str | None) -> WireRequest:
    """``GET status_url`` (safe to repeat)."""
    return WireRequest("GET", submission.status_url, api_headers(key), kind="status")


def result_request(submission: Submission, key: str | None) -> WireRequest:
    """``GET response_url`` (safe to repeat)."""
    return WireRequest("GET", submission.response_url, api_headers(key), kind="result")


def credits_request(base: str, key: str | None) -> WireRequest:
    """``GET {base}/v1/get-user-credits``."""
    return WireRequest("GET", f"{base}/v1/get-user-credits", api_headers(key), kind="credits")


# --- answers --------------------------------------------------------------------------


def _protocol(request: WireRequest, status: int, text: str) -> NoReturn:
    raise ProtocolError(message(request.where, status, text, request.secret), status=status)


def bad_answer(request: WireRequest, status: int | None, reason: str) -> ApiError:
    """The error for a hostile answer to `request` (`reason` says what was wrong with it).

    A status or result call's job is paid and the server keeps its result,
    so there it is a TransportError(sent=True): retried like a lost answer.
    Elsewhere a ProtocolError: a submit or sync call is not repeated on a
    body nobody can read (it may have been billed).
    """
    if request.kind in ("status", "result"):
        text = message(request.where, status or 0, reason, request.secret)
        return TransportError(f"{text}; not read, the job is asked again", sent=True)
    return ProtocolError(message(request.where, status or 0, reason, request.secret), status=status)


def _json_object(
    request: WireRequest, status: int, headers: Headers, body: bytes, now_utc: datetime | None
) -> dict[str, object]:
    """A terminal body whatever the code, else the JSON object of a 2xx answer.

    Raises the mapped error for other non-2xx answers and ProtocolError for a
    2xx answer that is not a JSON object.
    """
    try:
        doc = decode_body(headers, body)
    except HostileBody as exc:
        if 200 <= status < 300:
            raise bad_answer(request, status, str(exc)) from None
        doc = None  # api_error below reads the code and names the body unreadable
    if isinstance(doc, dict) and doc.get("status") in ("COMPLETED", "FAILED"):
        return cast(dict[str, object], doc)
    if not 200 <= status < 300:
        now = now_utc if now_utc is not None else datetime.now(UTC)
        raise api_error(request.where, status, headers, body, secret=request.secret, now_utc=now)
    if isinstance(doc, NotJson):
        _protocol(request, status, server_text(doc))
    if not isinstance(doc, dict):
        _protocol(request, status, f"expected a JSON object, got JSON {type(doc).__name__}")
    return cast(dict[str, object], doc)


def _state(request: WireRequest, status: int, doc: Mapping[str, object]) -> State:
    value = doc.get("status")
    if isinstance(value, str) and value.upper() in STATES:
        return cast(State, value.upper())
    _protocol(request, status, f"status {cut(repr(value), 60)} is not one of {', '.join(STATES)}")


def _failed(request: WireRequest, status: int, doc: Mapping[str, object]) -> JobFailed:
    reason = clean_text(server_text(doc), request.secret)
    return JobFailed(
        message(request.where, status, reason, request.secret), status=status, reason=reason
    )


def _media(
    request: WireRequest, status: int, doc: Mapping[str, object], expected: int | None
) -> tuple[tuple[Media, ...], int]:
    """(At most `expected` images, else N_MAX; how many more the answer named)."""
    try:
        return select_media(doc, request.url, expected or N_MAX)
    except UnreadableOutput as exc:
        _protocol(request, status, f"output {exc}")


def _missing(expected: int | None, found: int) -> int:
    return max(0, expected - found) if expected is not None else 0


def parse_submit(
    status: int,
    headers: Headers,
    body: bytes,
    *,
    request: WireRequest,
    now_utc: datetime | None = None,
) -> Submission:
    """The answer of ``POST /v2/{model}``.

    status_url and response_url must be absolute http(s) URLs on the submit's
    own scheme, host and port, as the key goes with every poll. `now_utc`
    (default: now) dates the rate-limit hints of a 429.
    """
    doc = _json_object(request, status, headers, body, now_utc)
    if doc.get("status") == "FAILED":
        raise _failed(request, status, doc)
    names = ("request_id", "status_url", "response_url")
    values = [doc.get(n) for n in names]
    missing = [n for n, v in zip(names, values, strict=True) if not (isinstance(v, str) and v)]
    if missing:
        keys = ", ".join(sorted(doc)) or "none"
        _protocol(request, status, f"the submit answer lacks {', '.join(missing)} (keys: {keys})")
    request_id, status_url, response_url = (str(v).strip() for v in values)
    if not _usable_id(request_id, request):
        raise bad_answer(
            request,
            status,
            f"request_id {cut(repr(request_id), 60)} is not an id "
            "(letters, digits and ._~:- only, at most 128)",
        )
    origin = _origin(request.url)
    for name, url in (("status_url", status_url), ("response_url", response_url)):
        try:
            same = _origin(url) == origin
        except ValueError:
            same = False
        if not same:
            _protocol(
                request,
                status,
                f"{name} {safe_url(url)!r} is not on {origin[0]}://{origin[1]}:{origin[2]}; "
                "the key is not sent to another host",
            )
    return Submission(
        request_id=request_id,
        status_url=status_url,
        response_url=response_url,
        n=request.images,
    )


def parse_status(
    status: int,
    headers: Headers,
    body: bytes,
    *,
    request: WireRequest,
    now_utc: datetime | None = None,
) -> StatusReport:
    """The answer of ``GET status_url``; a FAILED body (served as 422) is a report."""
    doc = _json_object(request, status, headers, body, now_utc)
    state = _state(request, status, doc)
    error = clean_text(server_text(doc), request.secret) if state == "FAILED" else None
    return StatusReport(state=state, error=error, metrics=parse_metrics(doc.get("metrics")))


def parse_result(
    status: int,
    headers: Headers,
    body: bytes,
    *,
    request: WireRequest,
    now_utc: datetime | None = None,
    expected: int | None = None,
) -> Result:
    """The answer of ``GET response_url``; COMPLETED without any output is a ProtocolError.

    `expected` is the job's n, when known: at most that many images are
    kept (`Result.dropped` counts the rest), fewer are `Result.missing`.
    Without it at most params.N_MAX are kept.
    """
    doc = _json_object(request, status, headers, body, now_utc)
    state = _state(request, status, doc)
    images = expected or N_MAX
    metrics = parse_metrics(doc.get("metrics"), images=images)
    seed = seed_of(doc.get("seed"))
    if state == "FAILED":
        error = clean_text(server_text(doc), request.secret)
        return Result(state=state, error=error, metrics=metrics, seed=seed)
    if state != "COMPLETED":
        return Result(state=state, metrics=metrics, seed=seed)
    media, dropped = _media(request, status, doc, expected)
    if not media:
        _protocol(request, status, "COMPLETED without output or images")
    return Result(
        state=state,
        media=media,
        metrics=metrics,
        seed=seed,
        dropped=dropped,
        missing=_missing(expected, len(media)),
    )


def parse_sync(
    status: int,
    headers: Headers,
    body: bytes,
    *,
    request: WireRequest,
    now_utc: datetime | None = None,
) -> SyncResult:
    """The answer of ``POST /v1/{model}``: raw image bytes, or a JSON result body.

    Metrics come from the accounting headers (and the body's ``metrics`` when
    JSON). A FAILED body raises JobFailed: a sync call has no status to read later.
    Images past the request's n are dropped and counted, as in `parse_result`;
    a request id no real id looks like is not kept (the image is: it is paid).
    """
    expected = request.images
    images = expected or N_MAX
    header_metrics = metrics_from_headers(headers, images=images)
    request_id = _sync_id(header(headers, "x-request-id"), request)
    seed = seed_of(header(headers, "x-seed-value"))
    kind = content_type(headers)
    if 200 <= status < 300 and (kind.startswith("image/") or sniff_image(body)):
        if not body:
            _protocol(request, status, f"empty {kind} body")
        media = Media(data=body, content_type=sniff_image(body) or kind)
        return SyncResult(
            media=(media,),
            metrics=header_metrics,
            request_id=request_id,
            seed=seed,
            missing=_missing(expected, 1),
        )
    doc = _json_object(request, status, headers, body, now_utc)
    if doc.get("status") == "FAILED":
        raise _failed(request, status, doc)
    found, dropped = _media(request, status, doc, expected)
    if not found:
        _protocol(request, status, "the sync answer holds no image, output or images")
    body_id = _sync_id(doc.get("request_id"), request)
    body_seed = seed_of(doc.get("seed"))
    return SyncResult(
        media=found,
        metrics=merge_metrics(parse_metrics(doc.get("metrics"), images=images), header_metrics),
        request_id=body_id or request_id,
        seed=body_seed if body_seed is not None else seed,
        dropped=dropped,
        missing=_missing(expected, len(found)),
    )


def _usable_id(value: str, request: WireRequest) -> bool:
    """A request id we may record and put in URLs: id characters only, and not the key
    (an id is written to the ledger and the sidecars, where the key must never be)."""
    secret = request.secret
    return is_request_id(value) and not (secret and secret in value)


def _sync_id(value: object, request: WireRequest) -> str | None:
    """A sync answer's request id, or None when it is absent or not usable."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text if _usable_id(text, request) else None


def parse_credits(
    status: int,
    headers: Headers,
    body: bytes,
    *,
    request: WireRequest,
    now_utc: datetime | None = None,
) -> float | None:
    """The answer of ``GET /v1/get-user-credits``: credits + free-credits, in USD.

    None when the endpoint does not exist (404): the balance is then unknown.
    """
    if status == 404:
        return None
    doc = _json_object(request, status, headers, body, now_utc)
    paid = number(doc.get("credits"))
    free = number(doc.get("free-credits"))
    if free is None:
        free = number(doc.get("free_credits"))
    if paid is None and free is None:
        _protocol(request, status, "the credits answer holds neither credits nor free-credits")
    return (paid or 0.0) + (free or 0.0)
