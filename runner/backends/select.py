"""Choosing the backend: ``--backend auto|segmind|xai|local``, the provider, base URL, key.

`choose_backend` is pure: it reads the arguments, the provider (runner.providers:
``segmind`` or ``xai``, from ``--provider`` or the manifest's ``api.provider``)
and an environment mapping, and returns a `BackendChoice` (or raises
UsageError). `open_backend` turns a choice into a live backend of that
provider (`BACKENDS`); `local_backend` builds the in-process emulator behind
the same client, so a local run exercises the real HTTP code of either
provider. Each provider's key and root come from its own variables
(SEGMIND_API_KEY / SEGMIND_BASE_URL, XAI_API_KEY / XAI_BASE_URL).
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
from runner.backends.xai import XaiBackend
from runner.errors import UsageError
from runner.providers import DEFAULT_PROVIDER, PROVIDERS, SEGMIND, Provider

if TYPE_CHECKING:
    from runner.emulator import Emulator, EmulatorConfig

BackendKind = Literal["segmind", "xai", "local"]
Choice = Literal["auto", "segmind", "xai", "local"]
CHOICES: Final = ("auto", *PROVIDERS, "local")

DEFAULT_BASE_URL: Final = SEGMIND.default_base_url
LOCAL_BASE_URL: Final = "http://emulator.local"
KEY_ENV: Final = SEGMIND.key_env
BASE_URL_ENV: Final = SEGMIND.base_url_env

# The class that speaks each provider's wire; both share one HTTP layer.
BACKENDS: Final[Mapping[str, type[SegmindBackend]]] = {"segmind": SegmindBackend, "xai": XaiBackend}
# The embedded emulator's root per provider: distinct, so that an output
# folder (which records its root) never mixes two providers' emulated images.
LOCAL_BASE_URLS: Final[Mapping[str, str]] = {
    "segmind": LOCAL_BASE_URL,
    "xai": "http://xai.emulator.local",
}

AUTO_LOCAL_NOTICE: Final = (
    "SEGMIND_API_KEY is not set: running on the embedded emulator (no credits spent). "
    "Set it, or pass --backend segmind, to call Segmind."
)


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """Which backend a run uses, at which API root, and a one-line notice for the user.

    `api_key` is kept out of repr so a logged or printed choice never shows it.
    `base_url_source` names where `base_url` came from, for messages;
    `provider` which host's protocol is spoken (the emulator speaks both).
    """

    kind: BackendKind
    base_url: str
    notice: str | None = None
    base_url_source: str = "default"
    api_key: str | None = field(default=None, repr=False, compare=False)
    provider: str = DEFAULT_PROVIDER


def _provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise UsageError(
            f"provider {name!r}: use {' or '.join(PROVIDERS)} (--provider or api.provider)"
        ) from None


def _key_from(env: Mapping[str, str], provider: Provider = SEGMIND) -> str | None:
    key = env.get(provider.key_env, "").strip()
    if not key:
        return None
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise UsageError(
            f"{provider.key_env} contains spaces or control characters; set it to the key alone "
            f"(copy it again from {provider.console})"
        )
    return key


def resolve_base_url(
    base_url_arg: str | None,
    manifest_base_url: str | None,
    env: Mapping[str, str],
    provider: str = DEFAULT_PROVIDER,
) -> tuple[str, str]:
    """(API root, where it came from): --base-url > <PROVIDER>_BASE_URL > manifest > default."""
    host = _provider(provider)
    for value, source in (
        (base_url_arg, "--base-url"),
        (env.get(host.base_url_env), host.base_url_env),
        (manifest_base_url, "manifest api.base_url"),
    ):
        if value is not None and value.strip():
            return normalize_base_url(value, source=source), source
    return host.default_base_url, "default"


def _auto_local_notice(host: Provider, env: Mapping[str, str]) -> str:
    if host is SEGMIND:
        notice = AUTO_LOCAL_NOTICE
    else:
        notice = (
            f"{host.key_env} is not set: running on the embedded emulator of {host.title}'s API "
            f"(no credits spent). Set it, or pass --backend {host.name}, to call {host.title}."
        )
    others = [p for p in PROVIDERS.values() if p is not host and env.get(p.key_env, "").strip()]
    for other in others:
        notice += f" ({other.key_env} is set: pass --provider {other.name} to use it.)"
    return notice


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
    provider: str = DEFAULT_PROVIDER,
) -> BackendChoice:
    """The backend a run uses. Pure: `env` stands for os.environ.

    `provider` (``segmind`` or ``xai``) names whose API is called. ``auto`` is
    that provider when its key variable (SEGMIND_API_KEY, XAI_API_KEY) is
    set, else the embedded emulator of its API with a notice (which names
    another provider's key when that one is set); ``segmind`` / ``xai`` need
    their key and must match the provider; ``local`` is the embedded emulator
    whatever the key. Raises UsageError for an unknown choice or provider, a
    mismatch, or a bad base URL (naming where it came from).
    """
    if choice not in CHOICES:
        raise UsageError(f"--backend {choice!r}: use {', '.join(CHOICES[:-1])} or {CHOICES[-1]}")
    host = _provider(provider)
    if choice in PROVIDERS and choice != host.name:
        raise UsageError(
            f"--backend {choice} with provider {host.name}: pass --provider {choice} "
            f"(or --backend {host.name}, or set api.provider in the manifest)"
        )
    key = _key_from(env, host)
    if choice == "local" or (choice == "auto" and key is None):
        notice = _auto_local_notice(host, env) if choice == "auto" else None
        if base_url_arg is not None and base_url_arg.strip():
            ignored = "--base-url is ignored by the embedded emulator."
            notice = f"{notice} {ignored}" if notice else ignored
        return BackendChoice(
            kind="local",
            base_url=LOCAL_BASE_URLS[host.name],
            notice=notice,
            base_url_source="local",
            provider=host.name,
        )
    if key is None:
        raise UsageError(
            f"--backend {host.name} needs an API key: set {host.key_env} "
            "(or use --backend local to run on the embedded emulator)"
        )
    base_url, source = resolve_base_url(base_url_arg, manifest_base_url, env, host.name)
    return BackendChoice(
        kind=host.name,
        base_url=base_url,
        notice=_plain_http_notice(base_url),
        base_url_source=source,
        api_key=key,
        provider=host.name,
    )


def local_backend(
    config: EmulatorConfig | None = None,
    *,
    emulator: Emulator | None = None,
    api_key: str | None = None,
    timeouts: Timeouts | None = None,
    provider: str = DEFAULT_PROVIDER,
    connections: int | None = None,
) -> SegmindBackend:
    """The `provider`'s backend, named "local", on an in-process emulator.

    Its root is ``LOCAL_BASE_URLS[provider]`` (``http://emulator.local`` for
    Segmind). Pass `emulator` to share one whose state a caller (a test)
    inspects; otherwise a fresh one is built from `config`. Its clock is the
    running anyio loop's, so the backend must be used inside that loop.
    `api_key` is sent as the provider's would be (the default emulator
    accepts any key or none). `connections` caps each connection pool
    (SegmindBackend).
    """
    host = _provider(provider)
    # Imported here: a run against Segmind does not need the emulator (or starlette).
    from runner.emulator import Emulator, EmulatorTransport, create_app

    emu = emulator if emulator is not None else Emulator(config)
    app = create_app(emu)

    def utc_now() -> datetime:
        # The emulator dates its rate-limit resets on its own clock (virtual in tests).
        return datetime.fromtimestamp(emu.utc(emu.now()), UTC)

    return BACKENDS[host.name](
        LOCAL_BASE_URLS[host.name],
        api_key,
        name="local",
        transport=EmulatorTransport(app),
        media_transport=EmulatorTransport(app),
        timeouts=timeouts or Timeouts(),
        utc_now=utc_now,
        connections=connections,
        # The emulator answers a job in progress on its result endpoint (unless
        # told not to): one call a poll.
        poll_via="result" if emu.config.result_in_progress else "status",
    )


def open_backend(
    choice: BackendChoice,
    *,
    emulator_config: EmulatorConfig | None = None,
    timeouts: Timeouts | None = None,
    connections: int | None = None,
) -> SegmindBackend:
    """The live backend for a choice; close it with `aclose` (or ``async with``).

    `connections` caps each of its connection pools (the run's in-flight cap).

    A remote Segmind root gets a URL guard (runner.backends.guard): media and
    input URLs into private networks are refused. A loopback root (the
    emulator served by `runner emulator`) does not: its media is on loopback.
    """
    if choice.kind == "local":
        return local_backend(
            emulator_config, timeouts=timeouts, provider=choice.provider, connections=connections
        )
    return BACKENDS[choice.provider](
        choice.base_url,
        choice.api_key,
        name=choice.kind,
        timeouts=timeouts or Timeouts(),
        url_guard=guard_for(choice.base_url),
        connections=connections,
    )
