"""Progress for people (a tqdm bar) and for pipelines (one JSON event per line).

Both are scheduler listeners: they read events and stats snapshots and never
reach back into the run. The scheduler calls them from their own tasks
(runner.scheduling.broadcast): one that raises is dropped and the run goes on.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import IO, Never

from tqdm import tqdm

from runner.events import Event, RunStats
from runner.plan import duration

_FINAL = frozenset({"completed", "failed", "skipped", "cached", "expired"})


# How often a run whose progress goes to a log (not a terminal) says where it is.
STATUS_EVERY_S = 30.0


class ProgressBar:
    """done / failed / in flight / waiting / credits spent, with tqdm's rate and ETA.

    On a terminal: a bar. When the stream is not a terminal (a CI log), one
    status line at each change of the run's state (running, waiting for the
    rate window, stopping, finished) and at most one every `status_every`
    seconds of the run's clock otherwise (the event's `at`: a virtual clock
    in tests). Quiet with `enabled` False (`--no-progress`). Drawn from the
    run's first event on, so notices printed before the run stay above it.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        stream: IO[str] | None = None,
        status_every: float = STATUS_EVERY_S,
    ) -> None:
        self._enabled = enabled
        self._stream = stream or sys.stderr
        self._bar: tqdm[Never] | None = None
        self._status_every = status_every
        self._lines = enabled and not _is_terminal(self._stream)
        self._last_state: str | None = None
        self._last_at: float | None = None

    def _open(self, total: int | None) -> tqdm[Never]:
        return tqdm(
            total=total,
            unit="job",
            dynamic_ncols=True,
            disable=None if self._enabled else True,
            file=self._stream,
            leave=True,
        )

    def opening(self, planned: int | None) -> None:
        """One line at once, before the run's first call: a slow first answer (the
        key and balance check against a remote host) would otherwise leave the
        user with nothing on the screen or in the log for as long as it takes."""
        if not self._enabled:
            return
        jobs = f"{planned:,} job(s)" if planned is not None else "the jobs"
        self._stream.write(f"status: starting; {jobs}, the first request on its way\n")
        self._stream.flush()

    def __call__(self, event: Event, stats: RunStats) -> None:
        if self._lines:
            self._status(event, stats)
            return
        if self._bar is None:
            self._bar = self._open(stats.planned)
        bar = self._bar
        bar.set_postfix_str(
            f"{_counters(stats)} ${stats.credits_spent:.2f}{rate_note(stats)}", refresh=False
        )
        if event.kind == "skipped":
            # Jobs an earlier run finished: on the bar, but not in its rate and
            # ETA (tqdm counts from `initial`), which are this run's alone.
            bar.n += event.count
            bar.last_print_n += event.count
            bar.initial += event.count
            bar.refresh()
        elif event.kind in _FINAL:
            bar.update(event.count)
        if event.kind in _TOLD:
            bar.write(f"{event.kind}: {event.detail}", file=self._stream)

    def _status(self, event: Event, stats: RunStats) -> None:
        if event.kind in _TOLD:
            self._stream.write(f"{event.kind}: {event.detail}\n")
        state = run_state(event, stats)
        due = self._last_at is None or event.at - self._last_at >= self._status_every
        if state == self._last_state and not due:
            return
        self._last_state, self._last_at = state, event.at
        done = f"{stats.done:,}" + (f"/{stats.planned:,}" if stats.planned is not None else "")
        self._stream.write(
            f"status: {state}{rate_note(stats)}; {done} done ({_counters(stats)}; "
            f"${stats.credits_spent:.2f}); {stats.elapsed:.0f} s\n"
        )
        self._stream.flush()

    def close(self) -> None:
        """Finish the bar's line."""
        if self._bar is not None:
            self._bar.close()


_TOLD = frozenset({"rate_limited", "ambiguous", "stopping", "price"})


def run_state(event: Event, stats: RunStats) -> str:
    """The run's state in words, for the status lines."""
    if event.kind == "finished":
        return "finished"
    if stats.stopped:
        return "stopping"
    if stats.waiting and not stats.in_flight:
        return "waiting for the rate window"
    return "running"


# A slot closer than this is as good as open: "next slot in 0 s" only flickered
# between the real waits (the gate admits the call before anyone can read it).
_SLOT_NOW_S = 1.0


def rate_note(stats: RunStats) -> str:
    """While jobs wait for the window: " (next slot in 12 s, ETA by the rate ~2 min 10 s)".

    Seconds of the run's clock. A slot under a second away is not mentioned
    (the ETA still is, when known); an unbounded one waits for a call on
    the wire to end.
    """
    if not stats.waiting or stats.next_slot_s is None:
        return ""
    if not math.isfinite(stats.next_slot_s):
        return " (next slot when a call on the wire ends)"
    parts = [] if stats.next_slot_s < _SLOT_NOW_S else [f"next slot in {stats.next_slot_s:.0f} s"]
    if stats.rate_eta_s is not None:
        parts.append(f"ETA by the rate ~{duration(stats.rate_eta_s)}")
    return f" ({', '.join(parts)})" if parts else ""


def _counters(stats: RunStats) -> str:
    text = f"ok {stats.completed} failed {stats.failed} in flight {stats.in_flight}"
    return text + (f" waiting {stats.waiting}" if stats.waiting else "")


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream: no terminal
        return False


class JsonEvents:
    """One JSON object per line for pipelines (`runner run --json`).

    Each line: the event (`event`, `wall`, `key`, `prompt_id`, `detail`,
    `credits`, `count`: the jobs it stands for, more than 1 for a batch of
    skipped jobs) and the run's counters as they were (`completed`, `failed`,
    `skipped`, `in_flight`, `waiting`, `credits_spent`); see docs/store.md
    "Resume".
    """

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
            "count": event.count,
            "completed": stats.completed,
            "failed": stats.failed,
            "skipped": stats.skipped,
            "in_flight": stats.in_flight,
            "waiting": stats.waiting,
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
