"""The exit codes of `runner`, and the exit code of `runner run` from how it ended. Pure.

ARCHITECTURE.md's contract, in the order the checks apply (the first match
wins, so an interrupted run that also had failures exits 130):

    130  interrupted (Ctrl-C, SIGTERM)
      2  usage or auth: the key was refused, the settings were unusable
      3  stopped by the credit guard: the budget was reached or the API answered 406
      1  some jobs failed or expired (beyond what `--max-failures` tolerates),
         or jobs were left unfinished with no stop to explain it
      0  every job done (or the failures are tolerated)

`--max-failures` takes a count (``3``: up to three failed jobs are fine) or
a fraction of the jobs (``0.05`` or ``5%``: up to 5 % of them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from runner.errors import AuthError, InsufficientCredits, UsageError

if TYPE_CHECKING:
    from runner.store import State

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_CREDITS: Final = 3
EXIT_INTERRUPTED: Final = 130

StopKind = Literal["credits", "auth", "usage", "interrupted", "error"]
"""Why a run stopped early, as far as the exit code cares.

``credits``: the credit guard (budget or 406); ``auth``: 401/403;
``usage``: bad settings found during the run; ``interrupted``: a signal;
``error``: anything else that ended it (a disk fault): exit 1.
"""


def exit_code(err: BaseException) -> int:
    """The exit code of a command that ended with `err` (a run that raised, or any command)."""
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(err, UsageError | AuthError):
        return EXIT_USAGE
    if isinstance(err, InsufficientCredits):
        return EXIT_CREDITS
    return EXIT_FAILED


_FAILED_STATES: Final = ("failed", "expired")
_UNFINISHED_STATES: Final = ("planned", "submitting", "submitted")


@dataclass(frozen=True, slots=True)
class FailureTolerance:
    """How many failed jobs a run may have and still exit 0.

    Exactly one of `count` (jobs) and `fraction` (of all jobs, 0..1) is set.
    `text` is what the user wrote, for messages.
    """

    count: int | None = None
    fraction: float | None = None
    text: str = ""

    def allows(self, failed: int, total: int) -> bool:
        """Whether `failed` failed jobs out of `total` are within the tolerance."""
        if self.count is not None:
            return failed <= self.count
        if self.fraction is not None:
            # A small epsilon so that 1 of 20 is within "0.05" despite float rounding.
            return failed <= math.floor(self.fraction * total + 1e-9)
        return failed == 0


def parse_max_failures(text: str) -> FailureTolerance:
    """Read `--max-failures`: a whole number of jobs, or a fraction (``0.05``, ``5%``).

    Raises UsageError naming the option and the accepted forms.
    """
    raw = text.strip()
    hint = (
        f"--max-failures: {text!r} is not usable; give a number of jobs (e.g. 3) "
        "or a fraction of the jobs (e.g. 0.05 or 5%)"
    )
    try:
        if raw.endswith("%"):
            fraction = float(raw[:-1]) / 100
        elif raw.isdigit():
            return FailureTolerance(count=int(raw), text=raw)
        else:
            fraction = float(raw)
    except ValueError:
        raise UsageError(hint) from None
    if not 0 <= fraction <= 1:  # also refuses nan
        raise UsageError(hint + " (a fraction lies between 0 and 1)")
    return FailureTolerance(fraction=fraction, text=raw)


@dataclass(frozen=True, slots=True)
class ExitDecision:
    """The exit code and one line saying why (for the summary and the terminal)."""

    code: int
    reason: str


def decide_exit(
    counts: Mapping[State, int] | Mapping[str, int],
    *,
    stop: StopKind | None = None,
    stop_reason: str = "",
    max_failures: FailureTolerance | None = None,
) -> ExitDecision:
    """The exit code of a run whose jobs ended in `counts` (ledger state -> jobs).

    `counts` are the jobs of this manifest (or shard) by ledger state, after
    the run: e.g. ``Ledger.counts()``. `stop` says why the run stopped early,
    if it did, and `stop_reason` is the scheduler's text for it (shown as is).
    `max_failures` is the parsed `--max-failures` (None: no failure tolerated).
    """
    by_state: dict[str, int] = {str(state): n for state, n in counts.items()}
    total = sum(by_state.values())
    failed = sum(by_state.get(state, 0) for state in _FAILED_STATES)
    unfinished = sum(by_state.get(state, 0) for state in _UNFINISHED_STATES)
    because = f": {stop_reason}" if stop_reason else ""
    if stop == "interrupted":
        return ExitDecision(
            EXIT_INTERRUPTED,
            f"interrupted{because}; {unfinished} job(s) left, run again to resume",
        )
    if stop in ("auth", "usage"):
        return ExitDecision(EXIT_USAGE, f"stopped{because or ': ' + stop}")
    if stop == "credits":
        return ExitDecision(
            EXIT_CREDITS,
            f"stopped by the credit guard{because}; {unfinished} job(s) not run "
            "(raise --max-credits or add credits, then run again)",
        )
    if stop == "error":
        return ExitDecision(EXIT_FAILED, f"stopped by an error{because}")
    if unfinished:
        return ExitDecision(
            EXIT_FAILED, f"{unfinished} job(s) of {total} unfinished; run again to resume"
        )
    if failed:
        tolerance = max_failures or FailureTolerance(count=0, text="0")
        if tolerance.allows(failed, total):
            return ExitDecision(
                EXIT_OK,
                f"{failed} of {total} job(s) failed, within --max-failures {tolerance.text}",
            )
        hint = (
            f"more than --max-failures {tolerance.text}"
            if max_failures is not None
            else "their reasons are in summary.json"
        )
        return ExitDecision(EXIT_FAILED, f"{failed} of {total} job(s) failed ({hint})")
    return ExitDecision(EXIT_OK, f"all {total} job(s) done")
