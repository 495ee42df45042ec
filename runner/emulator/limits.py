"""Server-side rate limiters, one instance per API key.

Each limiter answers `acquire(now)` with None (the call is admitted and
counted) or the UTC second at which a call would next be admitted (the call
is refused and *not* counted: a guess, Segmind does not say). Times are UTC
seconds, so fixed windows can reset on the minute as the
``x-rate-limit-reset-at-utc`` header suggests Segmind's do.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

from runner.emulator.config import LimiterKind


class Limiter(Protocol):
    """Admit or refuse one call at `now` (UTC seconds)."""

    def acquire(self, now: float) -> float | None: ...


class FixedWindow:
    """At most `limit` calls per window; windows are aligned to multiples of `window` in UTC."""

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._index = -1
        self._count = 0

    def acquire(self, now: float) -> float | None:
        # The epsilon absorbs float error at large UTC values, so a call exactly on a
        # boundary opens the new window.
        index = math.floor(now / self._window + 1e-6)
        if index != self._index:
            self._index, self._count = index, 0
        if self._count >= self._limit:
            return (index + 1) * self._window
        self._count += 1
        return None


class SlidingLog:
    """At most `limit` calls in any interval of length `window` (a log of admitted calls)."""

    def __init__(self, limit: int, window: float) -> None:
        self._limit = limit
        self._window = window
        self._log: deque[float] = deque()

    def acquire(self, now: float) -> float | None:
        while self._log and self._log[0] <= now - self._window:
            self._log.popleft()
        if len(self._log) >= self._limit:
            return self._log[0] + self._window
        self._log.append(now)
        return None


class TokenBucket:
    """A smooth limit: `limit` tokens per `window`, refilled continuously, at most `burst` held."""

    def __init__(self, limit: int, window: float, burst: int) -> None:
        self._rate = limit / window
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._last: float | None = None

    def acquire(self, now: float) -> float | None:
        if self._last is not None:
            elapsed = max(0.0, now - self._last)
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return now + (1.0 - self._tokens) / self._rate


def make_limiter(kind: LimiterKind, limit: int, window: float, burst: int) -> Limiter:
    """A fresh limiter of `kind`: `limit` calls per `window` seconds (`burst` for the bucket)."""
    if kind == "fixed":
        return FixedWindow(limit, window)
    if kind == "sliding":
        return SlidingLog(limit, window)
    return TokenBucket(limit, window, burst)
