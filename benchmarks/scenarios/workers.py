"""Scenario 6: several workers on one key, coordinated through Redis.

1, 2 and 4 `runner run --coordinator redis://...` processes share one
emulator whose limit counts every worker's submits (one API key): the
makespan must stay at the rate bound (more workers must not make it slower)
with no 429s. The harness is benchmarks.workers.bench_workers; it
starts its own loopback redis-server, so this scenario needs Debian's
redis-server (`make system-deps`).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks.report import Section, Table, Target
from benchmarks.settings import Settings


def run(settings: Settings) -> Section:
    """1, 2 and 4 workers (1 and 2 with --quick) on one key."""
    from benchmarks.workers import bench_workers

    started = time.perf_counter()
    counts = (1, 2) if settings.quick else (1, 2, 4)
    with tempfile.TemporaryDirectory(prefix="runner-bench-workers-") as tmp:
        results = bench_workers(Path(tmp), counts, jobs=20, rpm=10, time_scale=0.05)
    rows = tuple(
        (
            r.workers,
            r.jobs,
            r.rpm,
            r.rate_bound_s,
            r.makespan_s,
            r.makespan_s / r.rate_bound_s if r.rate_bound_s else float("nan"),
            r.max_in_window,
            r.rate_limited,
            r.completed,
        )
        for r in results
    )
    single = results[0].makespan_s
    worst = max(r.makespan_s for r in results)
    limited = sum(r.rate_limited for r in results)
    over = max(r.max_in_window - r.rpm for r in results)
    return Section(
        key="workers",
        title="6. Several workers, one key (Redis coordinator)",
        intro=__doc__ or "",
        tables=(
            Table(
                "Workers sharing one rate limit (real seconds at time scale 0.05; "
                "the bound is when the last submit can go out at R per window)",
                (
                    "workers",
                    "jobs",
                    "R",
                    "submit bound s",
                    "makespan s",
                    "/ bound",
                    "most submits in a window",
                    "429s",
                    "done",
                ),
                rows,
            ),
        ),
        targets=(
            Target(
                name="more workers are not slower, no 429s",
                target="makespan with N workers <= 1.05 x with 1; 0 429s; no window over R",
                measured=f"worst {worst / single:.3f} x the 1-worker makespan; {limited} 429s; "
                f"{max(over, 0)} over the limit",
                met=worst <= single * 1.05 and limited == 0 and over <= 0,
            ),
        ),
        figures={"results": [asdict(r) for r in results]},
        seconds=time.perf_counter() - started,
    )
