"""Progress for people (a tqdm bar) and for pipelines (one JSON event per line).

Both are scheduler listeners: they read events and stats snapshots and never
reach back into the run. The scheduler calls them from their own tasks
(runner.scheduling.broadcast): one that raises is dropped and the run goes on.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Never

from tqdm import tqdm

from runner.events import Event, RunStats

_FINAL = frozenset({"completed", "failed", "skipped", "expired"})


class ProgressBar:
    """done / failed / in flight / credits spent, with tqdm's rate and ETA.

    Quiet when the stream is not a terminal (tqdm's `disable=None`) or when
    `enabled` is False (`--no-progress`). The bar is drawn from the run's
    first event on, so notices printed before the run stay above it.
    """

    def __init__(self, *, enabled: bool = True, stream: IO[str] | None = None) -> None:
        self._enabled = enabled
        self._stream = stream or sys.stderr
        self._bar: tqdm[Never] | None = None

    def _open(self, total: int | None) -> tqdm[Never]:
        return tqdm(
            total=total,
            unit="job",
            dynamic_ncols=True,
            disable=None if self._enabled else True,
            file=self._stream,
            leave=True,
        )

    def __call__(self, event: Event, stats: RunStats) -> None:
        if self._bar is None:
            self._bar = self._open(stats.planned)
        bar = self._bar
        bar.set_postfix_str(
            f"ok {stats.completed} failed {stats.failed} in flight {stats.in_flight} "
            f"${stats.credits_spent:.2f}",
            refresh=False,
        )
        if event.kind in _FINAL:
            bar.update(1)
        if event.kind in ("rate_limited", "ambiguous", "stopping", "price"):
            bar.write(f"{event.kind}: {event.detail}", file=self._stream)

    def close(self) -> None:
        """Finish the bar's line."""
        if self._bar is not None:
            self._bar.close()


class JsonEvents:
    """One JSON object per line for pipelines (`runner run --json`)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stdout

    def __call__(self, event: Event, stats: RunStats) -> None:
        record = {
            "event": event.kind,
            "wall": round(event.wall, 3),
            "key": event.key,
            "prompt_id": event.prompt_id,
            "detail": event.detail,
            "credits": event.credits,
            "completed": stats.completed,
            "failed": stats.failed,
            "in_flight": stats.in_flight,
            "credits_spent": round(stats.credits_spent, 6),
        }
        try:
            self._stream.write(json.dumps(record) + "\n")
            self._stream.flush()
        except BrokenPipeError:
            # The reader is gone (`| head -1`): nothing more can reach it.
            if self._stream is sys.stdout:
                detach_stdout()
            raise

    def close(self) -> None:
        """Nothing to release; here so both listeners close alike."""


def detach_stdout() -> None:
    """stdout's reader is gone (a closed pipe): what is still written there goes nowhere.

    Points file descriptor 1 at /dev/null, as Python's documentation advises
    for SIGPIPE: without it the interpreter's last flush of stdout fails
    again at exit and prints a traceback.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # no file descriptor to redirect (a test's stream): nothing to flush at exit
    finally:
        os.close(devnull)
