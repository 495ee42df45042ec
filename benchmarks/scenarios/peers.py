"""Scenario 3: the runner and what users would otherwise run, on the same jobs and server.

Peers: the vendor's SDK in a thread pool of C workers (C = 4, and C = the
key's limit), each doing what `client.run()` does but polling at the docs'
1 s scaled like everything else (`submit_async(...).wait(interval=1 s)`:
`run()` itself polls every real second, which would be unfairly slow on a
time-scaled server); and a plain asyncio + httpx script, a semaphore of C =
the limit, a 1 s (scaled) poll, and on a 429 a 1 s wait and another try.
Neither peer limits its own rate; the SDK raises on a 429, so the job
fails. Latency is lognormal (median 10 s); the limit counts submits only,
in fixed one-minute windows (the emulator's default guess of Segmind's
limit) or, in the last setting, a sliding window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from benchmarks.bounds import ideal_bound, ratio
from benchmarks.clients import ClientRun, bench_emulator, run_peer, run_runner, scratch, served
from benchmarks.manifests import Batch, write_manifest, write_peer_jobs
from benchmarks.report import Section, Table, Target
from benchmarks.serverlog import median
from benchmarks.settings import Settings

LATENCY = "lognormal:10,0.25"


@dataclass(frozen=True, slots=True)
class Setting:
    """One side-by-side comparison: N jobs under a server limit of R per minute."""

    label: str
    jobs: int
    rpm: int
    scale: float
    limiter: Literal["fixed", "sliding"] = "fixed"


def _settings(settings: Settings) -> list[Setting]:
    if settings.quick:
        return [Setting("CI set, N < R", 8, 50, settings.small_scale)]
    return [
        Setting("CI set, N < R", 20, 50, settings.small_scale),
        Setting("rate-bound, N >> R", 30, 5, settings.scale),
        Setting("rate-bound, N >> R, sliding window", 30, 5, settings.scale, "sliding"),
    ]


def run_setting(setting: Setting) -> list[dict[str, Any]]:
    """Every client on a fresh emulator with the same settings and seed."""
    config = bench_emulator(
        setting.scale, latency=LATENCY, rpm=setting.rpm, limiter=setting.limiter
    )
    bound = ideal_bound(setting.limiter, setting.jobs, setting.rpm, 60.0, 10.0)
    interval = 1.0 * setting.scale
    out: list[dict[str, Any]] = []
    with scratch("peers") as folder:
        manifest = write_manifest(Batch(jobs=setting.jobs, rpm=setting.rpm), folder)
        jobs_file = folder / "jobs.json"
        write_peer_jobs(manifest, jobs_file)
        runs: list[ClientRun] = []
        with served(config) as server:
            runs.append(run_runner(server, manifest, folder / "runner", setting.scale))
        for kind, concurrency, retry in (
            ("sdk", 4, False),
            ("sdk", setting.rpm, False),
            ("httpx", setting.rpm, True),
        ):
            with served(config) as server:
                runs.append(
                    run_peer(
                        kind,  # type: ignore[arg-type]
                        server,
                        jobs_file,
                        folder / f"{kind}-{concurrency}",
                        concurrency=concurrency,
                        interval=interval,
                        retry_429=retry,
                    )
                )
    for result in runs:
        view = result.server
        makespan = view.makespan / setting.scale
        wall = result.client_wall / setting.scale if result.client_wall is not None else None
        out.append(
            {
                "setting": setting.label,
                "client": result.name,
                "jobs": setting.jobs,
                "rpm": setting.rpm,
                "bound_s": bound,
                "makespan_server_s": makespan,
                "makespan_client_s": wall,
                "ratio_server": ratio(makespan, bound),
                "completed": result.completed,
                "failed": result.failed,
                "accepted": view.accepted,
                "http_429": view.rate_limited,
                "api_calls": view.api_calls,
                "api_calls_per_done": view.api_calls / result.completed
                if result.completed
                else float("nan"),
                "status_calls_median": median([float(n) for n in view.status_calls()]),
                "errors": result.extra.get("errors", {}),
                "cpu_s": result.process.cpu_s,
                "peak_rss_mib": result.process.peak_rss_mib,
            }
        )
    return out


def run(settings: Settings) -> Section:
    """Each setting, every client."""
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for setting in _settings(settings):
        rows += run_setting(setting)
    return _section(rows, time.perf_counter() - started)


def _section(rows: list[dict[str, Any]], seconds: float) -> Section:
    table = Table(
        "Same jobs, same server (nominal seconds; makespan from the server's log)",
        (
            "setting",
            "client",
            "done",
            "failed",
            "makespan s",
            "/ bound",
            "API calls per done job",
            "status/job median",
            "429s",
            "CPU s",
        ),
        tuple(
            (
                r["setting"],
                r["client"],
                f"{r['completed']}/{r['jobs']}",
                r["failed"],
                r["makespan_server_s"],
                r["ratio_server"],
                r["api_calls_per_done"],
                r["status_calls_median"],
                r["http_429"],
                r["cpu_s"],
            )
            for r in rows
        ),
    )
    targets = []
    for label in dict.fromkeys(r["setting"] for r in rows):
        group = [r for r in rows if r["setting"] == label]
        runner = next(r for r in group if r["client"] == "runner")
        peers = [r for r in group if r["client"] != "runner"]
        # A peer that lost jobs did not finish the batch: its makespan is not comparable.
        complete = [p for p in peers if p["completed"] == p["jobs"]]
        best_makespan = min((p["makespan_server_s"] for p in complete), default=float("inf"))
        best_calls = min(p["api_calls_per_done"] for p in peers)
        ahead = (
            runner["completed"] == runner["jobs"]
            and runner["makespan_server_s"] < best_makespan
            and runner["api_calls_per_done"] < best_calls
        )
        targets.append(
            Target(
                f"ahead of both peers ({label})",
                "runner's makespan and calls/job below every peer's",
                f"runner {runner['makespan_server_s']:.0f} s, {runner['api_calls_per_done']:.2f} "
                f"calls/job; best complete peer {best_makespan:.0f} s; fewest peer calls/job "
                f"{best_calls:.2f}",
                ahead,
            )
        )
    notes = [
        '"done" counts jobs whose image was saved; the SDK peers lose every job whose submit '
        "or poll met a 429 (the SDK raises `SegmindError`, as its docs leave it to the caller). "
        "A peer that lost jobs has no comparable makespan (it did less work), so only peers "
        'that finished the batch count for "ahead on makespan". API calls per done job '
        "include the 429s a client caused.",
    ]
    return Section(
        key="peers",
        title="3. Peers side by side",
        intro=(__doc__ or "").split("\n\n", 1)[1],
        tables=(table,),
        targets=tuple(targets),
        notes=tuple(notes),
        figures={"rows": rows},
        seconds=seconds,
    )
