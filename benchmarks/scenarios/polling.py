"""Scenario 2: polling economy, the runner against a fixed 1 s cadence.

Jobs take a lognormal latency (median 10 s, sigma 0.25: most between 8 and
13 s), with no server limit and no queue. The runner submits at 20 a minute
(so later jobs poll with what earlier ones taught it); the fixed-cadence
client (the plain httpx script) polls every second (scaled) from its
submit. Both are measured on the server: status calls per job, and the
detection delay, from the job's end on the server to the first status
call that sees it, as a fraction of that job's latency.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.clients import (
    ClientRun,
    bench_emulator,
    run_peer,
    run_runner,
    scratch,
    served,
)
from benchmarks.manifests import Batch, write_manifest, write_peer_jobs
from benchmarks.report import Section, Table, Target
from benchmarks.serverlog import ServerView, mean, median, quantile
from benchmarks.settings import Settings

LATENCY = "lognormal:10,0.25"
RPM = 20
SCALE = 0.1  # a "10 s" job takes 1 s: the runner's few ms of disk writes per job stay ~1 %


def figures(view: ServerView, scale: float) -> dict[str, Any]:
    """Polling figures of one run (seconds nominal)."""
    calls = [float(n) for n in view.status_calls()]
    ratios = view.detection_ratios()
    delays = [d / scale for d in view.detection_delays()]
    thirds: list[float] = []
    ordered = sorted(view.traces, key=lambda t: t.submitted)
    size = max(1, len(ordered) // 3)
    for start in range(0, size * 3, size):
        part = [r for t in ordered[start : start + size] if (r := t.detection_ratio) is not None]
        thirds.append(median(part))
    return {
        "jobs": view.accepted,
        "completed": view.completed,
        "status_calls_median": median(calls),
        "status_calls_mean": mean(calls),
        "status_calls_p90": quantile(calls, 0.9),
        "detection_ratio_median": median(ratios),
        "detection_ratio_mean": mean(ratios),
        "detection_ratio_p90": quantile(ratios, 0.9),
        "detection_s_median": median(delays),
        "detection_ratio_median_by_third": thirds,
        "latency_s_median": median([t.latency / scale for t in view.traces]),
    }


def run(settings: Settings) -> Section:
    """The runner and the fixed cadence on the same latency distribution."""
    started = time.perf_counter()
    jobs = 24 if settings.quick else 60
    scale = settings.small_scale if settings.quick else SCALE
    config = bench_emulator(scale, latency=LATENCY)
    results: dict[str, ClientRun] = {}
    with scratch("polling") as folder:
        manifest = write_manifest(Batch(jobs=jobs, rpm=RPM), folder)
        peer_jobs = folder / "jobs.json"
        write_peer_jobs(manifest, peer_jobs)
        with served(config) as server:
            results["runner"] = run_runner(server, manifest, folder / "out", scale)
        with served(config) as server:
            results["fixed 1 s cadence"] = run_peer(
                "httpx", server, peer_jobs, folder / "peer", concurrency=RPM, interval=scale
            )
    measured = {name: figures(r.server, scale) for name, r in results.items()}
    return _section(measured, jobs, time.perf_counter() - started)


def _section(measured: dict[str, dict[str, Any]], jobs: int, seconds: float) -> Section:
    rows = tuple(
        (
            name,
            f"{f['completed']}/{jobs}",
            f["status_calls_median"],
            f["status_calls_mean"],
            f["status_calls_p90"],
            f["detection_ratio_median"],
            f["detection_ratio_mean"],
            f["detection_ratio_p90"],
            f["detection_s_median"],
            " / ".join(f"{r:.3f}" for r in f["detection_ratio_median_by_third"]),
        )
        for name, f in measured.items()
    )
    table = Table(
        "Status calls per job and detection delay (delay / the job's own latency)",
        (
            "client",
            "done",
            "status/job median",
            "mean",
            "p90",
            "delay median",
            "mean",
            "p90",
            "delay median s",
            "delay median by submit third",
        ),
        rows,
    )
    runner = measured["runner"]
    met = runner["status_calls_median"] <= 2.5 and runner["detection_ratio_median"] <= 0.10
    target = Target(
        "polling economy",
        "status calls/job (median) <= 2.5 at <= 10 % detection delay",
        f"{runner['status_calls_median']:.1f} calls at "
        f"{100 * runner['detection_ratio_median']:.1f} % median delay "
        f"(mean {100 * runner['detection_ratio_mean']:.1f} %)",
        met,
    )
    return Section(
        key="polling",
        title="2. Polling economy",
        intro=(__doc__ or "").split("\n\n", 1)[1],
        tables=(table,),
        targets=(target,),
        figures={"jobs": jobs, "clients": measured},
        seconds=seconds,
    )
