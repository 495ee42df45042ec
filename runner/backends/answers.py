"""Reading an answer's body and turning a refusal into one of our errors. Pure.

Every message reads ``"<METHOD> <path> -> <code>: <server text>"``: the
caller passes ``where`` (method and URL path only: no host, no query), the
server's ``error`` text is cut to `MAX_SERVER_TEXT` characters, a non-JSON
body (an HTML error page from a proxy) becomes a short tag-free snippet, and
the API key is scrubbed from anything the server echoes back. Headers are
never quoted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from runner.backends.hints import header, retry_after
from runner.errors import (
    ApiError,
    AuthError,
    BadRequest,
    InsufficientCredits,
    JobFailed,
    NotFound,
    RateLimited,
    ServerError,
)
from runner.redact import mask_key, safe_url

MAX_SERVER_TEXT: Final = 300  # characters of server error text kept in a message
MAX_SNIPPET: Final = 120  # characters of a non-JSON body kept in a message

Headers = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class NotJson:
    """A body that is not a JSON document: its content type and a short readable snippet."""

    content_type: str
    snippet: str


def content_type(headers: Headers) -> str:
    """The media type of an answer, lower case, without parameters ('' when absent)."""
    value = header(headers, "content-type") or ""
    return value.split(";", 1)[0].strip().lower()


def decode_body(headers: Headers, body: bytes) -> object:
    """The JSON document of a body, or a `NotJson` describing what came instead."""
    try:
        doc: object = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return NotJson(content_type(headers) or "no content type", snippet(body))
    return doc


def snippet(body: bytes) -> str:
    """A short, one-line, tag-free excerpt of a non-JSON body (e.g. an HTML error page)."""
    text = body[:4096].decode("utf-8", errors="replace")
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
    text = re.sub(r"(?s)<[^>]*>", " ", text)
    return cut(" ".join(text.split()), MAX_SNIPPET)


def cut(text: str, limit: int) -> str:
    """`text` shortened to at most `limit` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def server_text(doc: object) -> str:
    """What the server said was wrong: its ``error`` text, or a short stand-in."""
    if isinstance(doc, NotJson):
        text = f"non-JSON answer ({doc.content_type})"
        return f"{text}: {doc.snippet}" if doc.snippet else text
    if isinstance(doc, dict):
        for name in ("error", "detail", "message"):
            value = doc.get(name)
            if isinstance(value, str) and value.strip():
                return value.strip()
            if value is not None and not isinstance(value, str):
                return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return "no error text"


def clean_text(text: str, secret: str | None) -> str:
    """Server text fit for a message: one line, key masked, at most MAX_SERVER_TEXT chars."""
    return cut(mask_key(" ".join(text.split()), secret), MAX_SERVER_TEXT)


def message(where: str, status: int, text: str, secret: str | None, hint: str = "") -> str:
    """``"<where> -> <status>: <text>"``, with an optional ``(hint)`` saying what to do."""
    line = f"{where} -> {status}: {clean_text(text, secret)}"
    return f"{line} ({hint})" if hint else line


_HINTS: Final[Mapping[int, str]] = {
    401: "check SEGMIND_API_KEY",
    403: "the key may lack access to this model; check the Segmind account",
    406: "add credits to the Segmind account, or lower the run",
}


def api_error(
    where: str,
    status: int,
    headers: Headers,
    body: bytes,
    *,
    secret: str | None,
    now_utc: datetime,
) -> ApiError | AuthError:
    """The exception for a non-2xx answer whose body does not announce a terminal state.

    3xx ApiError (redirects are not followed), 400 BadRequest, 401/403
    AuthError, 404 NotFound, 406 InsufficientCredits, 422 JobFailed, 429
    RateLimited, 5xx ServerError (both with `retry_after` from the headers),
    anything else ApiError. `secret` is masked in the text.
    """
    text = server_text(decode_body(headers, body))
    hint = _HINTS.get(status, "")
    if 300 <= status < 400:
        location = header(headers, "location")
        text = f"redirect to {safe_url(location) if location else 'nowhere'} not followed"
        hint = "the API root may be wrong: check --base-url or SEGMIND_BASE_URL"
    said = message(where, status, text, secret, hint)
    wait = retry_after(headers, now_utc)
    error: ApiError | AuthError
    if status == 400:
        error = BadRequest(said, status=status)
    elif status in (401, 403):
        error = AuthError(said, status=status)
    elif status == 404:
        error = NotFound(said, status=status)
    elif status == 406:
        error = InsufficientCredits(said, status=status)
    elif status == 422:
        error = JobFailed(said, status=status, reason=clean_text(text, secret))
    elif status == 429:
        error = RateLimited(said, status=status, retry_after=wait)
    elif 500 <= status < 600:
        error = ServerError(said, status=status, retry_after=wait)
    else:
        error = ApiError(said, status=status)
    return error
