"""A hostile Segmind: the emulator on loopback, with scripted answers in place of some of its own.

`Hostile` is an ASGI app in front of the emulator's. A test queues `Rule`s:
each matches one endpoint kind (and optionally a path test) for its next
`times` calls and answers instead of the emulator, usually by asking the
emulator first (`Exchange.inner`) and then damaging its answer: strip a
field, swap a body, stall, trickle. Calls that no rule takes go to the
emulator untouched. Every call is logged with its arrival time (monotonic
seconds) so a test can check *when* the runner came back.

`serve_hostile` serves it with uvicorn in a thread, like
`runner.emulator.serve_in_thread`, on the real clock: the runner under test
talks to it over real sockets, with real timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import Message, Receive, Scope, Send

from runner.emulator import Emulator, EmulatorConfig, create_app
from runner.manifest import Manifest, parse_manifest
from runner.run import RunOptions, RunReport, run_manifest
from runner.store import JobRow, Ledger

Answer = Callable[["Exchange"], Awaitable[None]]

_KINDS = (
    ("status", "GET", re.compile(r"^/v2/requests/[^/]+/status$")),
    ("result", "GET", re.compile(r"^/v2/requests/[^/]+$")),
    ("media", "GET", re.compile(r"^/media/")),
    ("credits", "GET", re.compile(r"^/v1/get-user-credits$")),
    ("submit", "POST", re.compile(r"^/v2/[^/]+$")),
    ("sync", "POST", re.compile(r"^/v1/[^/]+$")),
)


def kind_of(method: str, path: str) -> str:
    """The endpoint kind of a call, as the emulator names them ("other" for the rest)."""
    for kind, verb, pattern in _KINDS:
        if method == verb and pattern.match(path):
            return kind
    return "other"


@dataclass(slots=True)
class Rule:
    """Answer the next `times` calls of `kind` (whose path passes `path`) with `answer`."""

    kind: str
    answer: Answer
    times: int = 1
    path: Callable[[str], bool] = lambda _: True


@dataclass(frozen=True, slots=True)
class Logged:
    """One call: arrival time (monotonic and wall-clock s), method, path, kind, and
    whether a rule took it."""

    at: float
    wall: float
    method: str
    path: str
    kind: str
    ruled: bool


@dataclass(slots=True)
class Exchange:
    """One call being answered by a rule: what came in and how to answer."""

    hostile: Hostile
    scope: Scope
    receive: Receive
    send: Send
    body: bytes = b""

    @property
    def path(self) -> str:
        """The request's path."""
        return str(self.scope["path"])

    @property
    def base(self) -> str:
        """``http://host:port`` of this server, as the client addressed it."""
        headers = dict(self.scope["headers"])
        return f"http://{headers[b'host'].decode()}"

    async def inner(self) -> tuple[int, dict[str, str], bytes]:
        """The emulator's own answer to this call: (status, headers, body)."""
        messages: list[Message] = []
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            return await self.receive()

        async def keep(message: Message) -> None:
            messages.append(message)

        await self.hostile.inner(self.scope, replay, keep)
        start = next(m for m in messages if m["type"] == "http.response.start")
        headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        return int(start["status"]), headers, body

    async def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Send a whole answer; `content-length` is set from `body` unless given."""
        given = {k.lower(): v for k, v in (headers or {}).items()}
        given.setdefault("content-length", str(len(body)))
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in given.items()],
            }
        )
        await self.send({"type": "http.response.body", "body": body})

    async def answer_json(
        self, status: int, doc: object, headers: dict[str, str] | None = None
    ) -> None:
        """Send a JSON answer."""
        extra = {"content-type": "application/json", **(headers or {})}
        await self.answer(status, json.dumps(doc).encode(), extra)

    async def trickle(
        self, status: int, headers: dict[str, str], every: float, most: float
    ) -> None:
        """Headers now, then one byte every `every` s for at most `most` s (a slow loris);
        stops as soon as the client hangs up."""
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        hung_up = asyncio.ensure_future(self.receive())
        stop = time.monotonic() + most
        try:
            with contextlib.suppress(Exception):  # the client hung up: that is the point
                while time.monotonic() < stop and not hung_up.done():
                    await asyncio.wait({hung_up}, timeout=every)
                    if not hung_up.done():
                        await self.send(
                            {"type": "http.response.body", "body": b" ", "more_body": True}
                        )
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            hung_up.cancel()

    async def until_hung_up(self, most: float) -> None:
        """Answer nothing at all, until the client hangs up (or `most` s pass)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.receive(), timeout=most)


class Hostile:
    """The ASGI app: scripted rules first, then the emulator (see the module docstring)."""

    def __init__(self, emulator: Emulator, *, offload: bool = True) -> None:
        # In-process (a virtual clock) images are encoded inline, on loopback in a thread.
        self.emulator = emulator
        self.inner = create_app(emulator, offload_encoding=offload)
        self.rules: list[Rule] = []
        self.log: list[Logged] = []
        self._lock = threading.Lock()

    def add(self, kind: str, answer: Answer, *, times: int = 1, path: str | None = None) -> None:
        """Queue a rule (rules are tried in the order they were added)."""
        test: Callable[[str], bool] = (lambda p: path in p) if path else (lambda _: True)
        with self._lock:
            self.rules.append(Rule(kind, answer, times, test))

    def calls(self, kind: str | None = None) -> list[Logged]:
        """The logged calls, optionally of one kind."""
        with self._lock:
            return [c for c in self.log if kind is None or c.kind == kind]

    def _take(self, kind: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.times > 0 and rule.kind == kind and rule.path(path):
                    rule.times -= 1
                    return rule
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        method, path = str(scope["method"]), str(scope["path"])
        kind = kind_of(method, path)
        rule = self._take(kind, path)
        with self._lock:
            self.log.append(
                Logged(time.monotonic(), time.time(), method, path, kind, rule is not None)
            )
        if rule is None:
            await self.inner(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await rule.answer(Exchange(self, scope, receive, send, body))


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready.set()


@dataclass(frozen=True, slots=True)
class ServedHostile:
    """A running hostile server: its base URL and its app (rules, log, emulator)."""

    base_url: str
    app: Hostile
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def serve_hostile(
    config: EmulatorConfig, host: str = "127.0.0.1", *, shown_host: str | None = None
) -> Iterator[ServedHostile]:
    """Serve a fresh emulator behind `Hostile` on `host` (a free port) while the block runs.

    `shown_host` is the host of the base URL (e.g. a LAN address when `host` is 0.0.0.0).
    """
    app = Hostile(Emulator(config, clock=time.monotonic))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    ready = threading.Event()
    server = _Server(
        uvicorn.Config(
            app,
            http="h11",
            loop="asyncio",
            lifespan="off",
            log_level="critical",
            access_log=False,
            timeout_graceful_shutdown=1,
        ),
        ready,
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if not ready.wait(10):
            raise RuntimeError("the hostile server did not start")
        port = sock.getsockname()[1]
        yield ServedHostile(base_url=f"http://{shown_host or host}:{port}", app=app)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# -- running the runner against it -------------------------------------------------------

SCALE = 0.005  # a "10 s" job takes 50 ms; deadlines stay at their 5 s floor
KEY = "sk-hostile-0001"
THINGS = ("fox", "owl", "cat", "elk")  # jobs 0, 1, ... of a manifest


def hostile_manifest(
    tmp_path: Path, things: tuple[str, ...] = THINGS[:2], *, image: str | None = None
) -> Manifest:
    """A manifest of one 1k PNG job per thing (an edit of `image` when given)."""
    listed = ", ".join(things)
    edit = f"    image: {image}\n" if image else ""
    text = f"""name: hostile
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: png}}
prompts:
  - id: p
    prompt: "a picture of a {{thing}}"
    vars: {{thing: [{listed}]}}
{edit}budget: {{requests_per_minute: 50}}
output: {{dir: {tmp_path / "out"}}}
"""
    return parse_manifest(text, path=str(tmp_path / "m.yaml"), base_dir=tmp_path)


async def run_hostile(
    served: ServedHostile, tmp_path: Path, manifest: Manifest | None = None, **options: Any
) -> tuple[RunReport, dict[str, JobRow]]:
    """`run_manifest` against `served` (backend segmind, key KEY); the report and the
    ledger's rows by thing."""
    opts = RunOptions(
        backend="segmind",
        base_url=served.base_url,
        out=tmp_path / "out",
        time_scale=SCALE,
        seed=7,
        **options,
    )
    report = await run_manifest(
        manifest or hostile_manifest(tmp_path), opts, env={"SEGMIND_API_KEY": KEY}
    )
    with Ledger.open_readonly(tmp_path / "out") as ledger:
        rows = list(ledger.rows())
    return report, {THINGS[row.idx]: row for row in rows}
