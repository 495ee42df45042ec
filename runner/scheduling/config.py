"""The limits and policies of one run (configuration, separate from a run's state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from runner.scheduling.polling import PollPolicy
from runner.scheduling.rate import RateModel
from runner.scheduling.retry import RetryPolicy

RateScope = Literal["submit", "all"]

DEFAULT_MAX_DOWNLOAD = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Limits and policies of one run. Durations in seconds, already time-scaled."""

    rpm: int | None = 5
    rpm_auto: bool = False  # no declared limit: learn it (rpm is then None)
    rate_scope: RateScope = "submit"
    rate_model: RateModel = "window"
    window: float = 60.0
    margin: float = 1.0
    max_in_flight: int | None = None  # None: auto (Little's law)
    # Billed sends on the wire at once (not polls): a kill costs at most this
    # many paid submits whose answers no one read.
    max_submits_in_flight: int = 4
    poll: PollPolicy = field(default_factory=PollPolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Ambiguous submits retried in one run, at most one per job: each may be
    # a duplicate charge, so a storm of lost answers must not become a
    # storm of payments. At least this many; 5 % of the run's jobs when more.
    max_ambiguous_retries: int = 10
    retention: float = 3600.0
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD
    seed: int | None = None
