"""When to poll a submitted job: from observed latency, not a fixed cadence.

The first poll is placed near the expected completion (the median latency of
the jobs finished so far in this run, or a guess of ~10 s before any has
finished); after that, short steps of a fraction of the expected latency,
bounded, so the detection delay stays near that fraction while the number of
status calls per job stays near one or two. A job still QUEUED waits longer
than one PROCESSING, since its whole inference is still ahead. Every delay
gets a little jitter so jobs submitted together do not poll together.
"""

from __future__ import annotations

import random
import statistics
from collections import deque
from dataclasses import dataclass

from runner.backends.base import State


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Polling settings in seconds (before `scale`)."""

    first_guess: float = 10.0
    step_fraction: float = 0.08
    min_step: float = 0.5
    max_step: float = 15.0
    jitter: float = 0.1
    deadline: float = 1800.0
    # Multiplies every duration: a run against a time-scaled emulator polls
    # in the same proportion.
    scale: float = 1.0


class LatencyTracker:
    """Recent latencies (submit to seen COMPLETED) and server inference times, in seconds."""

    def __init__(self, policy: PollPolicy, size: int = 64) -> None:
        self._policy = policy
        self._latency: deque[float] = deque(maxlen=size)
        self._inference: deque[float] = deque(maxlen=size)

    def observe(self, latency: float, inference: float | None = None) -> None:
        """Record a finished job."""
        self._latency.append(max(0.0, latency))
        if inference is not None and inference >= 0:
            self._inference.append(inference)

    @property
    def policy(self) -> PollPolicy:
        """The settings this tracker was made with."""
        return self._policy

    @property
    def finished(self) -> int:
        """How many latencies are remembered."""
        return len(self._latency)

    def expected(self) -> float:
        """The expected time from submit to completion."""
        if not self._latency:
            return self._policy.first_guess * self._policy.scale
        return statistics.median(self._latency)

    def inference(self) -> float:
        """The expected server compute time of one job."""
        if self._inference:
            return statistics.median(self._inference)
        return self.expected()


def first_poll_delay(tracker: LatencyTracker, rng: random.Random) -> float:
    """Seconds from submit to the first status call.

    Aimed at the expected completion, or at the server's own inference time
    when that is shorter. A latency seen by polling includes the delay of
    the poll that saw the job done, and that poll is placed at the median
    of such latencies: on its own the median only ever grows (about 5 % each
    time half the tracker turns over, without bound: a 600-job run went from
    5 % to 60 % detection delay) and never comes down from a first guess
    that was too long. The
    server's inference time carries no polling delay, so it anchors the
    first poll wherever the server reports it.

    Jitter only later, never earlier, than the target: a poll just before
    it is a wasted call.
    """
    j = tracker.policy.jitter
    target = min(tracker.expected(), tracker.inference())
    return target * rng.uniform(1.0, 1.0 + j)


def next_poll_delay(tracker: LatencyTracker, state: State, rng: random.Random) -> float:
    """Seconds from a status answer of `state` (not terminal) to the next call."""
    p = tracker.policy
    step = tracker.expected() * p.step_fraction
    if state == "QUEUED":
        step = max(step, tracker.inference() * 0.5)
    step = min(max(step, p.min_step * p.scale), p.max_step * p.scale)
    return _jittered(step, tracker, rng)


def _jittered(delay: float, tracker: LatencyTracker, rng: random.Random) -> float:
    j = tracker.policy.jitter
    return max(0.0, delay * rng.uniform(1.0 - j, 1.0 + j))
