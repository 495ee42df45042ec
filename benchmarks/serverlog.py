"""What the server saw: figures read off the emulator's own request log and job ledger. Pure.

Every figure that can be is taken from the server's side, so the runner and
its peers are measured alike, whatever they report about themselves. Times
are the emulator's clock seconds (already time-scaled).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from runner.emulator import CallRecord, JobView

# Calls to the API proper; media downloads come from a CDN and no limit counts them.
API_KINDS = frozenset({"submit", "sync", "status", "result", "credits", "other"})


@dataclass(frozen=True, slots=True)
class JobTrace:
    """One accepted job: when it was submitted and ended on the server, and how it was polled.

    `noticed` is the arrival of the first status call at or after the end
    (None if the client never asked again); seconds.
    """

    request_id: str
    submitted: float
    finished: float
    completed: bool
    status_calls: int
    noticed: float | None

    @property
    def latency(self) -> float:
        """Seconds from submit to the end, on the server."""
        return self.finished - self.submitted

    @property
    def detection_delay(self) -> float | None:
        """Seconds from the end to the client's noticing it."""
        return None if self.noticed is None else self.noticed - self.finished

    @property
    def detection_ratio(self) -> float | None:
        """The detection delay as a fraction of the job's latency."""
        delay = self.detection_delay
        if delay is None or self.latency <= 0:
            return None
        return delay / self.latency


@dataclass(frozen=True, slots=True)
class ServerView:
    """A whole run as the server saw it."""

    calls: Mapping[str, int]
    rate_limited: int
    first_submit: float | None
    last_call: float | None
    traces: tuple[JobTrace, ...]

    @property
    def accepted(self) -> int:
        """Submits the server accepted (each one billed)."""
        return len(self.traces)

    @property
    def completed(self) -> int:
        """Accepted jobs that ended COMPLETED."""
        return sum(1 for t in self.traces if t.completed)

    @property
    def makespan(self) -> float:
        """Seconds from the first submit's arrival to the last call's (the last download)."""
        if self.first_submit is None or self.last_call is None:
            return 0.0
        return self.last_call - self.first_submit

    @property
    def api_calls(self) -> int:
        """Calls to the API, 429s included, media downloads not."""
        return sum(n for kind, n in self.calls.items() if kind in API_KINDS)

    def api_calls_per_job(self, jobs: int | None = None) -> float:
        """API calls per completed job (or per `jobs`)."""
        per = self.completed if jobs is None else jobs
        return self.api_calls / per if per else float("nan")

    def status_calls(self) -> list[int]:
        """Status calls of each accepted job."""
        return [t.status_calls for t in self.traces]

    def detection_ratios(self) -> list[float]:
        """Detection delay / latency of each job that was noticed."""
        return [r for t in self.traces if (r := t.detection_ratio) is not None]

    def detection_delays(self) -> list[float]:
        """Detection delay in seconds of each job that was noticed."""
        return [d for t in self.traces if (d := t.detection_delay) is not None]


def read_server(calls: Sequence[CallRecord], jobs: Iterable[JobView]) -> ServerView:
    """Summarise a request log and the ledger of accepted jobs."""
    kinds = Counter(c.kind for c in calls)
    status_times: dict[str, list[float]] = {}
    for c in calls:
        if c.kind == "status" and c.request_id is not None:
            status_times.setdefault(c.request_id, []).append(c.time)
    traces = []
    for job in jobs:
        times = status_times.get(job.request_id, [])
        after = [t for t in times if t >= job.finished_at]
        traces.append(
            JobTrace(
                request_id=job.request_id,
                submitted=job.submitted_at,
                finished=job.finished_at,
                completed=job.state == "COMPLETED",
                status_calls=len(times),
                noticed=min(after) if after else None,
            )
        )
    submits = [c.time for c in calls if c.kind in ("submit", "sync")]
    return ServerView(
        calls={str(kind): n for kind, n in kinds.items()},
        rate_limited=sum(1 for c in calls if c.status == 429),
        first_submit=min(submits) if submits else None,
        last_call=max(c.time for c in calls) if calls else None,
        traces=tuple(traces),
    )


def median(values: Sequence[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


def mean(values: Sequence[float]) -> float:
    """The mean, NaN for no values."""
    return statistics.fmean(values) if values else float("nan")


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest rank, NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
