"""The connection to Redis: a small async face over redis-py's blocking client.

redis-py's own asyncio client does not run under trio, and the runner's
core must run on any anyio backend, so each call runs the blocking client
in a worker thread (`anyio.to_thread`), a few at a time. The calls are
few (a handful per job, at most tens of jobs per minute), so a thread hop
costs nothing that matters.

Failures: connection errors and timeouts are retried by redis-py (a short
exponential backoff) and then raise `Unreachable`. From that moment the
link is *lost*: every later call fails at once with the first reason, and
the parts built on it (gate, guard, claims) degrade as docs/distributed.md
says instead of waiting on timeouts one call after another. `Unreachable`
never leaves runner.coordination; at start-up the same failure is a
UsageError (exit 2) naming the URL (without its password) and the fix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import anyio.to_thread

from runner.coordination.identity import check_url
from runner.errors import UsageError
from runner.redact import redact_url

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

T = TypeVar("T")

MIN_VERSION: Final = (6, 2, 0)  # XAUTOCLAIM, XPENDING ... IDLE, effect replication
CONNECT_TIMEOUT_S: Final = 3.0
CALL_TIMEOUT_S: Final = 5.0
BLOCK_MAX_S: Final = 15.0
"""The longest a read waits on Redis for a job (a blocked XREADGROUP), seconds."""
_THREADS: Final = 4

ScriptArg = str | int | float


class Unreachable(Exception):
    """Internal to runner.coordination: Redis cannot be reached or refused a call."""


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise UsageError(
            "--coordinator needs the redis package: pip install 'redis>=5,<9' "
            "(it is installed with runner's dev extras)"
        ) from None
    return redis


class RedisLink:
    """One worker's connection to the coordinator (see the module docstring)."""

    def __init__(self, client: redis.Redis, url: str) -> None:
        self._client = client
        self._url = url
        self._blocking: redis.Redis | None = None
        self.url = redact_url(url)
        self._scripts: dict[str, Script] = {}
        self._limiter = anyio.CapacityLimiter(_THREADS)
        self._lost: str | None = None
        self._on_lost: list[Callable[[str], None]] = []

    @classmethod
    def connect(cls, url: str) -> RedisLink:
        """Connect and check the server (PING, version). Blocking; call it off the event loop.

        Raises UsageError (exit 2) when Redis cannot be reached or is too old.
        """
        check_url(url)
        redis = _import_redis()
        shown = redact_url(url)
        try:
            client = _client(url, CALL_TIMEOUT_S)
        except ValueError as err:
            raise UsageError(f"--coordinator {shown!r}: {err}") from None
        try:
            client.ping()
            version = str(client.info("server").get("redis_version", "0"))
        except redis.RedisError as err:
            client.close()
            raise UsageError(
                f"cannot reach the coordinator at {shown} ({_reason(err)}): start Redis there, "
                "or fix --coordinator (or coordinator.url in the manifest)"
            ) from None
        if _version(version) < MIN_VERSION:
            client.close()
            wanted = ".".join(map(str, MIN_VERSION))
            raise UsageError(
                f"the coordinator at {shown} runs Redis {version}; runner needs {wanted} or newer"
            )
        return cls(client, url)

    @property
    def lost(self) -> str | None:
        """Why the link was lost (a sentence naming the URL), or None while it works."""
        return self._lost

    def on_lost(self, callback: Callable[[str], None]) -> None:
        """Call `callback(reason)` once, from the event loop, when the link is lost."""
        self._on_lost.append(callback)

    def lose(self, reason: str) -> None:
        """Mark the link lost (the first reason wins) and tell the listeners."""
        if self._lost is not None:
            return
        self._lost = reason
        for callback in self._on_lost:
            callback(reason)

    def _script(self, text: str) -> Script:
        script = self._scripts.get(text)
        if script is None:
            # register_script sends EVALSHA and loads the text again after a
            # NOSCRIPT (a restarted Redis), so scripts survive a restart.
            script = self._scripts[text] = self._client.register_script(text)
        return script

    async def run(self, fn: Callable[[], T], *, blocking: bool = False) -> T:
        """Run a blocking call on the client in a worker thread; Unreachable on failure.

        `blocking`: `fn` waits on Redis (a read with BLOCK, on `blocking`'s
        connections); a cancelled run does not wait for it to return.
        """
        if self._lost is not None:
            raise Unreachable(self._lost)
        redis = _import_redis()
        try:
            return await anyio.to_thread.run_sync(
                fn, limiter=self._limiter, abandon_on_cancel=blocking
            )
        except (redis.ConnectionError, redis.TimeoutError) as err:
            reason = f"lost the coordinator at {self.url} ({_reason(err)})"
            self.lose(reason)
            raise Unreachable(reason) from None
        except redis.RedisError as err:
            # A refused command (OOM, READONLY replica, a bug in a script):
            # the shared state can no longer be trusted to change.
            reason = f"the coordinator at {self.url} refused a call ({_reason(err)})"
            self.lose(reason)
            raise Unreachable(reason) from None

    async def script(self, text: str, keys: Sequence[str], args: Sequence[ScriptArg]) -> Any:
        """Run one of scripts.py's scripts atomically; its reply (text decoded)."""
        script = self._script(text)
        return await self.run(functools.partial(script, keys=list(keys), args=list(args)))

    @property
    def client(self) -> redis.Redis:
        """The blocking client, for plain reads inside `run` (status)."""
        return self._client

    @property
    def blocking(self) -> redis.Redis:
        """A client for reads that wait on Redis (XREADGROUP BLOCK, at most BLOCK_MAX_S).

        Its own connections, with a timeout past the longest wait, so a
        blocked read neither times out early nor hangs on a Redis gone silent.
        """
        if self._blocking is None:
            self._blocking = _client(self._url, BLOCK_MAX_S + CALL_TIMEOUT_S)
        return self._blocking

    def close(self) -> None:
        """Close the connections (blocking, quick)."""
        self._client.close()
        if self._blocking is not None:
            self._blocking.close()


def _client(url: str, timeout: float) -> redis.Redis:
    """redis-py's client of `url`: text replies, short retries, `timeout` seconds per call."""
    module = _import_redis()
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    client: redis.Redis = module.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 3),
    )
    return client


def _reason(err: BaseException) -> str:
    # redis-py messages name host and port, never the password; keep them short.
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)
