"""How long a job takes, learned from what polling saw. Pure: no clock, no I/O.

Polling does not observe a job's latency; it observes a *bracket*: the job
was not done at age `lo` (its last "not yet" answer) and was done at age
`hi` (its first "done" answer). Taking `hi` as the latency, as a naive
tracker does, counts the detection delay as latency: the next first poll is
placed later, the delay grows, and so on. A server that reports the job's
own time (`total_time`, or `queue_time` + `inference_time`) gives the exact
latency instead; `inference_time` alone covers only the PROCESSING half of a
job that also queued, and never anchors anything here.

`LatencyModel` keeps the last `size` observations (exact points and
brackets) and estimates the distribution by Turnbull's self-consistency
algorithm (B. W. Turnbull, "The empirical distribution function with
arbitrarily grouped, censored and truncated data", JRSS B 38, 1976) on a
fixed grid: each bracket's weight is spread over the grid cells it covers in
proportion to the current estimate, a few rounds. A bracket from a first
poll that already saw the job done, (0, hi], then borrows its shape from the
other jobs instead of being read as "somewhere between 0 and hi" uniformly.

`first_poll` and `next_poll` turn the model into delays; before anything is
known, a *scout* polls on a geometric schedule from the prior, so a prior 5x
off in either direction costs a few calls of one job, not of all of them.
Times are seconds on the caller's clock (time-scaled).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

_CELLS = 48
_ROUNDS = 8
# Recompute the estimate after this many new observations (it costs ~cells x
# observations x rounds multiplications), and at every one of the first 32
# (while a few points move the estimate most); never when nothing is new.
_REFIT_EVERY = 4
_REFIT_ALWAYS_BELOW = 32
# `first_poll` is capped by `all_done_by` from this many observations on (the
# largest of 20 is about the 95th percentile: a cap there finds no fewer jobs
# at one poll), and from the first one once no more jobs will start.
_DONE_BY_FROM = 20


@dataclass(frozen=True, slots=True)
class Bracket:
    """A job's latency lies in (lo, hi]; lo == hi is an exact observation. Seconds."""

    lo: float
    hi: float

    @property
    def exact(self) -> bool:
        """Whether the latency is known to the point."""
        return self.lo >= self.hi


@dataclass(frozen=True, slots=True)
class PollTiming:
    """How polls are placed. Seconds on the clock (already time-scaled) but the shares.

    `prior`: the latency believed before any job finished. `first_quantile`,
    `first_margin`: the first poll goes at `first_margin` x the age by which
    this share of jobs is done. `step_share`: later
    polls every this share of the job's age (the detection delay it allows).
    `scout_ratio`: the scout's geometric step; `scout_start`: its first poll
    as a share of the prior.
    `tail_share`: the step of a job older than all but `tail_survival` of
    the jobs. `retention`: how long the server keeps
    a job (seconds; inf: for ever); no poll is placed past `retention_share`
    of it (`latest`).
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
    retention: float = math.inf
    retention_share: float = 0.98


def latest(timing: PollTiming, age: float, target: float) -> float:
    """`target` (a poll's age, seconds), brought forward to the retention's share.

    Whatever step the model or the scout would take, a job is asked before
    the server forgets it: one re-attached at 59 minutes of Segmind's hour is
    asked at once (never before `age`, now), not a geometric step later when
    its paid result is gone.
    """
    return min(target, max(age, timing.retention * timing.retention_share))


def server_latency(
    total_time: float | None, queue_time: float | None, inference_time: float | None
) -> float | None:
    """The job's own latency as the server states it, or None when it does not.

    `total_time`, else `queue_time` + `inference_time`; never `inference_time`
    alone (it leaves out the queue).
    """
    if total_time is not None and math.isfinite(total_time) and total_time >= 0:
        return total_time
    if queue_time is None or inference_time is None:
        return None
    both = queue_time + inference_time
    return both if math.isfinite(both) and queue_time >= 0 and inference_time >= 0 else None


class LatencyModel:
    """The latency distribution of recent jobs (see the module docstring)."""

    def __init__(self, timing: PollTiming, size: int = 64) -> None:
        self._timing = timing
        self._obs: deque[Bracket] = deque(maxlen=size)
        self._edges: list[float] = []
        self._cdf: list[float] = []
        self._since_fit = 0
        self._running: tuple[float, ...] = ()
        self._running_fitted: tuple[float, ...] = ()
        self._done_by: float | None = None  # cached `all_done_by` of the observations

    @property
    def timing(self) -> PollTiming:
        """The settings this model was made with."""
        return self._timing

    @property
    def count(self) -> int:
        """Observations remembered."""
        return len(self._obs)

    def observe(self, lo: float, hi: float) -> None:
        """A job was not done at age `lo` and done at age `hi` (seconds; lo = hi: exact)."""
        lo, hi = max(0.0, lo), max(0.0, hi)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return
        self._obs.append(Bracket(min(lo, hi), hi))
        self._since_fit += 1
        self._done_by = None

    def restate(self, was: Bracket, now: Bracket) -> None:
        """Replace the remembered observation `was` by `now` (a no-op once it is forgotten).

        A job seen done by its status is observed at once, so the jobs
        waiting for it need not wait for its result call; the latency the
        result then states narrows that observation here.
        """
        for i in range(len(self._obs) - 1, -1, -1):
            if self._obs[i] == was:
                self._obs[i] = now
                self._since_fit += 1
                self._done_by = None
                return

    def running(self, ages: tuple[float, ...]) -> None:
        """Jobs still running were not done at these ages (seconds): right-censored.

        Without them a run whose windows come faster than its slow jobs
        finish would learn only from the fast ones, and poll too early.
        Capped at `size` ages, the oldest kept.
        """
        self._running = tuple(sorted(ages)[-(self._obs.maxlen or 64) :])

    def quantile(self, q: float) -> float:
        """The age by which a share `q` (0..1) of jobs is done; the prior while none is."""
        if not self._obs:
            return self._timing.prior
        self._fit()
        q = min(max(q, 0.0), 1.0)
        i = bisect.bisect_left(self._cdf, q)
        if i <= 0:
            return self._edges[0]
        if i >= len(self._cdf):
            return self._edges[-1]
        lo_c, hi_c = self._cdf[i - 1], self._cdf[i]
        share = 0.0 if hi_c <= lo_c else (q - lo_c) / (hi_c - lo_c)
        return self._edges[i - 1] + share * (self._edges[i] - self._edges[i - 1])

    def median(self) -> float:
        """The median latency in seconds."""
        return self.quantile(0.5)

    def all_done_by(self) -> float:
        """The age (seconds) by which every remembered job was seen done.

        The largest `hi` of the observations; inf before any, or while a
        running job (`running`) is older than that and still not done: the
        jobs are slower than those seen.
        """
        if not self._obs:
            return math.inf
        if self._done_by is None:
            self._done_by = max(b.hi for b in self._obs)
        if self._running and self._running[-1] >= self._done_by:
            return math.inf
        return self._done_by

    def survival(self, age: float) -> float:
        """The share of jobs not yet done at `age`."""
        if not self._obs:
            return 1.0
        self._fit()
        return 1.0 - self._cdf_at(age)

    # -- Turnbull on a grid --------------------------------------------------

    def _fit(self) -> None:
        same_running = self._running == self._running_fitted
        if self._cdf and (
            (self._since_fit == 0 and same_running)
            or (self._since_fit < _REFIT_EVERY and self.count >= _REFIT_ALWAYS_BELOW)
        ):
            return
        self._since_fit = 0
        self._running_fitted = self._running
        obs = list(self._obs)
        # A running job's bracket is (age, beyond the grid's end]: room past the oldest.
        oldest = max(self._running, default=0.0)
        top = max(oldest * 1.25, *(b.hi for b in obs))
        if top <= 0:
            self._edges, self._cdf = [0.0, 0.0], [0.0, 1.0]
            return
        width = top / _CELLS
        edges = [width * k for k in range(_CELLS + 1)]
        # Each observation as the cells it may lie in (an exact one: its own cell).
        spans: list[range] = []
        for b in obs:
            if b.exact:
                k = min(_CELLS - 1, max(0, math.ceil(b.hi / width) - 1))
                spans.append(range(k, k + 1))
            else:
                first = min(_CELLS - 1, max(0, math.floor(b.lo / width)))
                last = min(_CELLS - 1, max(first, math.ceil(b.hi / width) - 1))
                spans.append(range(first, last + 1))
        for age in self._running:
            first = min(_CELLS - 1, max(0, math.floor(age / width)))
            spans.append(range(first, _CELLS))
        p = [1.0 / _CELLS] * _CELLS
        for _ in range(_ROUNDS):
            new = [0.0] * _CELLS
            for span in spans:
                total = sum(p[k] for k in span)
                if total <= 0:
                    share = 1.0 / len(span)
                    for k in span:
                        new[k] += share
                    continue
                for k in span:
                    new[k] += p[k] / total
            n = len(spans)
            p = [v / n for v in new]
        cdf = [0.0]
        for v in p:
            cdf.append(cdf[-1] + v)
        cdf[-1] = 1.0
        self._edges, self._cdf = edges, cdf

    def _cdf_at(self, x: float) -> float:
        """The fitted share of jobs done by age `x` (1 past the grid)."""
        edges, cdf = self._edges, self._cdf
        i = bisect.bisect_right(edges, x)
        if i <= 0:
            return 0.0
        if i >= len(edges):
            return 1.0
        lo_e, hi_e = edges[i - 1], edges[i]
        share = (x - lo_e) / (hi_e - lo_e) if hi_e > lo_e else 1.0
        return cdf[i - 1] + share * (cdf[i] - cdf[i - 1])


def scout_schedule(timing: PollTiming, polls: int) -> float:
    """The age of a scout's `polls`-th poll (0-based): prior x start x ratio^polls."""
    return timing.prior * timing.scout_start * timing.scout_ratio**polls


def first_poll(model: LatencyModel, *, last: bool = False) -> float:
    """The age of a job's first poll, once the model knows something (see `scout_schedule`).

    `first_margin` (1.075) x the age by which `first_quantile` (0.45) of
    the jobs are done: a job from that quantile up is found within 7.5 % of
    its latency by this poll (about 8.5 % with the jitter), or within
    `step_share` (9.5 %) by the later ones, so more than half the jobs are
    found within 10 % whatever the spread (issue 12's target is the median),
    with room for the estimate's error. Under that constraint the poll goes
    as late as it may, so that most jobs cost one poll: at a lognormal
    spread of sigma 0.25 it lands at 1.04 x the median (about 58 % of the
    jobs at one poll, 57 % within 10 %: the two medians balanced), at 0.05
    it finds about 93 % of them. On the status path (a remote host: submit,
    status, result) each poll past the first is a call more than the three
    a job costs at least.

    Never later than `all_done_by`, the age by which every remembered job
    was seen done, once 20 are remembered (the largest of 20 is about the
    95th percentile): past it a later poll finds hardly more jobs at one
    poll, it only adds delay. When jobs take about the same time (a spread
    narrower than the margin; at sigma 0.05 the cap stays above 1.075 x
    q45) the first poll then lands at their latency, not 7.5 % after it.
    `last`: no more jobs will start (the run's end is the detection of the
    jobs now running): the cap holds from the first job seen done, so a
    batch that fits in one window polls at what its scout saw, at the cost
    of a poll more for a job slower than every one seen.
    """
    t = model.timing
    first = model.quantile(t.first_quantile) * t.first_margin
    if last or model.count >= _DONE_BY_FROM:
        return min(first, model.all_done_by())
    return first


def next_poll(
    model: LatencyModel, age: float, *, queued: bool = False, last: bool = False
) -> float:
    """The age of the next poll after a "not yet" answer at `age`.

    A step of `step_share` of the job's age (of the median while younger),
    bounded: the detection delay of a late job stays within that share of
    its latency, and a late job costs a poll per that share of its age, not
    of the median; `tail_share` past all but `tail_survival` of the jobs. A
    job still QUEUED waits at least half the median more, since all its
    work is ahead. Never before the first poll's age (`last`: as there).
    """
    t = model.timing
    median = model.median()
    # Past the bulk of the jobs (a job queued behind others, an outlier) the
    # model no longer says where it ends, and a late few do not move the
    # median delay: wider steps there.
    share = t.step_share if model.survival(age) > t.tail_survival else t.tail_share
    step = max(age, median) * share
    if queued:
        step = max(step, 0.5 * median)
    step = min(max(step, t.min_step), t.max_step)
    return max(age + step, first_poll(model, last=last))


# A stated latency may sit a little outside the bracket: the server counts
# from its acceptance (before our submit's answer arrived) and rounds.
_STATED_SLACK = 0.02


def observed(lo: float, hi: float, *, stated: float | None, inference: float | None) -> Bracket:
    """What one job teaches: its poll bracket (lo, hi], narrowed by what the server stated.

    Seconds of the job's age. The bracket is a fact of this client's clock;
    a stated latency (`server_latency`) is a belief, kept only where it fits
    the bracket (then it is exact). `inference` (`inference_time`) is never a
    latency, but it is a lower bound of one (a job queues, then computes), so
    it may raise `lo`.
    """
    lo, hi = max(0.0, lo), max(0.0, hi)
    lo = min(lo, hi)
    slack = _STATED_SLACK * hi
    if stated is not None and math.isfinite(stated) and lo - slack <= stated <= hi + slack:
        point = min(max(stated, lo), hi)
        return Bracket(point, point)
    if inference is not None and math.isfinite(inference) and lo < inference <= hi + slack:
        lo = min(inference, hi)
    return Bracket(lo, hi)
