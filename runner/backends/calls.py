"""Segmind's requests, sans-IO: the API root, headers, bodies and URLs of every call.

Each builder returns a `WireRequest` value that runner.backends.segmind
sends; runner.backends.wire re-exports them beside the parsers of the
answers. See ../shared/api/segmind-wire.md for the protocol.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import quote, urlsplit

from runner import __version__
from runner.backends.base import Submission
from runner.backends.media import split_data_uri
from runner.errors import UsageError
from runner.jobs import ImageInput, Request
from runner.redact import safe_url

USER_AGENT: Final = f"runner/{__version__}"
KEY_HEADER: Final = "x-api-key"
# v1 answers raw image bytes; an Accept of JSON alone could be refused with a
# 406, which on Segmind means "insufficient credits".
SYNC_ACCEPT: Final = "image/*, application/json;q=0.9"
# Only what runner.backends.bounded decodes under its cap (httpx would offer
# br and zstd too, when their packages are installed).
ACCEPT_ENCODING: Final = "gzip, deflate"

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


def origin(url: str) -> tuple[str, str, int | None]:
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
