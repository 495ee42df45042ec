"""What the parts of one run share: its fixed context and its counters.

The scheduler builds one `RunContext` per `Scheduler`; the dispatcher, the
per-job runner and the calls read it. Only `Tally` and the objects it points
to (the cap, the polling model, the stop, the price book) change while the run goes.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from runner.backends.base import Backend
from runner.events import EventKind
from runner.jobs import Job
from runner.scheduling.config import SchedulerConfig
from runner.scheduling.credits import Credits
from runner.scheduling.inflight import InFlightCap
from runner.scheduling.lifecycle import JobEvent
from runner.scheduling.polling import Polling
from runner.scheduling.prices import PriceBook
from runner.scheduling.rate import RateLimit
from runner.scheduling.stop import Stop

Publish = Callable[[JobEvent], Awaitable[None]]
"""Hand a job's record to the sink, the source and the listeners, in that order."""

Emit = Callable[[EventKind, Job | None, str], None]
"""Tell the listeners of something that is not a job's transition (a retry, a 429)."""


@dataclass(slots=True)
class Tally:
    """The run's counters: jobs by how they ended, calls by operation."""

    counts: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    planned: int | None = None
    ambiguous_retries: int = 0


@dataclass(frozen=True, slots=True)
class RunContext:
    """The fixed parts of one run. `wall` gives UTC epoch seconds."""

    backend: Backend
    guard: Credits
    config: SchedulerConfig
    gate: RateLimit
    wall: Callable[[], float]
    rng: random.Random
    polls: Polling
    cap: InFlightCap
    stop: Stop
    tally: Tally
    publish: Publish
    emit: Emit
    # What jobs are reserved at, learned from what the API charges.
    prices: PriceBook
    # Places for billed sends on the wire (config.max_submits_in_flight).
    submits: anyio.CapacityLimiter
