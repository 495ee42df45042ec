"""How a run stops: one frozen state, replaced in one place.

A stop is asked for by the budget (the next job does not fit), the API's
406, an interrupt, or a fatal error (a refused key, a disk fault). What it
does is the `StopState`: no new job starts once there is a `reason`;
`hold_submits` keeps jobs dispatched but not yet sent from sending;
`abandon_polls` stops submitted jobs polling (they stay in the ledger as
submitted, to be re-attached while the server keeps them); `fatal` is the
error the run raises when it has wound down. Jobs whose billed call is on the
wire finish it either way, so a stop never makes a submit ambiguous by itself.

Stopping only ever tightens: a later request never clears what an earlier
one set, and the first reason is the one reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import anyio

from runner.errors import RunnerError


@dataclass(frozen=True, slots=True)
class StopState:
    """What a stop asks of the run (see the module docstring)."""

    reason: str | None = None
    hold_submits: bool = False
    abandon_polls: bool = False
    fatal: RunnerError | None = None

    @property
    def stopped(self) -> bool:
        """No new job starts."""
        return self.reason is not None


class Stop:
    """The run's stop state, and the cancel scopes of the polls an abandon cancels.

    `on_stopping` is told the reason once, when the run first stops.
    """

    def __init__(self, on_stopping: Callable[[str], None]) -> None:
        self.state = StopState()
        self._on_stopping = on_stopping
        self._polls: set[anyio.CancelScope] = set()

    def request(
        self,
        reason: str,
        *,
        hold_submits: bool = True,
        abandon_polls: bool = False,
        announce: bool = True,
    ) -> None:
        """Stop new jobs; see runner.scheduling.scheduler.Scheduler.request_stop."""
        old = self.state
        self.state = replace(
            old,
            reason=old.reason or reason,
            hold_submits=old.hold_submits or hold_submits,
            abandon_polls=old.abandon_polls or abandon_polls,
        )
        if old.reason is None and announce:
            self._on_stopping(reason)
        if abandon_polls:
            for scope in list(self._polls):
                scope.cancel()

    def fail(self, err: RunnerError) -> None:
        """A fatal error: the run winds down, leaves its jobs re-attachable, then raises it."""
        if self.state.fatal is None:
            self.state = replace(self.state, fatal=err)
        # Not announced: the error is raised to the caller, who reports it
        # once; a "stopping:" line with the same text would say it twice.
        self.request(str(err), abandon_polls=True, announce=False)

    @contextmanager
    def polling(self) -> Iterator[anyio.CancelScope]:
        """A cancel scope for one job's polls, cancelled when the run abandons them.

        Already cancelled if it has: a job whose submit answer arrives after
        the stop must not start polling either.
        """
        scope = anyio.CancelScope()
        if self.state.abandon_polls:
            scope.cancel()
        self._polls.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._polls.discard(scope)
