"""The ideal bounds a rate-limited batch is measured against. Pure.

What the server's limit allows at best, for N jobs, R calls per window W
(seconds) and a job latency L (seconds), when every job needs at least `c`
counted calls (1 when only submits count; submit, one status and the
result when every call counts):

- windowed limits (fixed or sliding): R calls may go at once, then R more
  one window later, so the last of the c x N calls leaves no earlier than
  floor((c x N - 1) / R) windows after the first, and its job ends about
  one latency later; a batch of c x N <= R finishes in about L;
- a smooth token bucket: one call every W / R, so (c x N - 1) x W / R + L.

Both add a whole L after the last counted call although, with every call
counted, that call is a result fetch whose job ended already: for N >> R
this over-states the bound by L / (floor((cN-1)/R) W), under 1 % in the
scenarios here. A fixed-window server also allows up to 2R across a window
boundary, so a client that knew the boundary's phase could beat the bound
by up to one window; a client that keeps to "R in any W" cannot.
"""

from __future__ import annotations

from typing import Final, Literal

ServerModel = Literal["fixed", "sliding", "bucket"]

CALLS_PER_JOB: Final = {"submit": 1, "all": 3}
"""Counted calls a v2 job needs at the least, by rate scope."""


def windowed_bound(
    jobs: int, rpm: int, window: float, latency: float, calls_per_job: int = 1
) -> float:
    """Seconds: floor((c x N - 1) / R) x W + L; 0 for no jobs."""
    calls = jobs * calls_per_job
    if calls <= 0:
        return 0.0
    return ((calls - 1) // rpm) * window + latency


def bucket_bound(
    jobs: int, rpm: int, window: float, latency: float, calls_per_job: int = 1
) -> float:
    """Seconds: (c x N - 1) x W / R + L; 0 for no jobs."""
    calls = jobs * calls_per_job
    if calls <= 0:
        return 0.0
    return (calls - 1) * window / rpm + latency


def ideal_bound(
    model: ServerModel,
    jobs: int,
    rpm: int,
    window: float,
    latency: float,
    *,
    scope: Literal["submit", "all"] = "submit",
) -> float:
    """Seconds: the bound for a server limiter `model` counting the calls of `scope`."""
    calls = CALLS_PER_JOB[scope]
    if model == "bucket":
        return bucket_bound(jobs, rpm, window, latency, calls)
    return windowed_bound(jobs, rpm, window, latency, calls)


def ratio(measured: float, bound: float) -> float:
    """measured / bound (inf when the bound is 0 and something was measured)."""
    if bound <= 0:
        return float("inf") if measured > 0 else 1.0
    return measured / bound
