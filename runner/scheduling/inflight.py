"""The in-flight cap: how many jobs may be submitted and not yet finished.

Its default comes from Little's law (jobs in the system = arrival rate x time
in the system): at R submits per window W and a latency L, a steady run has
R x L / W jobs in flight; a burst spends a whole window's allowance at once,
so R more. Below that the cap, not the rate, would limit the run; far above
it only piles up work the server queues. The latency is the one observed so
far, so the cap follows the server.
"""

from __future__ import annotations

import math

import anyio

_FLOOR = 2
# The API client's connection pool (httpx's default, 100 connections): jobs
# beyond it only queue inside httpx, whose queue costs O(queued x connections)
# per request. At a budget of 1,000,000 a minute a 1024 cap took 40-90 ms of
# CPU per job and failed most jobs on deadlines; 128 took 14 ms and failed
# none (benchmarks, scenario 4). Segmind's limits (5-50 a minute) stay below it.
_CEILING = 100
_UNLIMITED_RATE_DEFAULT = 64


def auto_cap(rpm: int | None, window: float, latency: float) -> int:
    """The default cap for `rpm` calls per `window` seconds and a latency in seconds."""
    if rpm is None:
        return _UNLIMITED_RATE_DEFAULT
    steady = rpm * latency / window
    return max(_FLOOR, min(_CEILING, math.ceil(steady) + rpm))


def latency_free_cap(rpm: int | None) -> int | None:
    """`auto_cap` for `rpm` when no latency can change it (the ceiling or the
    unlimited default), else None: then the caller needs the latency."""
    if rpm is None:
        return _UNLIMITED_RATE_DEFAULT
    return _CEILING if rpm >= _CEILING else None


def max_cap(rpm: int | None, max_in_flight: int | None) -> int:
    """The most jobs a run may have in flight: its fixed cap, or the largest `auto_cap`."""
    if max_in_flight is not None:
        return max(1, max_in_flight)
    return _UNLIMITED_RATE_DEFAULT if rpm is None else _CEILING


class InFlightCap:
    """A counting limit whose size may change while the run goes (auto mode)."""

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._used = 0
        self._changed: anyio.Event | None = None

    @property
    def limit(self) -> int:
        """The current cap."""
        return self._limit

    @property
    def used(self) -> int:
        """Jobs in flight now."""
        return self._used

    def resize(self, limit: int) -> None:
        """Change the cap; waiters are woken if it grew."""
        self._limit = max(1, limit)
        self._wake()

    async def acquire(self) -> None:
        """Wait for a free place and take it."""
        while self._used >= self._limit:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        self._used += 1

    def release(self) -> None:
        """Give a place back."""
        self._used -= 1
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None
