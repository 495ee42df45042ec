"""The rate gate shared by every worker on one API key.

Same semantics as runner/scheduling/rate.py's `RateGate` (a sliding-window
log of R admissions per window + margin, the smooth GCRA spacing, and a
limit, window and pause learned from the server's answers by
runner/scheduling/quota.py's `QuotaLearner`), but the log lives in Redis and
one Lua script checks and admits atomically, with Redis's clock as the one
clock of all workers. So the sum over all workers never passes R in any
window, however many there are and wherever they run.

The learning is shared, not written again: every counted call's admission
and outcome is an event in one Redis stream, each worker replays that
stream into its own QuotaLearner (belief.py), and the admission script
admits only a worker that has applied every event, with the learner's
limit, window, pause and probe passed as arguments. So R is what the
workers together got accepted before a 429, and all of them apply it.

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

A 429 stops this worker's admissions at once, until its refusal is in the
stream (sent in the background when the call ends, so the scheduler's
`rate_limited` stays a plain signal); every other worker applies it before
its next admission.

A Redis that comes back empty (restarted without persistence; redis-py
reconnects without a word) has forgotten the window's calls: its missing
epoch key tells it from a live one, and the script admits nobody until a
whole span has passed with no admission.

When the coordinator is lost, the gate falls back to a local `RateGate`
with this worker's share of the budget (R, or the learned quota, divided by
the workers alive at the last heartbeat, at least 1), after one span of silence, so the calls
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
from dataclasses import dataclass
from typing import Any, Final

import anyio

from runner.coordination.belief import (
    ACCEPTED,
    REFUSED,
    STARTED,
    SharedBelief,
    policy_for,
    snapshot,
)
from runner.coordination.client import RedisLink, ScriptArg, Unreachable
from runner.coordination.identity import RateKeys
from runner.coordination.scripts import GATE_ACQUIRE, GATE_CHECKPOINT, GATE_DONE
from runner.scheduling.quota import QuotaStats
from runner.scheduling.rate import RateGate, RateModel

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]

# Rate keys outlive their last admission by this many spans, so what the
# workers learned is remembered across short gaps, and idle keys vanish.
_KEEP_SPANS = 10
# A waiter held back by a call still in flight asks again after this much of a span.
_POLL_SPANS = 0.05


@dataclass(slots=True)
class _Admission:
    """One call admitted through Redis: its member, admission time (Redis's), 429 hint."""

    member: str
    at: float
    refused: bool = False
    wait: float | None = None
    coarse: bool = False


# The admission this task's call was made under, for `finished()`: a task
# makes one call at a time, so the task's context is where it is kept.
# _LOCAL: the local fallback gate let it through, and its end goes there.
_LOCAL: Final = "local"
_ADMISSION: contextvars.ContextVar[_Admission | str | None] = contextvars.ContextVar(
    "runner_shared_gate_admission", default=None
)


class SharedRateGate:
    """At most `limit` calls per `window` (+ `margin`) seconds, summed over all workers.

    Implements runner.scheduling.rate.RateLimit. `limit=None` admits at once.
    `limit` and `window` are the declared belief; the workers' shared
    QuotaLearner learns the real ones. `spawn` runs a background task in the
    session's task group; `peers()` is the number of live workers, for the
    fallback share.
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
        auto: bool = False,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        self._link = link
        self._keys = keys
        # `auto`: no declared limit, yet limited: the shared learner starts
        # from one call across the whole group and doubles per round trip
        # until the first 429, as the local gate's does.
        self._limit = None if auto else limit
        self._limited = auto or limit is not None
        self._window = window
        self._margin = margin
        self._model = model
        self._member = member
        self._spawn = spawn
        self._peers = peers
        self._belief = SharedBelief(policy_for(self._limit, window, auto=auto))
        self._seq = itertools.count()
        self._heap: list[tuple[int, int]] = []
        self._changed: anyio.Event | None = None
        # Redis's clock minus anyio's, as of the last script answer: the
        # learner's limit and probe are asked at Redis's "now".
        self._offset = 0.0
        # 429s of this worker not yet in the stream: no admission until they are.
        self._unrecorded = 0
        # Outcomes sent to the stream and not yet answered (see `recorded`).
        self._sending = 0
        # After the link is lost: no fallback admission before this (anyio time).
        self._paused_until = -math.inf
        self._fallback: RateGate | None = None
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

    def _redis_now(self) -> float:
        return anyio.current_time() + self._offset

    def _keep_ms(self) -> int:
        # Rate keys outlive their last use by _KEEP_SPANS spans of the longest
        # window believed, so what was learned survives short gaps.
        window = max(self._window, self._belief.learner.window)
        return max(1000, math.ceil((window + self._margin) * _KEEP_SPANS * 1000))

    def quota(self) -> QuotaStats:
        """What the workers' shared learner believes (as of the last event this worker applied)."""
        return self._belief.stats()

    @property
    def effective_limit(self) -> int | None:
        """The limit the gate applies now (the shared learner's); None when unlimited."""
        if not self._limited:
            return None
        return self._belief.learner.limit(self._redis_now())

    async def sync(self) -> QuotaStats:
        """Apply every event of the key's stream to this worker's learner; its snapshot."""
        keys = self._keys

        def read() -> list[Any]:
            client: Any = self._link.client
            # One transaction: no checkpoint (and trim) between the reads.
            pipe = client.pipeline(transaction=True)
            pipe.time()
            pipe.hmget(keys.belief, ["id", "state"])
            pipe.xrange(keys.events, f"({self._belief.seen}", "+")
            answers: list[Any] = pipe.execute()
            return answers

        if self._limited and self._link.lost is None:
            with contextlib.suppress(Unreachable):
                (seconds, micros), (cp_id, cp_state), entries = await self._link.run(read)
                # Redis's clock, as `_ask` keeps it: the learner's times are Redis's.
                self._offset = int(seconds) + int(micros) / 1e6 - anyio.current_time()
                if cp_id:
                    self._belief.load(str(cp_id), str(cp_state))
                self._belief.apply(entries)
        return self._belief.stats()

    def _local(self) -> RateGate:
        if self._fallback is None:
            peers = max(1, self._peers())
            stats = self._belief.stats()
            share = None if self._limit is None else max(1, self._limit // peers)
            if self._limited and self._limit is None and stats.limit is not None:
                # auto: the allowance the group had reached, shared.
                share = max(1, stats.limit // peers)
            learned = None
            if stats.learned and stats.limit is not None:
                learned = (max(1, stats.limit // peers), stats.window)
            self._fallback = RateGate(
                share, self._window, margin=self._margin, model=self._model, learned=learned
            )
            # The last window's calls, admitted through Redis, are not in the
            # fallback's log: let them leave the window first.
            span = self._belief.learner.window + self._margin
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
        if not self._limited:
            return None
        if self._link.lost is not None:
            await self._fall_back(priority)
            return None
        entry = (-priority, next(self._seq))
        heapq.heappush(self._heap, entry)
        try:
            while True:
                delay = math.inf
                # Taken before asking: a call that ends (or an outcome recorded)
                # while the script runs sets this event, and the wait below
                # returns at once rather than sleeping its whole delay.
                changed = self._event()
                if self._heap[0] == entry and not self._unrecorded:
                    try:
                        at, delay = await self._ask()
                    except Unreachable:
                        break
                    if at is not None:
                        return at
                with anyio.move_on_after(delay):
                    await changed.wait()
        finally:
            if entry in self._heap:
                self._heap.remove(entry)
                heapq.heapify(self._heap)
            self._notify()
        # The coordinator was lost while this call waited: this worker's share.
        await self._fall_back(priority)
        return None

    async def _ask(self) -> tuple[float | None, float]:
        """One try: (the admission's Redis time, 0) or (None, how long to wait in seconds)."""
        learner = self._belief.learner
        now = self._redis_now()
        ready = max(now, learner.paused_until)
        if ready > now:
            return None, ready - now  # the learner's pause: no need to ask Redis
        limit = learner.limit(now)
        assert limit is not None  # a declared limit stays a limit; auto starts from one
        member = f"{self._member}:{next(self._seq)}"
        keys = self._keys
        status, wait, at, unfinished, epoch, entries, started = await self._link.script(
            GATE_ACQUIRE,
            [keys.log, keys.state, keys.inflight, keys.epoch, keys.events, keys.belief],
            [
                limit,
                learner.window,
                self._margin,
                self._model,
                member,
                self._keep_ms(),
                self._epoch,
                secrets.token_hex(8),
                f"{learner.paused_until:.6f}" if math.isfinite(learner.paused_until) else 0,
                1 if learner.solo(ready) else 0,
                self._belief.seen,
            ],
        )
        self._offset = float(at) - anyio.current_time()
        if self._epoch and epoch != self._epoch:
            # Redis came back empty (or the idle keys expired): a new stream.
            self._belief.forget_stream()
        self._epoch = epoch
        status = int(status)
        if status == 3:
            # Behind the checkpoint: the entries before it may be trimmed.
            cp_id, cp_state = entries
            self._belief.load(str(cp_id), str(cp_state))
            return None, 0.0
        if status == 2:
            self._belief.apply((i, _fields(f)) for i, f in entries)
            return None, 0.0
        if status == 1:
            # This admission's own event, applied as any other (once, in order).
            self._belief.apply([(started, {"k": STARTED, "at": at})])
            self.admitted += 1
            _ADMISSION.set(_Admission(member, float(at)))
            return float(at), 0.0
        delay = float(wait)
        if int(unfinished):
            delay = min(delay, (learner.window + self._margin) * _POLL_SPANS)
        return None, delay

    def finished(self) -> None:
        """This task's call has ended: its outcome goes to the stream (in the background)."""
        call = _ADMISSION.get()
        if call is None:
            return
        _ADMISSION.set(None)
        if call == _LOCAL:
            # The fallback counts its calls in flight: without this end its
            # room would shrink with every call until every caller waits forever.
            assert self._fallback is not None
            self._fallback.finished()
            return
        assert isinstance(call, _Admission)
        if self._link.lost is not None:
            return
        keys = self._keys
        wait = "" if call.wait is None else f"{call.wait:.6f}"
        outcome = REFUSED if call.refused else ACCEPTED
        coarse = 1 if call.coarse else 0
        args: list[ScriptArg] = [call.member, outcome, f"{call.at:.6f}", wait, coarse]
        args.append(self._keep_ms())

        async def record() -> None:
            # Lost: the call keeps counting as in flight for a span, then from
            # its admission; the fallback takes over on the next call.
            try:
                with contextlib.suppress(Unreachable):
                    args.append(self._belief.seen)
                    cp_id, cp_state, entries = await self._link.script(
                        GATE_DONE, [keys.log, keys.inflight, keys.events, keys.belief], args
                    )
                    if cp_id:
                        self._belief.load(str(cp_id), str(cp_state))
                    # Every event up to this outcome, so the next admission need not ask first.
                    self._belief.apply((i, _fields(f)) for i, f in entries)
                    if self._belief.checkpoint_due():
                        await self._checkpoint()
            finally:
                self._sending -= 1
                if call.refused:
                    self._unrecorded -= 1
                self._notify()

        self._sending += 1  # counted now: `recorded` must not miss a task not started yet
        self._spawn(record)

    async def _checkpoint(self) -> None:
        """Store this worker's learner as of its last entry, and trim the stream before it."""
        belief = self._belief
        keys = self._keys
        await self._link.script(
            GATE_CHECKPOINT,
            [keys.events, keys.belief],
            [belief.seen, snapshot(belief.learner), self._keep_ms()],
        )
        # Stored, or another worker's is as new: either way, not due again yet.
        belief.checkpointed()

    async def recorded(self) -> None:
        """Wait until every outcome this worker sent is in the stream (or the link is lost)."""
        while self._sending:
            await self._event().wait()

    def rate_limited(self, retry_after: float | None, coarse: bool = False) -> None:
        """The server answered 429: stop here now; every worker learns it from the stream.

        `retry_after` is the server's hint in seconds (0 for a reset in the
        past: the learner backs off instead); `coarse`: good only to the second.
        """
        self.rate_limited_count += 1
        if not self._limited:
            return  # no limit to learn: the call's own retry waits
        call = _ADMISSION.get()
        if self._link.lost is not None or call is None or call == _LOCAL:
            self._local().rate_limited(retry_after, coarse)
            return
        assert isinstance(call, _Admission)
        if not call.refused:
            call.refused, call.wait, call.coarse = True, retry_after, coarse
            self._unrecorded += 1
        self._notify()


def _fields(raw: Any) -> dict[str, str]:
    """A stream entry's fields as the script answers them: a flat [name, value, ...] list."""
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    return {str(raw[i]): str(raw[i + 1]) for i in range(0, len(raw), 2)}
