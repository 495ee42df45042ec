"""Keeping secrets out of what people and files see: the one place secrets are masked. Pure.

Three kinds of secret travel with a run:

- the API key (``SEGMIND_API_KEY``): masked wherever a server might echo
  it back (`mask_key`), in a recorded command line (`redact_argv`), in a
  logged header (`redact_headers`), and refused in a sidecar (`holds_secret`);
- a coordinator URL's password (``redis://:secret@host:6379/0``): replaced
  by ``***`` in a URL (`redact_url`) or anywhere in a text (`redact_urls`);
- a URL's query, which may carry a signed download token: dropped from any
  URL a message or a log shows (`safe_url`).

Every masked value reads `MASK`; the length of a secret is never shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final
from urllib.parse import urlsplit, urlunsplit

# Terminal escape sequences: OSC (ESC ] ... BEL or ST, which can retitle a
# window or write a hyperlink), CSI (ESC [ ... final byte: colours, cursor
# moves, screen clears), their 8-bit forms (\x9d, \x9b) and the two-byte ESC
# forms (ECMA-48).
_ESCAPES: Final = re.compile(
    r"\x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|\x9d[^\x07\x1b\x9c]*(?:\x07|\x9c)?"
    r"|\x1b\[[0-?]*[ -/]*[@-~]?|\x9b[0-?]*[ -/]*[@-~]?|\x1b[ -~]?"
)
# C0 and C1 controls (BEL, CR, the 8-bit CSI \x9b ...), DEL, and the Unicode
# format characters that reorder or hide text on a terminal (bidi overrides,
# zero-width marks, line and paragraph separators).
_CONTROLS: Final = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


def printable(text: str) -> str:
    """`text` without terminal escape sequences, its control characters as spaces."""
    return _CONTROLS.sub(" ", _ESCAPES.sub("", text))


MASK: Final = "***"
"""What stands in for a secret in text."""

HEADER_MASK: Final = "<redacted>"
"""What stands in for a secret header's value in a log line."""

SECRET_HEADERS: Final = frozenset(
    {"x-api-key", "authorization", "proxy-authorization", "cookie", "set-cookie"}
)
"""Header names (lower case) whose values are never logged; x-api-key carries Segmind's key."""

# The password part of a redis://, rediss:// or unix:// URL inside free text.
_PASSWORD_IN_URL: Final = re.compile(r"((?:rediss?|unix)://[^\s/@:]*:)[^\s@/]*@")


def mask_key(text: str, key: str | None) -> str:
    """`text` with every occurrence of `key` (the API key) replaced by `MASK`."""
    return text.replace(key, MASK) if key else text


def holds_secret(text: str, secrets: Iterable[str]) -> bool:
    """Whether `text` contains any non-empty one of `secrets` (a last guard before a write)."""
    return any(secret and secret in text for secret in secrets)


def redact_url(url: str) -> str:
    """`url` with any password replaced by `MASK` (user names stay)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{user}:{MASK}@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_urls(text: str) -> str:
    """`text` with the password of every Redis URL in it replaced by `MASK`.

    For text that may hold a URL among other things (``--coordinator=URL``).
    """
    return _PASSWORD_IN_URL.sub(rf"\1{MASK}@", text)


def redact_argv(argv: Sequence[str], *keys: str | None) -> list[str]:
    """A command line fit to record: the API keys (every provider's) and any URL password
    masked."""
    safe = list(argv)
    for key in keys:
        safe = [mask_key(arg, key) for arg in safe]
    return [redact_urls(arg) for arg in safe]


def redact_headers(headers: Iterable[tuple[str, str]]) -> str:
    """``Name=value, ...`` for a log line, with the key and other credentials as `HEADER_MASK`."""
    shown = []
    for name, value in headers:
        text = HEADER_MASK if name.lower() in SECRET_HEADERS else value
        shown.append(f"{name}={text}")
    return ", ".join(shown)


def safe_url(url: str) -> str:
    """scheme://host[:port]/path of a URL: no credentials, no query (which may hold a token)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    prefix = f"{parts.scheme}://{host}" if parts.scheme else ""
    # A URL an answer named may carry escape sequences into a message or a log.
    return printable(f"{prefix}{parts.path}") or "/"
