"""API calls through the rate gate, with retries, and the one billed send.

`call` makes one call under the gate and retries it as retry.py decides.
`billed_send` sends a job's billed call, the v2 submit and the v1 sync call
alike: the same gate, the same `Submitting` mark right before the send, the
same handling of a lost answer (ambiguous: sent again at most once per job,
within the run's cap), of a 406 (the run stops, the job goes back to
planned), of a definite refusal (400/401/403/404: nothing billed, the mark
taken back) and of a final answer.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import anyio

from runner.errors import (
    AuthError,
    BadRequest,
    DownloadError,
    InsufficientCredits,
    JobFailed,
    NotFound,
    RateLimited,
    RetryableError,
    TransportError,
)
from runner.jobs import Job
from runner.money import Micros
from runner.scheduling.context import RunContext
from runner.scheduling.lifecycle import Ambiguous, Failed, Refused, Submitting
from runner.scheduling.rate import PRIORITY_SUBMIT
from runner.scheduling.retry import Operation, retry_delay

T = TypeVar("T")
BilledOp = Literal["submit", "sync"]

# How each billed call is named in what the user reads.
_NAMES: dict[BilledOp, str] = {"submit": "submit", "sync": "sync call"}


class Stopped(Exception):
    """The run is stopping before this job's billed call went out: back to planned."""


@dataclass(frozen=True, slots=True)
class Answered(Generic[T]):
    """A billed call's answer and when it came.

    `clock`: the run's clock (anyio, seconds) when the answer arrived, from
    which a v2 job's age counts (not from after its record is written, so a
    slow disk does not shorten the latencies polls see); `wall`: the same
    moment as a wall-clock stamp (UTC seconds, `RunContext.wall`).
    """

    value: T
    clock: float
    wall: float


async def call(
    ctx: RunContext,
    op: Operation,
    job: Job | None,
    fn: Callable[[], Awaitable[T]],
    *,
    priority: int,
    refused: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """One API call with retries; raises the last error when retries are over.

    `refused` runs when the answer says the server did not take the call.
    Raises `Stopped` instead of sending a billed call the stop holds back.
    """
    billed = op in ("submit", "sync")
    counted = billed or (ctx.config.rate_scope == "all" and op != "download")
    attempt = 0
    limited = 0
    while True:
        if billed and ctx.stop.state.hold_submits:
            raise Stopped
        await _admit(ctx, billed=billed, counted=counted, priority=priority)
        try:
            # Inside the try: a mark that cannot be written (in `fn`) still ends the admitted call.
            ctx.tally.calls[op] += 1
            return await fn()
        except RateLimited as err:
            ctx.tally.counts["rate_limited"] += 1
            if counted:
                # Only a call the budget counts says the budget is too
                # high; a 429 on a poll the limit does not count (or on
                # the media host) backs off that call alone.
                ctx.gate.rate_limited(err.retry_after, err.coarse)
            ctx.emit("rate_limited", job, f"{op}: {err}")
            failure: BaseException = err
            # The gate slows everyone down after a 429, so 429s use up
            # tries more slowly than real failures: a storm is waited out.
            limited += 1
            tries = 1 + limited // 4
        except (RetryableError, NotFound, DownloadError) as err:
            failure = err
            attempt += 1
            tries = attempt
        finally:
            if counted:
                ctx.gate.finished()
            if billed:
                ctx.submits.release()
        lost = isinstance(failure, TransportError) and failure.sent
        if refused is not None and not lost:
            await refused()
        delay = retry_delay(op, failure, max(tries, attempt), ctx.config.retry, ctx.rng)
        if delay is None:
            raise failure
        ctx.tally.counts["retry"] += 1
        ctx.emit("retry", job, f"{op} after {failure}")
        await anyio.sleep(delay)


async def _admit(ctx: RunContext, *, billed: bool, counted: bool, priority: int) -> None:
    """Take a billed call's place on the wire, then the rate gate's admission.

    The place comes before the admission, not after: calls admitted but not
    yet sent are then at most max_submits_in_flight, so on a 429 the rest
    have not passed the gate and stop at once instead of all going out into
    refusals. Raises `Stopped` (holding nothing) when the stop holds submits.
    """
    if billed:
        await ctx.submits.acquire()
    try:
        if counted:
            await ctx.gate.acquire(priority)
    except BaseException:
        if billed:
            ctx.submits.release()
        raise
    if billed and ctx.stop.state.hold_submits:
        ctx.gate.finished()
        ctx.submits.release()
        raise Stopped


class _Marks:
    """`Submitting` right before each send; `Refused` when the server clearly did not take it.

    The mark comes after the rate gate: a job waiting for its slot has sent
    nothing, and a crash then must not count it as possibly billed. A
    refusal (429, 5xx, no connection) takes the mark back, so a crash while
    the retry waits does not count it either. A lost answer leaves it: it may
    be billed.
    """

    def __init__(self, ctx: RunContext, job: Job, estimate: Micros) -> None:
        self._ctx = ctx
        self._job = job
        self._estimate = estimate
        self._marked = False

    async def before(self) -> None:
        if not self._marked:
            self._marked = True
            await self._ctx.publish(Submitting(self._job, self._estimate))

    async def refused(self) -> None:
        if self._marked:
            self._marked = False
            await self._ctx.publish(Refused(self._job))


async def billed_send(
    ctx: RunContext,
    op: BilledOp,
    job: Job,
    send: Callable[[], Awaitable[T]],
    *,
    accepted: Callable[[Answered[T]], Awaitable[None]] | None = None,
) -> Answered[T] | Failed:
    """Send the job's billed call; its answer with when it came, or the `Failed` that ends it.

    `accepted` records what the answer must not lose (the v2 request id)
    while the send still holds its place on the wire. Raises `Stopped` when
    the run holds submits or the API refused for lack of credits (406; the
    run stops). Other errors propagate.
    """
    name = _NAMES[op]
    estimate = ctx.guard.estimate(job)
    marks = _Marks(ctx, job, estimate)
    tried_again = False

    async def on_the_wire() -> Answered[T]:
        # The call's place on the wire (config.max_submits_in_flight, taken
        # in `_admit` before the gate) spans the `submitting` mark, the send
        # and the record of its answer: a kill then finds at most that many
        # jobs marked, and costs at most that many unrecorded paid submits.
        await marks.before()
        value = await send()
        answer = Answered(value, anyio.current_time(), ctx.wall())
        if accepted is not None:
            await accepted(answer)
        return answer

    while True:
        try:
            return await call(
                ctx,
                op,
                job,
                on_the_wire,
                priority=PRIORITY_SUBMIT,
                refused=marks.refused,
            )
        except TransportError as err:
            if not err.sent:
                # It never reached the server: nothing billed.
                await ctx.guard.refund(job.key)
                return Failed(job, str(err))
            if not await _ambiguous_again(ctx, job, tried_again, estimate):
                return Failed(job, f"{name} answer lost ({err}); not retried: it may be billed")
            tried_again = True
        except InsufficientCredits as err:
            reason = f"the API refused a {name} for lack of credits (406): {err}"
            await ctx.guard.stop(reason)
            ctx.stop.request(reason)
            raise Stopped from err
        except AuthError:
            # A definite refusal (401/403): nothing was billed, so the mark
            # goes back and the run's fatal stop leaves no job possibly billed.
            await marks.refused()
            await ctx.guard.refund(job.key)
            raise
        except (BadRequest, NotFound, JobFailed, RetryableError) as err:
            # 400/404 with the server's reason: refused, not billed.
            await ctx.guard.refund(job.key)
            return Failed(job, str(err))


async def _ambiguous_again(ctx: RunContext, job: Job, tried_again: bool, estimate: Micros) -> bool:
    """Record an ambiguous send; True when the job may be sent once more."""
    await ctx.guard.mark_ambiguous(job.key)
    await ctx.publish(Ambiguous(job))
    # The cap grows with the run (5 % of its jobs), so a long run's rare
    # lost answers are retried while a storm of them is not paid for.
    cap = ctx.config.max_ambiguous_retries
    if ctx.tally.planned is not None:
        cap = max(cap, math.ceil(ctx.tally.planned * 0.05))
    if tried_again or ctx.tally.ambiguous_retries >= cap:
        return False
    if ctx.stop.state.stopped or not await ctx.guard.reserve(job.key, ctx.prices.reservation(job)):
        return False
    ctx.tally.ambiguous_retries += 1
    return True
