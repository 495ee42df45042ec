"""What the scheduler tells its listeners: frozen event records and a stats snapshot.

The core emits; progress bars, summaries and JSON event streams listen. The
core never imports its listeners, and never waits for them: each event goes
on a memory stream that the listener's own task drains
(runner.scheduling.broadcast), so a listener that raises is dropped without
touching a job. The events of a job are derived from the records of its
life (runner.scheduling.lifecycle), the one channel the store and the work
source also consume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

EventKind = Literal[
    "started",  # the run began (detail: how many jobs are planned, if known)
    "skipped",  # already done in an earlier run (resume): `count` jobs at once
    "cached",  # served from the cache of finished jobs (--cache): nothing sent
    "submitted",  # the server accepted the job (detail: request id)
    "reattached",  # polling a request id recorded by an earlier run
    "completed",  # images and sidecars written
    "failed",  # final failure for this run (detail: the reason)
    "expired",  # the server no longer has the result (older than its retention)
    "ambiguous",  # a submit's answer was lost: it may have been accepted and billed
    "rate_limited",  # the server answered 429
    "retry",  # a call is retried (detail: operation and reason)
    "price",  # the API charged more than the price table (detail: the sentence)
    "stopping",  # no new submits (detail: why: budget, 406, interrupt)
    "finished",  # the run ended
]


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. `at` is the anyio clock; `wall` is UTC epoch seconds.

    `count` is how many jobs the event stands for: 1, except a "skipped"
    event, which the resume walk sends once per batch of finished jobs (no
    key then; its detail says what they were), not once per job: a resume
    over 100,000 finished jobs would spend more on its events than on its walk.
    """

    kind: EventKind
    at: float
    wall: float
    key: str | None = None
    prompt_id: str | None = None
    detail: str = ""
    credits: float | None = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class RateInfo:
    """The run's belief about the server's limit: `limit` calls per `window_s` real seconds.

    `limit` None: no limit known; `learned`: a 429 taught it; `rate_limited`:
    429s the gate was told of (counted calls only).
    """

    limit: int | None
    window_s: float
    learned: bool
    rate_limited: int
    declared: int | None


@dataclass(frozen=True, slots=True)
class RunStats:
    """A snapshot of a run's counters. Credits in USD, times in seconds."""

    planned: int | None = None
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    cached: int = 0  # served from --cache: completed at no charge, nothing sent
    expired: int = 0
    in_flight: int = 0  # jobs whose billed call went out and has not ended
    waiting: int = 0  # jobs started but waiting for the rate window (nothing sent)
    images: int = 0
    ambiguous: int = 0
    rate_limited: int = 0
    retries: int = 0
    credits_spent: float = 0.0  # the folder's, earlier runs' charges included (the budget's view)
    credits_earlier: float = 0.0  # of credits_spent: what earlier runs of the folder were charged
    credits_reserved: float = 0.0
    credits_ambiguous: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None
    elapsed: float = 0.0
    rate: RateInfo | None = None  # the learned limit (None: the gate is not a local one)
    # While jobs wait for the rate window (run clock seconds; None: none wait,
    # or the gate cannot say): until the gate admits the next call, and until
    # it has admitted every job not yet sent, at the limit it applies now.
    next_slot_s: float | None = None
    rate_eta_s: float | None = None
    # Each time the API charged more than the price table (runner.scheduling.prices).
    price_surprises: tuple[str, ...] = ()

    @property
    def done(self) -> int:
        """Jobs that reached a state this run will not change."""
        return self.completed + self.failed + self.skipped + self.cached + self.expired


Listener = Callable[[Event, RunStats], None]
"""Told of each event with the stats as they were when it was sent; called from its own task."""
