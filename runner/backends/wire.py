"""Segmind's wire protocol, sans-IO: build requests (in `calls`, re-exported), read answers.

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

from collections.abc import Mapping
from datetime import datetime
from typing import Final, NoReturn, cast

from runner.backends.answers import (
    HostileBody,
    NotJson,
    api_error,
    clean_text,
    content_type,
    cut,
    decode_body,
    message,
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
from runner.backends.calls import (
    ACCEPT_ENCODING,
    KEY_HEADER,
    SYNC_ACCEPT,
    USER_AGENT,
    CallKind,
    WireRequest,
    api_headers,
    credits_request,
    image_field,
    normalize_base_url,
    origin,
    result_request,
    status_request,
    submit_request,
    sync_request,
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
)
from runner.clock import utc_datetime
from runner.errors import ApiError, JobFailed, ProtocolError, TransportError
from runner.params import N_MAX
from runner.redact import safe_url

__all__ = [
    "ACCEPT_ENCODING",
    "KEY_HEADER",
    "SYNC_ACCEPT",
    "USER_AGENT",
    "CallKind",
    "WireRequest",
    "answer_state",
    "api_error",
    "api_headers",
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

STATES: Final[tuple[State, ...]] = ("QUEUED", "PROCESSING", "COMPLETED", "FAILED")

Headers = Mapping[str, str]

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
        now = now_utc if now_utc is not None else utc_datetime()
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


def answer_state(headers: Headers, body: bytes) -> State | None:
    """The job state an answer's body names, or None when it names none (or does not decode)."""
    try:
        doc = decode_body(headers, body)
    except HostileBody:
        return None
    value = doc.get("status") if isinstance(doc, dict) else None
    if isinstance(value, str) and value.upper() in STATES:
        return cast(State, value.upper())
    return None


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
    home = origin(request.url)
    for name, url in (("status_url", status_url), ("response_url", response_url)):
        try:
            same = origin(url) == home
        except ValueError:
            same = False
        if not same:
            _protocol(
                request,
                status,
                f"{name} {safe_url(url)!r} is not on {home[0]}://{home[1]}:{home[2]}; "
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
