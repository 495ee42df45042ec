"""Serving the emulator on loopback with uvicorn: the `runner emulator` command and tests.

`serve_in_thread` runs uvicorn in a background thread and returns once the
socket listens (a threading.Event set from uvicorn's startup, no polling);
`main_from_args` serves in the foreground until Ctrl-C. Both bind the
socket themselves, so port 0 picks a free port that is known before the
server starts, and a busy port is an error in the caller, not a
`sys.exit` inside uvicorn.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from runner.emulator.app import create_app
from runner.emulator.config import (
    ENDPOINT_KINDS,
    FAULT_KINDS,
    LIMITERS,
    RATE_SCOPES,
    EmulatorConfig,
    FaultRate,
    Latency,
    config_kwargs_from_file,
    parse_size,
)
from runner.emulator.faults import ConnectionDropped
from runner.emulator.state import Emulator

KEY_ENV = "RUNNER_EMULATOR_KEY"
DEFAULT_PORT = 8765
_READY_TIMEOUT = 10.0  # seconds; uvicorn normally starts in well under 0.1 s


@dataclass(frozen=True, slots=True)
class Served:
    """A running loopback emulator: its base URL (no trailing slash) and its state."""

    base_url: str
    emulator: Emulator


class _DropFilter(logging.Filter):
    # A deliberate drop is not an application error: keep uvicorn's log quiet about it.
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


_DROP_FILTER = _DropFilter()


class _Server(uvicorn.Server):
    """uvicorn.Server that reports readiness once its sockets listen."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_ready()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets, and
    # without it Nagle's algorithm adds ~40 ms to every keep-alive answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _uvicorn_config(emulator: Emulator, log_level: str, log_config: Any) -> uvicorn.Config:
    config = uvicorn.Config(
        create_app(emulator, offload_encoding=True),
        http="h11",
        loop="asyncio",
        lifespan="off",
        log_level=log_level,
        log_config=log_config,
        access_log=False,
        timeout_graceful_shutdown=1,
        backlog=emulator.config.backlog,
    )
    # After Config, which may reconfigure logging; adding the same filter twice is a no-op.
    logging.getLogger("uvicorn.error").addFilter(_DROP_FILTER)
    return config


@contextlib.contextmanager
def serve_in_thread(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[Served]:
    """Serve a fresh emulator (real monotonic clock) on loopback while the block runs.

    Yields a `Served`; stops the server and joins its thread on exit.
    Raises OSError if the port cannot be bound, RuntimeError if uvicorn fails to start.
    """
    emulator = Emulator(config or EmulatorConfig(), clock=time.monotonic)
    sock = _bind(host, port)
    ready = threading.Event()
    failure: list[BaseException] = []
    server = _Server(_uvicorn_config(emulator, "warning", None), on_ready=ready.set)

    def target() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as err:  # handed to the waiting thread, which raises
            failure.append(err)
        finally:
            ready.set()

    thread = threading.Thread(target=target, name="runner-emulator", daemon=True)
    thread.start()
    try:
        if not ready.wait(_READY_TIMEOUT) or failure or not server.started:
            raise RuntimeError(f"the emulator did not start on {_base_url(sock)}") from (
                failure[0] if failure else None
            )
        yield Served(base_url=_base_url(sock), emulator=emulator)
    finally:
        server.should_exit = True
        thread.join(_READY_TIMEOUT)
        sock.close()


# -- the `runner emulator` command ------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `runner emulator` to `parser` (defaults: see docs/emulator.md)."""
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    add(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default: {DEFAULT_PORT}; 0 = any free)",
    )
    add("--config", metavar="FILE", help="JSON or YAML file of settings; options below override it")
    add(
        "--api-key",
        action="append",
        metavar="KEY",
        help="accept only this key, as x-api-key or xAI's Bearer token "
        f"(repeatable; also ${KEY_ENV}); default: accept any",
    )
    add(
        "--latency",
        metavar="DIST",
        help="job latency, nominal seconds: fixed:S, uniform:A,B or lognormal:MEDIAN,SIGMA "
        "(default: lognormal:10,0.25)",
    )
    add("--workers", type=int, help="jobs processed at once (default: 4)")
    add(
        "--time-scale",
        type=float,
        help="multiply every duration by this (default: 1; 0.01 runs a 10 s job in 0.1 s)",
    )
    add("--retention", type=float, help="seconds a result is kept, then 404 (default: 3600)")
    add("--credits", type=float, help="opening balance of each key, USD (default: 1000)")
    add("--unlimited-credits", action="store_true", default=None, help="never answer 406")
    add("--rpm", type=int, help="rate limit: calls per window per key (default: off)")
    add("--rate-window", type=float, help="rate limit window, seconds (default: 60)")
    add("--rate-scope", choices=RATE_SCOPES, help="calls counted: submit (default) or all")
    add(
        "--limiter", choices=LIMITERS, help="fixed (default, resets on the minute), sliding, bucket"
    )
    add("--burst", type=int, help="token bucket capacity (default: 2)")
    add(
        "--retry-after",
        action="store_true",
        default=None,
        dest="retry_after_header",
        help="send Retry-After on 429 (Segmind does not)",
    )
    add(
        "--block",
        action="append",
        metavar="REGEX",
        help="prompts matching this end FAILED (repeatable; default: \\bblocked\\b, \\bnsfw\\b)",
    )
    add(
        "--size",
        action="append",
        metavar="RATIO@RES=WxH",
        help="override an output size, e.g. 16:9@2k=2816x1536 (repeatable)",
    )
    add("--seed", type=int, help="seed of latencies, ids and faults (default: 0)")
    add(
        "--fault",
        action="append",
        metavar="ENDPOINT:FAULT=RATE",
        help=f"inject a fault (repeatable); endpoints: {', '.join(ENDPOINT_KINDS[:-1])}; "
        f"faults: {', '.join(FAULT_KINDS)}",
    )
    add("--burst-429", type=int, help="length of an injected run of 429s (default: 3)")
    add("--slow-delay", type=float, help="delay of a slow answer, seconds (default: 5)")
    add("--public-base-url", help="base of the absolute URLs in answers (default: as requested)")
    add("--log-level", default="warning", help="uvicorn log level (default: warning)")
    add(
        "--log",
        metavar="FILE",
        type=Path,
        help="append every request to FILE as a JSON line (time, method, path, status, the "
        "key's fingerprint, never the key); docs/emulator.md",
    )


def config_from_args(
    args: argparse.Namespace, environ: dict[str, str] | None = None
) -> EmulatorConfig:
    """The EmulatorConfig the options ask for (file, then options). Raises ValueError."""
    env = os.environ if environ is None else environ
    kwargs: dict[str, Any] = {}
    if args.config:
        kwargs.update(config_kwargs_from_file(args.config, _read_config_file(args.config)))
    keys = list(args.api_key or [])
    if env.get(KEY_ENV):
        keys.append(env[KEY_ENV])
    if keys:
        kwargs["api_keys"] = frozenset(keys)
    if args.latency is not None:
        kwargs["latency"] = Latency.parse(args.latency)
    if args.block:
        kwargs["block_patterns"] = tuple(args.block)
    if args.size:
        kwargs["sizes"] = dict(parse_size(s) for s in args.size)
    if args.fault:
        kwargs["faults"] = tuple(FaultRate.parse(f) for f in args.fault)
    for name in (
        "workers",
        "time_scale",
        "retention",
        "credits",
        "unlimited_credits",
        "rpm",
        "rate_window",
        "rate_scope",
        "limiter",
        "burst",
        "retry_after_header",
        "seed",
        "burst_429",
        "slow_delay",
        "public_base_url",
    ):
        value = getattr(args, name, None)
        if value is not None:
            kwargs[name] = value
    return EmulatorConfig(**kwargs)


def _read_config_file(path: str) -> object:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"{path}: cannot read the config file ({err.strerror})") from None
    try:
        if path.endswith(".json"):
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not valid JSON/YAML ({err})") from None


def main_from_args(args: argparse.Namespace) -> int:
    """Serve on loopback until Ctrl-C; print the base URL on stdout once listening. Exit code."""
    try:
        config = config_from_args(args)
    except ValueError as err:
        print(f"runner emulator: {err}", file=sys.stderr)
        return 2
    try:
        sock = _bind(args.host, args.port)
    except OSError as err:
        print(
            f"runner emulator: cannot listen on {args.host}:{args.port} ({err.strerror}); "
            "choose another --port (0 picks a free one)",
            file=sys.stderr,
        )
        return 2
    emulator = Emulator(config, clock=time.monotonic)
    with contextlib.ExitStack() as stack:
        if args.log is not None:
            try:
                log = stack.enter_context(args.log.open("a", encoding="utf-8"))
            except OSError as err:
                sock.close()
                print(f"runner emulator: cannot write {args.log} ({err.strerror})", file=sys.stderr)
                return 2
            emulator.log.write_to(log)
        base_url = _base_url(sock)
        server = _Server(
            _uvicorn_config(emulator, args.log_level, uvicorn.config.LOGGING_CONFIG),
            on_ready=lambda: print(base_url, flush=True),
        )
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            pass
        finally:
            emulator.log.write_to(None)
            sock.close()
    return 0
