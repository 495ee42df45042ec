"""Choosing the backend: ``--backend auto|segmind|local``, the base URL, the key.

`choose_backend` is pure: it reads the arguments and an environment mapping
and returns a `BackendChoice` (or raises UsageError). `open_backend` turns a
choice into a live `SegmindBackend`; `local_backend` builds the in-process
emulator behind the same client, so a local run exercises the real HTTP code.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

from runner.backends.guard import guard_for
from runner.backends.segmind import SegmindBackend, Timeouts
from runner.backends.wire import normalize_base_url
from runner.errors import UsageError

if TYPE_CHECKING:
    from runner.emulator import Emulator, EmulatorConfig

BackendKind = Literal["segmind", "local"]
Choice = Literal["auto", "segmind", "local"]

DEFAULT_BASE_URL: Final = "https://api.segmind.com"
LOCAL_BASE_URL: Final = "http://emulator.local"
KEY_ENV: Final = "SEGMIND_API_KEY"
BASE_URL_ENV: Final = "SEGMIND_BASE_URL"

AUTO_LOCAL_NOTICE: Final = (
    "SEGMIND_API_KEY is not set: running on the embedded emulator (no credits spent). "
    "Set it, or pass --backend segmind, to call Segmind."
)


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """Which backend a run uses, at which API root, and a one-line notice for the user.

    `api_key` is kept out of repr so a logged or printed choice never shows it.
    `base_url_source` names where `base_url` came from, for messages.
    """

    kind: BackendKind
    base_url: str
    notice: str | None = None
    base_url_source: str = "default"
    api_key: str | None = field(default=None, repr=False, compare=False)


def _key_from(env: Mapping[str, str]) -> str | None:
    key = env.get(KEY_ENV, "").strip()
    if not key:
        return None
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise UsageError(
            f"{KEY_ENV} contains spaces or control characters; set it to the key alone "
            "(copy it again from the Segmind console)"
        )
    return key


def resolve_base_url(
    base_url_arg: str | None, manifest_base_url: str | None, env: Mapping[str, str]
) -> tuple[str, str]:
    """(API root, where it came from): --base-url > SEGMIND_BASE_URL > manifest > default."""
    for value, source in (
        (base_url_arg, "--base-url"),
        (env.get(BASE_URL_ENV), BASE_URL_ENV),
        (manifest_base_url, "manifest api.base_url"),
    ):
        if value is not None and value.strip():
            return normalize_base_url(value, source=source), source
    return DEFAULT_BASE_URL, "default"


def _plain_http_notice(base_url: str) -> str | None:
    parts = urlsplit(base_url)
    if parts.scheme != "http":
        return None
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return f"{base_url} is plain http: the API key crosses the network unencrypted."


def choose_backend(
    choice: Choice,
    *,
    base_url_arg: str | None,
    manifest_base_url: str | None,
    env: Mapping[str, str],
) -> BackendChoice:
    """The backend a run uses. Pure: `env` stands for os.environ.

    ``auto`` is Segmind when SEGMIND_API_KEY is set, else the embedded
    emulator with a notice; ``segmind`` without a key is a UsageError;
    ``local`` is the embedded emulator whatever the key. Raises UsageError for
    an unknown choice or a bad base URL (naming where it came from).
    """
    if choice not in ("auto", "segmind", "local"):
        raise UsageError(f"--backend {choice!r}: use auto, segmind or local")
    key = _key_from(env)
    if choice == "local" or (choice == "auto" and key is None):
        notice = AUTO_LOCAL_NOTICE if choice == "auto" else None
        if base_url_arg is not None and base_url_arg.strip():
            ignored = "--base-url is ignored by the embedded emulator."
            notice = f"{notice} {ignored}" if notice else ignored
        return BackendChoice(
            kind="local", base_url=LOCAL_BASE_URL, notice=notice, base_url_source="local"
        )
    if key is None:
        raise UsageError(
            f"--backend segmind needs an API key: set {KEY_ENV} "
            "(or use --backend local to run on the embedded emulator)"
        )
    base_url, source = resolve_base_url(base_url_arg, manifest_base_url, env)
    return BackendChoice(
        kind="segmind",
        base_url=base_url,
        notice=_plain_http_notice(base_url),
        base_url_source=source,
        api_key=key,
    )


def local_backend(
    config: EmulatorConfig | None = None,
    *,
    emulator: Emulator | None = None,
    api_key: str | None = None,
    timeouts: Timeouts | None = None,
) -> SegmindBackend:
    """A SegmindBackend named "local" on an in-process emulator at ``http://emulator.local``.

    Pass `emulator` to share one whose state a caller (a test) inspects;
    otherwise a fresh one is built from `config`. Its clock is the running
    anyio loop's, so the backend must be used inside that loop. `api_key` is
    sent as Segmind's would be (the default emulator accepts any key or none).
    """
    # Imported here: a run against Segmind does not need the emulator (or starlette).
    from runner.emulator import Emulator, EmulatorTransport, create_app

    emu = emulator if emulator is not None else Emulator(config)
    app = create_app(emu)

    def utc_now() -> datetime:
        # The emulator dates its rate-limit resets on its own clock (virtual in tests).
        return datetime.fromtimestamp(emu.utc(emu.now()), UTC)

    return SegmindBackend(
        LOCAL_BASE_URL,
        api_key,
        name="local",
        transport=EmulatorTransport(app),
        media_transport=EmulatorTransport(app),
        timeouts=timeouts or Timeouts(),
        utc_now=utc_now,
    )


def open_backend(
    choice: BackendChoice,
    *,
    emulator_config: EmulatorConfig | None = None,
    timeouts: Timeouts | None = None,
) -> SegmindBackend:
    """The live backend for a choice; close it with `aclose` (or ``async with``).

    A remote Segmind root gets a URL guard (runner.backends.guard): media and
    input URLs into private networks are refused. A loopback root (the
    emulator served by `runner emulator`) does not: its media is on loopback.
    """
    if choice.kind == "local":
        return local_backend(emulator_config, timeouts=timeouts)
    return SegmindBackend(
        choice.base_url,
        choice.api_key,
        name="segmind",
        timeouts=timeouts or Timeouts(),
        url_guard=guard_for(choice.base_url),
    )
