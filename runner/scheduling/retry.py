"""One function decides what is retried, and after how long.

`retry_delay(op, error, attempt)` returns the seconds to wait before trying
`op` again, or None to give up. Nothing else in runner retries on its own.

- Polls, results, downloads and the balance read are safe to repeat: they
  retry on 429, 5xx, connection errors and broken downloads, with full-jitter
  exponential backoff (AWS Architecture Blog, "Exponential Backoff and
  Jitter", 2015) and the server's hint (Retry-After or the reset header) as
  the wait when there is one.
- A submit is billed when the server accepts it, so it is retried only when
  the server surely did not accept it: the connection was never made, or the
  server answered 429 or 5xx. A submit whose answer was lost
  (`TransportError(sent=True)`) is ambiguous: this function gives up, and the
  scheduler decides (once per job, within a run-level cap).
- 400, FAILED, 401/403 and 406 are final: retrying cannot change them.
- 404 on a poll is retried a few times (a fresh id can be briefly unknown
  to a replica); the caller then tells "expired" from "unknown" by the job's age.

Never retries on a bare Exception: only on runner.errors classes named here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from runner.errors import (
    DownloadError,
    NotFound,
    RetryableError,
    TransportError,
)

Operation = Literal["submit", "status", "result", "download", "credits", "sync"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff settings, in seconds. `attempts` counts tries of one call, the first included."""

    base: float = 1.0
    cap: float = 60.0
    attempts: int = 8
    submit_attempts: int = 6
    not_found_attempts: int = 3
    # Scales every wait, so a run against a time-scaled emulator backs off
    # in the same proportion; 0 gives a test mode with no waiting.
    scale: float = 1.0


def backoff(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform(0, min(cap, base x 2^attempt)); attempt 0 is the first retry."""
    ceiling = min(policy.cap, policy.base * (2 ** min(attempt, 30)))
    return rng.uniform(0.0, ceiling) * policy.scale


def retry_delay(
    op: Operation,
    error: BaseException,
    attempt: int,
    policy: RetryPolicy = RetryPolicy(),
    rng: random.Random | None = None,
) -> float | None:
    """Seconds to wait before retrying `op` after `error`, or None to give up.

    `attempt` is how many tries have failed so far (1 after the first failure).
    """
    rng = rng or random.Random()
    limit = policy.submit_attempts if op in ("submit", "sync") else policy.attempts
    if attempt >= limit:
        return None
    if isinstance(error, NotFound):
        if op in ("status", "result") and attempt < policy.not_found_attempts:
            return backoff(policy, attempt - 1, rng)
        return None
    if isinstance(error, DownloadError):
        if op == "download" and error.retryable:
            return backoff(policy, attempt - 1, rng)
        return None
    if not isinstance(error, RetryableError):
        return None
    if isinstance(error, TransportError) and error.sent and op in ("submit", "sync"):
        return None  # ambiguous: the scheduler decides
    wait = backoff(policy, attempt - 1, rng)
    if error.retry_after is not None:
        # The server's hint replaces the backoff (it is in the server's seconds, so
        # not scaled); a little jitter on top spreads the callers that all
        # waited for the same reset.
        hint = error.retry_after
        wait = hint + rng.uniform(0.0, min(1.0, hint * 0.1 + 0.01))
    return wait
