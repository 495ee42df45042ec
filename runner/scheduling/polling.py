"""When to poll a submitted job: learned from what earlier polls saw.

The run keeps one `LatencyModel` (runner.scheduling.latency): each finished
job adds its bracket (its age at its last "not yet" answer, its age at its
first "done" answer), narrowed by the latency the server stated when that
fits. A job's first poll goes where `first_quantile` of jobs are done, later
ones a small share of the median apart, so the detection delay stays near
that share while most jobs cost one poll.

Before any job has finished, nothing is known but the prior (10 s, which
may be 5x off either way). Then one job, the *scout*, polls on a geometric
schedule from a fraction of the prior, and every other job waits for what
it teaches instead of guessing; a scout that ends without teaching (failed,
lost) hands the role to the next job that asks. So a wrong prior costs a
few polls of one job, not of all of them.

`JobPolls.next_age` is the one decision (what age to poll at next, never
past the server's retention: `latency.latest`); the caller sleeps and
polls. Ages are seconds since the job's submit was answered, on the run's
(time-scaled) clock.
"""

from __future__ import annotations

import contextvars
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from runner.backends.base import Metrics, State
from runner.scheduling.latency import (
    Bracket,
    LatencyModel,
    PollTiming,
    first_poll,
    latest,
    next_poll,
    observed,
    scout_schedule,
    server_latency,
)


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Polling settings; durations in seconds before `scale`, shares of a latency.

    `prior`: the latency believed before any job finished. `first_quantile`,
    `first_margin`, `step_share`, `min_step`, `max_step`, `scout_ratio`,
    `scout_start`, `tail_survival`, `tail_share`,
    `retention_share`: see runner.scheduling.latency.PollTiming. `jitter`:
    the share by which a poll may come later than planned (never earlier:
    an early poll is a wasted call), so jobs submitted together do not poll
    together.
    `deadline`: a job still not done at this age is left to the next run.
    """

    prior: float = 10.0
    first_quantile: float = 0.45
    first_margin: float = 1.075
    step_share: float = 0.095
    min_step: float = 0.1
    max_step: float = 15.0
    scout_ratio: float = 2.0
    scout_start: float = 0.125
    tail_survival: float = 0.03
    tail_share: float = 0.2
    retention_share: float = 0.98
    jitter: float = 0.02
    deadline: float = 1800.0
    # Multiplies every duration: a run against a time-scaled emulator polls
    # in the same proportion.
    scale: float = 1.0

    def timing(self, retention: float = math.inf) -> PollTiming:
        """The model's settings, durations scaled; `retention` is already scaled (seconds)."""
        return PollTiming(
            prior=self.prior * self.scale,
            first_quantile=self.first_quantile,
            first_margin=self.first_margin,
            step_share=self.step_share,
            min_step=self.min_step * self.scale,
            max_step=self.max_step * self.scale,
            scout_ratio=self.scout_ratio,
            scout_start=self.scout_start,
            tail_survival=self.tail_survival,
            tail_share=self.tail_share,
            retention=retention,
            retention_share=self.retention_share,
        )


class Polling:
    """The run's latency model and its one scout; hands out a `JobPolls` per job.

    `retention`: how long the server keeps a job, seconds (already scaled).
    """

    def __init__(
        self,
        policy: PollPolicy,
        rng: random.Random,
        size: int = 128,
        *,
        retention: float = math.inf,
    ) -> None:
        self._policy = policy
        self._rng = rng
        self.model = LatencyModel(policy.timing(retention), size=size)
        self._scout: JobPolls | None = None
        self._changed: anyio.Event | None = None
        # Jobs polling now, for what their "not yet" answers say (right-censoring).
        self._active: set[JobPolls] = set()
        self._drained = False  # no more jobs will start (`drained`)
        self._coming = 0  # jobs started that have neither polled nor ended (`expect`)

    @property
    def policy(self) -> PollPolicy:
        """The settings this run polls with."""
        return self._policy

    def expected(self) -> float:
        """The median latency in seconds (the prior until a job finished)."""
        return self.model.median()

    def job(self) -> JobPolls:
        """A new job's polls."""
        coming = _COMING.get()
        if coming is not None and coming.polling is self:
            coming.arrive()
        polls = JobPolls(self)
        self._active.add(polls)
        return polls

    @property
    def _last(self) -> bool:
        """The end game: no more jobs will start, and every job started is polling or ended."""
        return self._drained and self._coming == 0

    def expect(self) -> Callable[[], None]:
        """A job started that may poll later (it has its submit ahead): hold the end game.

        Returns what to call when it ends (idempotent); its first `job()`,
        in the same task, counts as that too. A batch dispatched at once
        but paced by the rate limit is not in its end game until its last
        submit was answered.
        """
        self._coming += 1
        coming = _Coming(self)
        _COMING.set(coming)
        return coming.arrive

    def drained(self) -> None:
        """No more jobs will start: the run ends with the detection of those running.

        Once every job `expect`ed also polls (or ended), a first poll is
        never later than the age by which every job seen so far was done
        (`latency.first_poll`'s `last`).
        """
        self._drained = True

    def observe_sync(self, latency: float) -> None:
        """A v1 job's latency (seconds): the call waited for the job, so it is the bracket."""
        self.model.observe(latency, latency)
        self._wake()

    # -- for JobPolls ----------------------------------------------------------

    def _learn(self, lo: float, hi: float, metrics: Metrics) -> Bracket:
        seen = _seen(lo, hi, metrics)
        self.model.observe(seen.lo, seen.hi)
        self._wake()
        return seen

    def _restate(self, was: Bracket, lo: float, hi: float, metrics: Metrics) -> None:
        now = _seen(lo, hi, metrics)
        if now != was:
            self.model.restate(was, now)

    def _claim_scout(self, polls: JobPolls) -> bool:
        if self._scout is None:
            self._scout = polls
        return self._scout is polls

    def _first_poll(self) -> float:
        # The jobs still out that said "not yet": without them the model
        # would know only the jobs fast enough to have finished.
        self.model.running(tuple(p.lower for p in self._active if p.polls))
        return first_poll(self.model, last=self._last)

    def _release(self, polls: JobPolls) -> None:
        if self._scout is polls:
            self._scout = None
            self._wake()

    async def _changes(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _later(self, age: float, target: float) -> float:
        """`target`, moved later by up to `jitter` of the wait from `age` (never past `latest`)."""
        wait = max(0.0, target - age)
        late = target + wait * self._rng.uniform(0.0, self._policy.jitter)
        return latest(self.model.timing, age, late)


class _Coming:
    """One job `Polling.expect`ed: counted until it polls or ends."""

    __slots__ = ("here", "polling")

    def __init__(self, polling: Polling) -> None:
        self.polling = polling
        self.here = False

    def arrive(self) -> None:
        if not self.here:
            self.here = True
            self.polling._coming -= 1


# The job this task runs (each job is a task of its own), for `Polling.job`.
_COMING: contextvars.ContextVar[_Coming | None] = contextvars.ContextVar(
    "runner_polling_coming", default=None
)


def _seen(lo: float, hi: float, metrics: Metrics) -> Bracket:
    stated = server_latency(metrics.total_time, metrics.queue_time, metrics.inference_time)
    return observed(lo, hi, stated=stated, inference=metrics.inference_time)


class JobPolls:
    """One job's polls: which age to ask at next, and what its answers taught.

    Use `next_age` before each poll, `not_done` after each "not yet",
    `completed` when a status says COMPLETED before the result is fetched,
    `done` on the first "done" (the result), and `close` in every case
    (idempotent).
    """

    def __init__(self, polling: Polling) -> None:
        self._polling = polling
        self._asked = 0  # polls answered "not yet"
        self._lo = 0.0  # age at the send of the last "not yet"
        self._queued = False
        self._closed = False
        # What `completed` taught (the bracket, the age it was seen done at).
        self._seen: tuple[Bracket, float] | None = None

    @property
    def polls(self) -> int:
        """Polls answered "not yet" so far."""
        return self._asked

    @property
    def lower(self) -> float:
        """The age (seconds) at the send of the last "not yet" answer (0 before any)."""
        return self._lo

    async def next_age(self, age: float) -> float:
        """The age (seconds) to poll at next; `age` is the job's age now.

        Returns at once when the model knows something or this job scouts;
        otherwise waits until the scout (or another job) teaches something,
        the scout's role is free, or the retention's share is reached (then
        that age). Never past the retention's share (`latency.latest`).
        """
        polling = self._polling
        started = anyio.current_time() - age
        while True:
            model = polling.model
            if model.count > 0:
                polling._release(self)
                if self._asked == 0:
                    return polling._later(age, max(age, polling._first_poll()))
                target = next_poll(model, self._lo, queued=self._queued, last=polling._last)
                return polling._later(age, max(age, target))
            if polling._claim_scout(self):
                return latest(model.timing, age, self._scout_age(age))
            cutoff = latest(model.timing, age, math.inf)
            if cutoff <= age:
                return age
            with anyio.move_on_after(cutoff - age):
                await polling._changes()
            age = max(age, anyio.current_time() - started)

    def _scout_age(self, age: float) -> float:
        timing = self._polling.model.timing
        # The next point of the geometric schedule after both the last poll
        # and now: a job that takes the role late does not replay the start.
        floor = max(age, self._lo)
        k = 0
        while scout_schedule(timing, k) <= floor and k < 64:
            k += 1
        target = scout_schedule(timing, k)
        return target if math.isfinite(target) else floor

    def not_done(self, sent_age: float, state: State) -> None:
        """A poll sent at `sent_age` (seconds) answered `state`, not terminal."""
        self._asked += 1
        self._lo = max(self._lo, sent_age)
        self._queued = state == "QUEUED"

    def completed(self, answered_age: float, metrics: Metrics) -> None:
        """A status answer that arrived at `answered_age` (seconds) says the job is done.

        Taught at once: jobs waiting for what this one teaches (the scout's
        batch) go on now, not after its result call, which on a server that
        renders the image then may take longer than the status did. The
        result's stated latency refines it (`done`).
        """
        if self._closed or self._seen is not None:
            return
        self._seen = (self._polling._learn(self._lo, answered_age, metrics), answered_age)
        self._polling._active.discard(self)  # no longer "running" for the others

    def done(self, answered_age: float, metrics: Metrics) -> None:
        """The first "done" answer arrived at `answered_age` (seconds), with the job's metrics.

        After `completed`, the observation it made is narrowed by what these
        metrics state, at the age the status saw the job done.
        """
        if self._seen is not None:
            was, at = self._seen
            self._polling._restate(was, self._lo, at, metrics)
        elif not self._closed:
            self._polling._learn(self._lo, answered_age, metrics)
        self.close()

    def close(self) -> None:
        """The job polls no more: give the scout's role back if it held it."""
        self._closed = True
        self._polling._active.discard(self)
        self._polling._release(self)
