"""The rate gate shared by every worker on one API key.

Same semantics as runner/scheduling/rate.py's `RateGate` (a sliding-window
log of R admissions per window + margin, the smooth GCRA spacing, the 429
pause and the halving with its creep back), but the log lives in Redis and
one Lua script checks and admits atomically, with Redis's clock as the one
clock of all workers. So the sum over all workers never passes R in any
window, however many there are and wherever they run.

One difference, for several processes and hosts: a call counts from its
*end*, and as "now" while it is in flight (`finished()` tells the gate it
ended). An admission and the call's arrival at the API are two moments, a
Redis hop, a thread and an API hop apart, further apart on a busy machine;
the server saw the call at some time before its answer came back, so
counting from the answer keeps R + 1 calls out of any server window however
late a call went out, and costs a slot only the call's own duration.

Inside a worker the waiters still queue by priority (results before polls
before submits); only the head of the queue asks Redis, and it sleeps for
the wait the script computed (when the oldest call leaves the window; at
most `_POLL_SPANS` of a span when that call has not ended yet, since it may
end sooner), so an idle run costs no Redis calls. Across workers there is no
priority: whoever asks first after a slot frees gets it.

A 429 pauses this worker at once, and the shared pause (with the cut of
the shared limit) is sent in the background, so the scheduler's
`rate_limited` stays a plain signal.

A Redis that comes back empty (restarted without persistence; redis-py
reconnects without a word) has forgotten the window's calls: its missing
epoch key tells it from a live one, and the script admits nobody until a
whole span has passed with no admission.

When the coordinator is lost, the gate falls back to a local `RateGate`
with this worker's share of the budget (R divided by the workers alive at
the last heartbeat, at least 1), after one span of silence, so the calls
admitted through Redis in the last window never add to the fallback's: the
others lose Redis too and do the same, so their sum stays within R while
they finish what is in flight.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import math
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from runner.coordination.client import RedisLink, Unreachable
from runner.coordination.identity import RateKeys
from runner.coordination.scripts import GATE_ACQUIRE, GATE_DONE, GATE_LIMITED
from runner.scheduling.rate import CREEP, CUT, MIN_FACTOR, RateGate, RateModel

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]

# Rate keys outlive their last admission by this many spans, so a 429 cut and
# its creep back are remembered across short gaps, and idle keys vanish.
_KEEP_SPANS = 10
# A waiter held back by a call still in flight asks again after this much of a span.
_POLL_SPANS = 0.05

# The admission this task's call was made under, for `finished()`: a task
# makes one call at a time, so the task's context is where it is kept.
_ADMISSION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "runner_shared_gate_admission", default=None
)
# The admission of a call the local fallback gate let through: its end goes there.
_LOCAL = "local"


class SharedRateGate:
    """At most `limit` calls per `window` (+ `margin`) seconds, summed over all workers.

    Implements runner.scheduling.rate.RateLimit. `limit=None` admits at once.
    `spawn` runs a background task in the session's task group; `peers()` is
    the number of live workers, for the fallback share.
    """

    def __init__(
        self,
        link: RedisLink,
        keys: RateKeys,
        limit: int | None,
        window: float,
        *,
        margin: float,
        model: RateModel,
        member: str,
        spawn: Spawn,
        peers: Callable[[], int],
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        self._link = link
        self._keys = keys
        self._limit = limit
        self._window = window
        self._margin = margin
        self._model = model
        self._member = member
        self._spawn = spawn
        self._peers = peers
        self._seq = itertools.count()
        self._heap: list[tuple[int, int]] = []
        self._changed: anyio.Event | None = None
        self._paused_until = -math.inf
        self._fallback: RateGate | None = None
        self._keep_ms = max(1000, math.ceil((window + margin) * _KEEP_SPANS * 1000))
        # The gate's epoch as this worker last saw it: a Redis that comes back
        # empty has none, and the script then holds admissions for a span.
        self._epoch = ""
        self.admitted = 0
        self.rate_limited_count = 0

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _event(self) -> anyio.Event:
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    def _local(self) -> RateGate:
        if self._fallback is None:
            share = None if self._limit is None else max(1, self._limit // max(1, self._peers()))
            self._fallback = RateGate(share, self._window, margin=self._margin, model=self._model)
            # The last window's calls, admitted through Redis, are not in the
            # fallback's log: let them leave the window first.
            span = self._window + self._margin
            self._paused_until = max(self._paused_until, anyio.current_time() + span)
        return self._fallback

    async def _fall_back(self, priority: int) -> None:
        local = self._local()
        # Later 429s pause the local gate itself (see rate_limited).
        await anyio.sleep(max(0.0, self._paused_until - anyio.current_time()))
        await local.acquire(priority)
        _ADMISSION.set(_LOCAL)

    @property
    def local_share(self) -> int | None:
        """The fallback's limit once the coordinator is lost (None: still shared, or no limit)."""
        if self._fallback is None:
            return None
        return self._fallback.effective_limit

    async def acquire(self, priority: int = 0) -> None:
        """Wait until a call of this priority may be made, and count it."""
        await self.admit(priority)

    async def admit(self, priority: int = 0) -> float | None:
        """`acquire`, returning the admission's Redis server time (None: not via Redis)."""
        if self._limit is None:
            return None
        if self._link.lost is not None:
            await self._fall_back(priority)
            return None
        entry = (-priority, next(self._seq))
        heapq.heappush(self._heap, entry)
        try:
            while True:
                delay = math.inf
                if self._heap[0] == entry:
                    delay = self._paused_until - anyio.current_time()
                    if delay <= 0:
                        member = f"{self._member}:{next(self._seq)}"
                        try:
                            ok, wait, at, unfinished, self._epoch = await self._link.script(
                                GATE_ACQUIRE,
                                [
                                    self._keys.log,
                                    self._keys.state,
                                    self._keys.inflight,
                                    self._keys.epoch,
                                ],
                                [
                                    self._limit,
                                    self._window,
                                    self._margin,
                                    self._model,
                                    member,
                                    self._keep_ms,
                                    self._epoch,
                                    secrets.token_hex(8),
                                    CREEP,
                                ],
                            )
                        except Unreachable:
                            break
                        if int(ok) == 1:
                            self.admitted += 1
                            _ADMISSION.set(member)
                            return float(at)
                        delay = float(wait)
                        if int(unfinished):
                            delay = min(delay, (self._window + self._margin) * _POLL_SPANS)
                with anyio.move_on_after(delay):
                    await self._event().wait()
        finally:
            if entry in self._heap:
                self._heap.remove(entry)
                heapq.heapify(self._heap)
            self._notify()
        # The coordinator was lost while this call waited: this worker's share.
        await self._fall_back(priority)
        return None

    def finished(self) -> None:
        """This task's call has ended: it counts from now (sent in the background)."""
        member = _ADMISSION.get()
        if member is None:
            return
        _ADMISSION.set(None)
        if member == _LOCAL:
            # The fallback counts its calls in flight: without this end its
            # room would shrink with every call until every caller waits forever.
            assert self._fallback is not None
            self._fallback.finished()
            return
        if self._link.lost is not None:
            return

        async def restamp() -> None:
            # Lost: the call keeps counting as in flight for a span, then from its admission.
            with contextlib.suppress(Unreachable):
                await self._link.script(GATE_DONE, [self._keys.log, self._keys.inflight], [member])
            self._notify()

        self._spawn(restamp)

    def rate_limited(self, retry_after: float | None, coarse: bool = False) -> None:
        """The server answered 429: pause here now, and tell every worker in the background."""
        self.rate_limited_count += 1
        wait = retry_after if retry_after is not None else self._default_pause()
        self._paused_until = max(self._paused_until, anyio.current_time() + wait)
        self._notify()
        if self._link.lost is not None:
            self._local().rate_limited(retry_after)
            return
        self._spawn(lambda: self.report_limited(retry_after))

    def _default_pause(self) -> float:
        return (self._window + self._margin) / (self._limit or 60)

    async def report_limited(self, retry_after: float | None) -> None:
        """Pause every worker until the server's reset and cut the shared limit (a 429)."""
        hint = "" if retry_after is None else retry_after
        # Lost: the local pause stands; the fallback takes over on the next call.
        with contextlib.suppress(Unreachable):
            await self._link.script(
                GATE_LIMITED,
                [self._keys.state],
                [
                    hint,
                    self._limit or 60,
                    self._window,
                    self._margin,
                    self._keep_ms,
                    CUT,
                    MIN_FACTOR,
                ],
            )
