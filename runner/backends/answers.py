"""Reading an answer's body and turning a refusal into one of our errors. Pure.

Every message reads ``"<METHOD> <path> -> <code>: <server text>"``: the
caller passes ``where`` (method and URL path only: no host, no query), the
server's ``error`` text goes through `clean_text` (control characters and
terminal escape sequences removed, one line, cut to `MAX_SERVER_TEXT`
characters), a non-JSON body (an HTML error page from a proxy) becomes a
short tag-free snippet, and the API key is scrubbed from anything the server
echoes back. Headers are never quoted.

A body is parsed defensively (`decode_body`): JSON nested deeper than
`MAX_JSON_DEPTH` or with a list or object of more than `MAX_JSON_ITEMS`
entries raises `HostileBody`, which the wire layer turns into an error
naming the endpoint. No honest answer of this API comes near either limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from runner.backends.hints import header, reset_hint
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
from runner.redact import mask_key, printable, safe_url

MAX_SERVER_TEXT: Final = 300  # characters of server error text kept in a message
MAX_SNIPPET: Final = 120  # characters of a non-JSON body kept in a message
MAX_JSON_DEPTH: Final = 32  # nesting levels of an answer; Segmind's go 3 deep
# Entries of one JSON list or object: room for 10,000 output URLs (dropped
# past n by the media parser), far below what would cost memory.
MAX_JSON_ITEMS: Final = 10_000
# Server text is cut to this many characters before it is cleaned, so a
# megabyte-long error string costs no more than a short one.
_PRE_CUT: Final = 4 * MAX_SERVER_TEXT

Headers = Mapping[str, str]


class HostileBody(ValueError):
    """A JSON body no honest server sends (too deep, too long); `str()` says which."""


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
    """The JSON document of a body, or a `NotJson` describing what came instead.

    Raises HostileBody for JSON nested deeper than MAX_JSON_DEPTH levels
    (including nesting so deep that the parser itself gives up) or with a
    list or object longer than MAX_JSON_ITEMS.
    """
    try:
        doc: object = json.loads(body)
    except RecursionError:
        raise HostileBody(f"the answer's JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        return NotJson(content_type(headers) or "no content type", snippet(body))
    check_shape(doc)
    return doc


def check_shape(doc: object) -> None:
    """Raise HostileBody when `doc` nests too deep or holds too long a list or object.

    Walks the document with an explicit stack, so a deep one cannot exhaust
    Python's own.
    """
    stack: list[tuple[object, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            items: list[object] = list(value.values())
        elif isinstance(value, list):
            items = value
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise HostileBody(f"the answer's JSON nests deeper than {MAX_JSON_DEPTH} levels")
        if len(items) > MAX_JSON_ITEMS:
            raise HostileBody(
                f"the answer holds a JSON {type(value).__name__} of {len(items)} entries "
                f"(more than {MAX_JSON_ITEMS})"
            )
        stack.extend((item, depth + 1) for item in items if isinstance(item, dict | list))


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
    """Server text fit for a message or a terminal: every message built from server text
    goes through here.

    Escape sequences and control characters (C0, DEL, C1, bidi and zero-width
    marks) removed, whitespace collapsed to one line, the key masked, at most
    MAX_SERVER_TEXT characters.
    """
    head = text[: _PRE_CUT + len(secret or "")]
    return cut(mask_key(" ".join(printable(head).split()), secret), MAX_SERVER_TEXT)


def message(where: str, status: int, text: str, secret: str | None, hint: str = "") -> str:
    """``"<where> -> <status>: <text>"``, with an optional ``(hint)`` saying what to do."""
    line = f"{where} -> {status}: {clean_text(text, secret)}"
    return f"{line} ({hint})" if hint else line


_HINTS: Final[Mapping[int, str]] = {
    401: "check SEGMIND_API_KEY",
    403: "the key may lack access to this model; check the Segmind account",
    406: "add credits to the Segmind account, or lower the run",
}


def error_text(
    status: int, headers: Headers, body: bytes, hints: Mapping[int, str], base_url_var: str
) -> tuple[str, str]:
    """(what the server said, the hint for the user) of a non-2xx answer, for any provider.

    A hostile body is not quoted (its code still says what kind of refusal it
    is); a redirect names where it pointed, without its query.
    """
    try:
        text = server_text(decode_body(headers, body))
    except HostileBody as exc:
        text = f"unreadable answer: {exc}"
    hint = hints.get(status, "")
    if 300 <= status < 400:
        location = header(headers, "location")
        text = f"redirect to {safe_url(location) if location else 'nowhere'} not followed"
        hint = f"the API root may be wrong: check --base-url or {base_url_var}"
    return text, hint


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
    text, hint = error_text(status, headers, body, _HINTS, "SEGMIND_BASE_URL")
    said = message(where, status, text, secret, hint)
    wait, coarse = reset_hint(headers, now_utc)
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
        error = RateLimited(said, status=status, retry_after=wait, coarse=coarse)
    elif 500 <= status < 600:
        error = ServerError(said, status=status, retry_after=wait)
    else:
        error = ApiError(said, status=status)
    return error
