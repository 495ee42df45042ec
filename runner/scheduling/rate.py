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

Two sliding-window constraints are checked together, and a call goes only
when both have room:

- **the declared cap**: never more than the declared R calls in any
  ``window + margin`` (the manifest's minute). It counts every call sent,
  refused or not: it is a promise about what this run sends, so injected or
  misleading 429 hints can never push a declared minute above R.
- **the learned constraint**: a `QuotaLearner` (quota.py) holds the run's
  belief about the server's real limit, (quota, window), and the gate tells
  it of each counted call's send and answer. Its log holds only accepted
  calls: a refused call is not spent (the server did not count it either).
  The learned window may be shorter than the declared one (20 per 6 s under
  a declared 200 per minute is legal: the cap still holds) or longer.

The declared `requests_per_minute` is where the learned belief starts
(STYLE.md 15): on a 429 every caller stops at once until the learner's
resume time (the reset hint, +1 s when it is good only to the second; a
back-off with jitter when it is past, zero or missing), and the quota
becomes the count of calls the server accepted in the window before. Under
``auto`` there is no declared cap: the learner starts from one call and
doubles per round trip until the first 429.

Callers with a higher priority go first (result > status > submit when the
budget counts all calls), so jobs already paid for are finished before new
ones start. Time comes only from anyio, so tests run on a virtual clock.

The scheduler sees a gate through the `RateLimit` protocol, so a gate whose
log lives in Redis and counts the calls of several workers
(runner.coordination) plugs in where `RateGate` does.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

import anyio

from runner.scheduling.quota import QuotaLearner, QuotaPolicy, QuotaStats

RateModel = Literal["window", "smooth"]

# Priorities when the budget counts every call: finishing paid work first.
PRIORITY_RESULT = 3
PRIORITY_DOWNLOAD = 3
PRIORITY_STATUS = 2
PRIORITY_SUBMIT = 1


@dataclass(slots=True)
class _Admission:
    """One counted call of this task: when it was admitted (sent), and whether it got a 429."""

    gate: int
    sent_at: float
    refused: bool = False


# The call this task was last admitted for: a task makes one call at a time,
# so its context is where `rate_limited` and `finished` find the send time.
_CALL: contextvars.ContextVar[_Admission | None] = contextvars.ContextVar(
    "runner_rate_gate_call", default=None
)


class RateLimit(Protocol):
    """What the scheduler needs of a rate gate."""

    async def acquire(self, priority: int = 0) -> None:
        """Wait until a call of this priority may be made, and count it."""

    def finished(self) -> None:
        """The call this task was last admitted for has ended (answered, failed or not sent)."""

    def rate_limited(self, retry_after: float | None, coarse: bool = False) -> None:
        """The server answered 429 (`retry_after`: its hint in seconds; `coarse`: good
        only to the second): pause and slow down. Called before `finished`."""


@dataclass(frozen=True, slots=True)
class RateStats:
    """A snapshot of the gate. Times are anyio clock seconds."""

    admitted: int
    limit: int
    effective_limit: int
    paused_until: float
    rate_limited: int
    waiting: int
    window: float = 60.0


def _after(t: float, span: float) -> float:
    """The first float time at least `span` after `t` (t + span may round down)."""
    ready = t + span
    while ready - t < span:
        ready = math.nextafter(ready, math.inf)
    return ready


class RateGate:
    """At most `limit` calls sent in any `window` + `margin` seconds, and at most the
    learned quota accepted in the learned window + `margin` (see the module docstring).

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
        auto: bool = False,
        learned: tuple[int, float] | None = None,
        seed: int | None = None,
    ) -> None:
        """`history`: how many seconds ago each call of an earlier run ended (so a
        restarted run does not start with an empty window); `on_finished` is
        told of each accepted call that ends, to record it for the next run.
        `auto`: no declared limit, learn it (`limit` is then ignored);
        `learned`: (calls, window seconds) an earlier run learned, the
        starting belief; `seed` seeds the jitter.
        """
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        self._history = sorted(history, reverse=True)
        self._on_finished = on_finished
        self._limit = None if auto else limit
        self._margin = margin
        self._model = model
        self._clock = clock
        self._learner = QuotaLearner(
            QuotaPolicy(
                declared=self._limit,
                window=window,
                auto=auto,
                # The declared window is a minute: one real second on this clock.
                second=window / 60.0,
                backoff=window / 60.0,
                learned=learned[0] if learned else None,
                learned_window=learned[1] if learned else None,
            ),
            rng=random.Random(seed),
        )
        # End times of accepted calls (the learned constraint's log) and of
        # every call sent, refused ones too (the declared cap's log).
        self._log: deque[float] = deque()
        self._sent: deque[float] = deque()
        self._declared_window = window
        self._heap: list[tuple[int, int]] = []
        self._seq = itertools.count()
        # Created on first use: an anyio Event needs a running event loop.
        self._changed: anyio.Event | None = None
        self._last_admit = -math.inf
        self._admitted = 0
        # Calls admitted and not yet finished: they count as happening "now"
        # until they end, and then from their end, which is never before the
        # server saw them (a late send cannot spill into the next window).
        self._in_flight = 0

    @property
    def effective_limit(self) -> int | None:
        """The limit the gate applies now (the learner's); None when unlimited."""
        return self._learner.limit(self._clock())

    @property
    def span(self) -> float:
        """How long an accepted call is remembered: the learned window + its margin (seconds).

        The margin shrinks with a learned window shorter than the declared one
        (the same share of the window): a second against a 6 s window would
        cost a sixth of the throughput, and the window learned from a hint
        good only to the second already carries that second.
        """
        window = self._learner.window
        return window + self._margin * min(1.0, window / self._declared_window)

    def quota(self) -> QuotaStats:
        """What the learner believes of the server's limit (a frozen snapshot)."""
        return self._learner.stats()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _wait_event(self) -> anyio.Event:
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    def next_slot(self, now: float) -> float:
        """The earliest clock time at which one more call may be admitted.

        Both constraints must have room: the declared cap (R calls sent in any
        declared window + margin) and the learned one (the learner's quota of
        accepted calls in its window + margin).
        """
        if self._history:
            # Seeded on first use: the clock needs a running event loop.
            earlier = [now - age for age in reversed(self._history)]
            self._log.extendleft(reversed(earlier))
            self._sent.extendleft(reversed(earlier))
            self._history = []
        learner = self._learner
        ready = max(now, learner.paused_until)
        limit = learner.limit(now)
        if limit is None and self._limit is None:
            return ready
        if limit is not None:
            ready = max(ready, self._window_slot(self._log, limit, self.span, now))
        if self._limit is not None:
            declared_span = self._declared_window + self._margin
            ready = max(ready, self._window_slot(self._sent, self._limit, declared_span, now))
        if ready == math.inf:
            return ready
        if learner.solo(ready) and self._in_flight > 0:
            return math.inf  # a probe of a new window estimate goes alone
        if self._model == "smooth":
            if self._in_flight > 0:
                return math.inf  # burst 1: wait for the call before to end
            # The spacing of the tighter of the two constraints.
            spacing = self.span / limit if limit is not None else 0.0
            if self._limit is not None:
                spacing = max(spacing, (self._declared_window + self._margin) / self._limit)
            ready = max(ready, _after(self._last_admit, spacing))
        return ready

    def _window_slot(self, log: deque[float], limit: int, span: float, now: float) -> float:
        """When one more call fits: `limit` in any `span` of `log` and the calls in flight."""
        while log and log[0] <= now - span:
            log.popleft()
        room = limit - self._in_flight
        if room <= 0:
            return math.inf  # wait for a call to finish
        if len(log) >= room:
            return _after(log[-room], span)
        return now

    async def acquire(self, priority: int = 0) -> None:
        """Wait until a call of this priority may be made, and count it."""
        entry = (-priority, next(self._seq))
        heapq.heappush(self._heap, entry)
        try:
            while True:
                now = self._clock()
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
        self._learner.started(now)
        _CALL.set(_Admission(id(self), now))
        self._notify()

    def _call(self) -> _Admission | None:
        call = _CALL.get()
        return call if call is not None and call.gate == id(self) else None

    def finished(self) -> None:
        """A call admitted earlier has ended (answered, failed, or not sent after all).

        Every call counts against the declared cap from now on, for the
        declared `window + margin`. An accepted one also counts against the
        learned quota, for the learned window + margin, and is told to the
        learner and to `on_finished`; a refused one (429) is not spent there.
        """
        if self._in_flight <= 0:
            return
        self._in_flight -= 1
        call = self._call()
        _CALL.set(None)
        now = self._clock()
        if self._limit is not None:
            self._sent.append(now)  # the declared cap counts every call sent
        if call is None or not call.refused:
            self._log.append(now)
            self._learner.accepted(call.sent_at if call else now, now)
            if self._model == "smooth":
                self._last_admit = max(self._last_admit, now)
            if self._on_finished is not None:
                self._on_finished()
        self._notify()

    def rate_limited(self, retry_after: float | None, coarse: bool = False) -> None:
        """The server answered 429 to this task's call: pause everyone, learn the quota.

        `retry_after` is the server's hint in seconds (0 for a reset in the
        past: never "retry now", the learner backs off); `coarse` says it is
        good only to the second.
        """
        now = self._clock()
        call = self._call()
        sent_at = now
        if call is not None:
            call.refused = True
            sent_at = call.sent_at
        reset_at = None if retry_after is None else now + retry_after
        self._learner.refused(sent_at, now, reset_at, coarse)
        self._notify()

    def stats(self) -> RateStats:
        """A frozen snapshot."""
        quota = self._learner.stats()
        return RateStats(
            admitted=self._admitted,
            limit=self._limit or 0,
            effective_limit=self.effective_limit or 0,
            paused_until=quota.paused_until,
            rate_limited=quota.rate_limited,
            waiting=len(self._heap),
            window=quota.window,
        )
