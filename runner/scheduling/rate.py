"""The rate gate: never more than the budget's R calls in any window.

Two models, chosen by the budget:

- ``window`` (default): a sliding-window log. A call is admitted when fewer
  than R calls were admitted in the last ``window + margin`` seconds. It may
  spend a whole window's allowance at once when jobs wait: windowed server
  limits (fixed or sliding) allow that, and a batch of N <= R then finishes in
  about one job's latency instead of N x 60/R. A token bucket of capacity R
  would be wrong here: a full bucket plus a window's refill admits 2R-1 calls
  in the first window.
- ``smooth``: GCRA with a burst of 1 (Generic Cell Rate Algorithm, ITU-T
  I.371; the form used by aiometer and redis-cell): one call every
  ``(window + margin) / R`` seconds, for servers that forbid bursts. The
  sliding log is kept too, so a window never holds more than R. The
  interval counts from the later of the previous call's admission and its
  end, and a call waits for the one before it to end: work between an
  admission and its send (the ledger's fsynced `submitting`) cannot bring
  two calls closer than the interval at the server.

The margin is time, not a request: every admitted call is remembered for
``window + margin`` seconds, so that network jitter between our clock and
the server's cannot put R + 1 of our calls into one of its windows. A margin
of one request would cost 1/R of the throughput (10 % at R = 10); a margin of
one second costs 1/60.

On a 429 the gate pauses every caller until the server's reset time, cuts
its effective limit in half (multiplicative decrease) and creeps back by a
quarter of the budget for each window that passes without another 429.

Callers with a higher priority go first (result > status > submit when the
budget counts all calls), so jobs already paid for are finished before new
ones start. Time comes only from anyio, so tests run on a virtual clock.

The scheduler sees a gate through the `RateLimit` protocol, so a gate whose
log lives in Redis and counts the calls of several workers
(runner.coordination) plugs in where `RateGate` does.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import anyio

RateModel = Literal["window", "smooth"]

# Priorities when the budget counts every call: finishing paid work first.
PRIORITY_RESULT = 3
PRIORITY_DOWNLOAD = 3
PRIORITY_STATUS = 2
PRIORITY_SUBMIT = 1

# The 429 back-off, one source for the local gate and the shared one (whose
# Lua script gets them as arguments): each 429 burst multiplies the limit by
# CUT, never below MIN_FACTOR of it; each quiet window adds CREEP back.
CUT: Final = 0.5
MIN_FACTOR: Final = 0.125
CREEP: Final = 0.25


class RateLimit(Protocol):
    """What the scheduler needs of a rate gate."""

    async def acquire(self, priority: int = 0) -> None:
        """Wait until a call of this priority may be made, and count it."""

    def finished(self) -> None:
        """The call this task was last admitted for has ended (answered, failed or not sent)."""

    def rate_limited(self, retry_after: float | None) -> None:
        """The server answered 429 (`retry_after`: its hint in seconds): pause and slow down."""


@dataclass(frozen=True, slots=True)
class RateStats:
    """A snapshot of the gate. Times are anyio clock seconds."""

    admitted: int
    limit: int
    effective_limit: int
    paused_until: float
    rate_limited: int
    waiting: int


def _after(t: float, span: float) -> float:
    """The first float time at least `span` after `t` (t + span may round down)."""
    ready = t + span
    while ready - t < span:
        ready = math.nextafter(ready, math.inf)
    return ready


class RateGate:
    """At most `limit` admissions in any `window` seconds (see the module docstring).

    `limit=None` admits everything at once (no budget). `margin` is in seconds.
    """

    def __init__(
        self,
        limit: int | None,
        window: float = 60.0,
        *,
        margin: float = 1.0,
        model: RateModel = "window",
        clock: Callable[[], float] = anyio.current_time,
        history: Iterable[float] = (),
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        """`history`: how many seconds ago each call of an earlier run ended (so a
        restarted run does not start with an empty window); `on_finished` is
        told of each call that ends, to record it for the next run.
        """
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        self._history = sorted(history, reverse=True)
        self._on_finished = on_finished
        self._limit = limit
        self._span = window + margin
        self._window = window
        self._model = model
        self._clock = clock
        self._log: deque[float] = deque()
        self._heap: list[tuple[int, int]] = []
        self._seq = itertools.count()
        # Created on first use: an anyio Event needs a running event loop.
        self._changed: anyio.Event | None = None
        self._paused_until = -math.inf
        self._factor = 1.0
        self._last_change = -math.inf
        self._last_admit = -math.inf
        self._admitted = 0
        self._rate_limited = 0
        # Calls admitted and not yet finished: they count as happening "now"
        # until they end, and then from their end, which is never before the
        # server saw them (a late send cannot spill into the next window).
        self._in_flight = 0

    @property
    def effective_limit(self) -> int | None:
        """The limit after 429 cuts; None when unlimited."""
        if self._limit is None:
            return None
        return max(1, math.floor(self._limit * self._factor))

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _wait_event(self) -> anyio.Event:
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    def _creep(self, now: float) -> None:
        if self._factor < 1.0 and now - self._last_change >= self._window:
            quiet_windows = math.floor((now - self._last_change) / self._window)
            self._factor = min(1.0, self._factor + CREEP * quiet_windows)
            self._last_change = now

    def next_slot(self, now: float) -> float:
        """The earliest clock time at which one more call may be admitted."""
        if self._history:
            # Seeded on first use: the clock needs a running event loop.
            self._log.extendleft(reversed([now - age for age in self._history]))
            self._history = []
        ready = max(now, self._paused_until)
        limit = self.effective_limit
        if limit is None:
            return ready
        while self._log and self._log[0] <= now - self._span:
            self._log.popleft()
        room = limit - self._in_flight
        if room <= 0:
            return math.inf  # wait for a call to finish
        if len(self._log) >= room:
            ready = max(ready, _after(self._log[-room], self._span))
        if self._model == "smooth":
            if self._in_flight > 0:
                return math.inf  # burst 1: wait for the call before to end
            ready = max(ready, _after(self._last_admit, self._span / limit))
        return ready

    async def acquire(self, priority: int = 0) -> None:
        """Wait until a call of this priority may be made, and count it."""
        entry = (-priority, next(self._seq))
        heapq.heappush(self._heap, entry)
        try:
            while True:
                now = self._clock()
                self._creep(now)
                delay = math.inf
                if self._heap[0] == entry:
                    ready = self.next_slot(now)
                    if ready <= now:
                        heapq.heappop(self._heap)
                        self._admit(now)
                        return
                    delay = ready - now
                changed = self._wait_event()
                with anyio.move_on_after(delay):
                    await changed.wait()
        except BaseException:
            if entry in self._heap:
                self._heap.remove(entry)
                heapq.heapify(self._heap)
                self._notify()
            raise

    def _admit(self, now: float) -> None:
        self._in_flight += 1
        self._last_admit = now
        self._admitted += 1
        self._notify()

    def finished(self) -> None:
        """A call admitted earlier has ended (answered, failed, or not sent after all).

        From now on it counts from this moment, for `window + margin`.
        """
        if self._in_flight > 0:
            self._in_flight -= 1
            now = self._clock()
            self._log.append(now)
            if self._model == "smooth":
                self._last_admit = max(self._last_admit, now)
            if self._on_finished is not None:
                self._on_finished()
            self._notify()

    def rate_limited(self, retry_after: float | None) -> None:
        """The server answered 429: pause everyone and cut the rate.

        `retry_after` is the server's hint in seconds; without one the pause
        is a slot's length at the budget's rate.
        """
        now = self._clock()
        self._rate_limited += 1
        if retry_after is None:
            retry_after = self._span / (self._limit or 60)
        self._paused_until = max(self._paused_until, now + retry_after)
        # One cut per window: a burst of 429s answering calls already in
        # flight is one signal, not many.
        if now - self._last_change >= self._window or self._factor == 1.0:
            self._factor = max(MIN_FACTOR, self._factor * CUT)
            self._last_change = now
        self._notify()

    def stats(self) -> RateStats:
        """A frozen snapshot."""
        return RateStats(
            admitted=self._admitted,
            limit=self._limit or 0,
            effective_limit=self.effective_limit or 0,
            paused_until=self._paused_until,
            rate_limited=self._rate_limited,
            waiting=len(self._heap),
        )
