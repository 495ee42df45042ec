"""Issue 12's polling figures, read off the emulator's own request log (the server's view).

Shared by tests/scheduling/test_polling.py (the result endpoint answers a job
in progress: a poll is a status or a result call) and test_polling_status.py
(polled by status, the result fetched once: a poll is a status call). Every
figure is for the jobs submitted once 5 had been found done ("measured"),
except `api_per_job`, which counts the whole run.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection
from dataclasses import dataclass

from runner.emulator import InProcess

# What calls are polls, by how the emulator answers a job in progress.
RESULT_POLLS = ("status", "result")
STATUS_POLLS = ("status",)


@dataclass(frozen=True, slots=True)
class Seen:
    """The server's view of one run's polling."""

    api_per_job: float  # submit, status and result calls of the whole run, per job
    api_per_measured_job: float  # submit and polls (and the result after a status)
    status_calls: int
    result_calls: int
    measured: int  # jobs submitted once 5 had been found done
    median_polls: float  # polls up to the one that found the job done, per measured job
    median_status: float  # status calls per measured job
    median_delay: float  # the measured jobs' detection delay / latency


def seen_by_the_server(emu: InProcess, polls: Collection[str] = RESULT_POLLS) -> Seen:
    """The figures of the run `emu` served; `polls`: the kinds of call that are polls.

    A job is found done by its first poll at or after its end on the server;
    its detection delay is the time from that end to the find, over its latency.
    """
    server = emu.emulator
    jobs = server.accepted_submits()
    polls_of: dict[str | None, list[float]] = {}
    status_of: dict[str | None, list[float]] = {}
    for c in server.calls():
        if c.kind in polls:
            polls_of.setdefault(c.request_id, []).append(c.time)
        if c.kind == "status":
            status_of.setdefault(c.request_id, []).append(c.time)
    rows = []
    for job in jobs:
        times = sorted(polls_of.get(job.request_id, []))
        found = next(t for t in times if t >= job.finished_at)
        polled = sum(1 for t in times if t <= found)
        statused = len(status_of.get(job.request_id, []))
        # A status poll that found the job done is followed by the result call.
        calls = 1 + polled + (1 if statused else 0)
        delay = (found - job.finished_at) / job.total_time
        rows.append((job.submitted_at, found, polled, delay, calls, statused))
    fifth = sorted(r[1] for r in rows)[4]
    after = [r for r in rows if r[0] > fifth]
    api = [c for c in server.calls() if c.kind in ("submit", "status", "result")]
    return Seen(
        api_per_job=len(api) / len(jobs),
        api_per_measured_job=statistics.mean(r[4] for r in after),
        status_calls=len(server.calls("status")),
        result_calls=len(server.calls("result")),
        measured=len(after),
        median_polls=statistics.median(r[2] for r in after),
        median_status=statistics.median(r[5] for r in after),
        median_delay=statistics.median(r[3] for r in after),
    )
