"""The one wall clock: UTC epoch seconds for sidecars, ledgers and logs.

Durations and pacing inside the core come from anyio's clock
(`anyio.current_time`), which tests replace with a virtual one. Wall-clock
stamps (when a job was submitted, when a run started) come from `wall_time`
alone, and code that needs one takes a ``wall: WallClock`` parameter that
defaults to it, so a test can pass its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

WallClock = Callable[[], float]
"""A function returning UTC epoch seconds."""


def wall_time() -> float:
    """Now, as UTC epoch seconds."""
    return time.time()


def utc_datetime(epoch: float | None = None) -> datetime:
    """An aware UTC datetime for `epoch` (default: now, from `wall_time`)."""
    return datetime.fromtimestamp(wall_time() if epoch is None else epoch, tz=UTC)


def iso_utc(epoch: float | None = None) -> str:
    """``2026-12-01T09:30:00Z`` for `epoch` (default: now), to the second."""
    return utc_datetime(epoch).strftime("%Y-%m-%dT%H:%M:%SZ")
