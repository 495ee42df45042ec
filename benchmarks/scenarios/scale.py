"""Scenario 4: scale. Planning a million jobs, a 10,000-job run, a resume scan.

- `runner plan` of a manifest of 1,000,000 jobs (one prompt, two vars of
  1,000 values), as a child process: wall time and peak memory; once as
  it is (the plan counts by arithmetic), once with a `max_credits` that
  stops it three quarters of the way (the plan then walks jobs one by one
  to find where the budget ends), and the lazy job stream a run iterates
  (expansion with job keys) over a slice, per job.
- `runner run` of 10,000 jobs against a zero-latency emulator with 64 px
  images and no rate limit (the budget says 1,000,000 a minute; the
  in-flight cap is `auto`): jobs per second, and the runner process's own
  CPU seconds per job (from `wait4`), with and without the end-of-run
  gallery thumbnails (their CPU measured apart: the gallery written again
  in a child, once making the thumbnails and once reusing them), and its
  peak memory (its own VmHWM, reported by the child: see
  benchmarks/processes.py). Beside it, in the same minutes, the floor httpx
  sets: the httpx peer making the runner's four calls a job (submit,
  status, result, download) and nothing else (no file written), with one
  `httpx.AsyncClient` whose pool is the runner's (in-flight cap + 1
  connections, all kept alive), as many jobs and submits in flight as the
  runner allows (its in-flight cap, `max_submits_in_flight`), against a
  fresh emulator set up the same way; once on httpx as it is, once on the
  runner's network backend (runner/backends/netstream.py). The runner
  (thumbnails excluded) minus the second is the runner's own CPU per job.
  Its output folder is on a RAM disk, so the figures are the runner's own
  work; a run of 400 jobs on the disk shows what fsync adds (the ledger
  commits with synchronous=FULL and every image and sidecar is fsynced).
- resume: `runner run` again over the finished 10,000-job folder (every job
  skipped after checking its files), and the ledger scan alone
  (`Ledger.get_many` in batches of 500, as a run reads it) over a ledger of
  100,000 completed rows.
- resume to the first send: a folder of 99,855 completed jobs and one left
  (the sweep's last), built through the store API with one-byte files (a run
  of them would take half an hour), then `runner run` from its spawn to its
  first `submitted` event: the walk over every finished job comes first.
- reports: the end-of-run reports (summary.json / summary.md, then the
  gallery of at most 10,000 entries with their thumbnails) over a folder of
  100,000 finished jobs with real 64 px JPEGs and real sidecars (built from a
  small real run's, benchmarks/reports_memory.py), as `runner run` writes
  them past 50,000 jobs, in a child: its own peak memory and wall time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.clients import (
    ROOT,
    bench_emulator,
    child_env,
    ledger_counts,
    memory_disk,
    run_runner,
    runner_argv,
    scratch,
    served,
    server_view,
)
from benchmarks.manifests import Batch, million_manifest, write_manifest, write_peer_jobs
from benchmarks.processes import run_process
from benchmarks.report import Section, Table, Target
from benchmarks.settings import Settings

RUN_SCALE = 0.05  # zero latency: the scale only shortens the first poll guess and the deadlines
EXPAND_SCRIPT = """
import sys, time
from runner.manifest import load_manifest
from runner.sweep import expand
limit = int(sys.argv[2])
start = time.perf_counter()
count = 0
for job in expand(load_manifest(sys.argv[1])):
    count += 1
    if count >= limit:
        break
print(count, time.perf_counter() - start)
"""
# The CPU seconds of making the gallery's thumbnails: the gallery written once
# without them (they are made) and once more (they are reused); the difference.
THUMBS_SCRIPT = """
import shutil, sys, time
from pathlib import Path
from runner.reporting.gallery import write_gallery
from runner.reporting.thumbnails import THUMBS_DIR
out = Path(sys.argv[1])
shutil.rmtree(out / THUMBS_DIR, ignore_errors=True)
a = time.process_time()
write_gallery(out)
b = time.process_time()
write_gallery(out)
c = time.process_time()
print(b - a, c - b)
"""


def thumbnails_cpu(out: Path) -> float:
    """CPU seconds the runner's end of run spends making the thumbnails of `out`."""
    process = run_process(
        [sys.executable, "-c", THUMBS_SCRIPT, str(out)], env=child_env(), cwd=ROOT
    ).check()
    making, reusing = (float(x) for x in process.stdout.split())
    return max(0.0, making - reusing)


def plan_figures(side: int) -> list[dict[str, Any]]:
    """`runner plan` of side**2 jobs, as it is and with a budget cut at 3/4; and expansion."""
    rows = []
    with scratch("plan") as folder:
        jobs = side * side
        for label, cap in (("plan", None), ("plan, budget cut at 3/4", jobs * 0.02 * 0.75)):
            manifest = million_manifest(
                folder / label.replace(" ", "_").replace(",", ""), side, cap
            )
            process = run_process(
                [*runner_argv(), "plan", str(manifest)], env=child_env(), cwd=ROOT
            ).check()
            rows.append(
                {
                    "what": f"`runner plan`, {label}",
                    "jobs": jobs,
                    "wall_s": process.wall_s,
                    "cpu_s": process.cpu_s,
                    "peak_rss_mib": process.peak_rss_mib,
                }
            )
        limit = max(1, jobs // 10)
        manifest = million_manifest(folder / "expand", side)
        process = run_process(
            [sys.executable, "-c", EXPAND_SCRIPT, str(manifest), str(limit)],
            env=child_env(),
            cwd=ROOT,
        ).check()
        count, seconds = process.stdout.split()
        rows.append(
            {
                "what": f"job stream (expand, keys) of the first {int(count):,} jobs",
                "jobs": int(count),
                "wall_s": process.wall_s,
                "cpu_s": process.cpu_s,
                "peak_rss_mib": process.peak_rss_mib,
                "loop_s": float(seconds),
                "us_per_job": float(seconds) / int(count) * 1e6,
            }
        )
    return rows


def floor_figures(
    manifest: Path, folder: Path, rpm: int, in_flight: int | None, *, cached_sockets: bool
) -> dict[str, Any]:
    """The floor httpx sets: the runner's four calls a job, and nothing else, in a child.

    The httpx peer (benchmarks/peers/httpx_peer.py) with one
    `httpx.AsyncClient` whose pool is the runner's (runner/run.py sizes it
    `max_cap + 1`, every connection kept alive), as many jobs at once as the
    runner's in-flight cap allows and as many submits on the wire at once as
    its `max_submits_in_flight`, no wait before the status call (the job is
    done at once), and every image read and dropped: submit, status, result,
    download, against a fresh emulator set up as the runner's was. Its CPU
    seconds come from wait4, as the runner's do. `cached_sockets`: under the
    pool, the network backend the runner's pools use (runner/backends/
    netstream.py), so what is left above it is the runner's own work.
    """
    from runner.manifest import load_manifest
    from runner.scheduling.inflight import auto_cap, max_cap

    submits = load_manifest(str(manifest)).budget.max_submits_in_flight
    # The runner's cap at zero latency (Little's law: nothing in flight but the burst).
    concurrency = in_flight or auto_cap(rpm, 60.0 * RUN_SCALE, 0.0)
    connections = max_cap(rpm, in_flight) + 1
    jobs_file = folder / "floor-jobs.json"
    jobs = write_peer_jobs(manifest, jobs_file)
    config = bench_emulator(RUN_SCALE, latency="fixed:0", image_px=64)
    with served(config) as server:
        argv = [
            *(sys.executable, "-m", "benchmarks.peers.httpx_peer"),
            *("--base-url", server.base_url, "--jobs", str(jobs_file)),
            *("--concurrency", str(concurrency), "--connections", str(connections)),
            *("--submits-in-flight", str(submits)),
            *("--interval", "0", "--out", str(folder / "floor"), "--discard"),
            *(("--cached-sockets",) if cached_sockets else ()),
        ]
        process = run_process(argv, env=child_env(), cwd=ROOT, timeout=900).check()
        view = server_view(server)
    report = json.loads(process.stdout.strip().splitlines()[-1])
    return {
        "client": "httpx, the runner's network backend" if cached_sockets else "httpx",
        "concurrency": concurrency,
        "connections": connections,
        "submits_in_flight": submits,
        "completed": int(report["completed"]),
        "errors": report.get("errors", {}),
        "cpu_s": process.cpu_s,
        "cpu_ms_per_job": 1000 * process.cpu_s / jobs,
        "api_calls": view.api_calls,
        "media_calls": view.calls.get("media", 0),
    }


def run_figures(
    jobs: int, in_flight: int | None, *, ram: bool, resume: bool = True, floor: bool = False
) -> dict[str, Any]:
    """A run of `jobs` against a zero-latency emulator, then (`resume`) a resume of its folder.

    `ram`: the output folder is on a RAM disk, so the figures are the
    runner's own work without the disk's fsync waits. `floor`: the floor
    httpx sets (`floor_figures`) measured right after the runner, in the
    same minutes, and the runner's own CPU per job above it.
    """
    config = bench_emulator(RUN_SCALE, latency="fixed:0", image_px=64)
    base = memory_disk() if ram else None
    rpm = 1_000_000
    with scratch("scale", base) as folder:
        manifest = write_manifest(Batch(jobs=jobs, rpm=rpm, max_in_flight=in_flight), folder)
        out = folder / "out"
        with served(config) as server:
            first = run_runner(server, manifest, out, RUN_SCALE, json_events=False, timeout=900)
            completed, failed = ledger_counts(out)
            thumbs = thumbnails_cpu(out)
            again = (
                run_runner(server, manifest, out, RUN_SCALE, json_events=False, timeout=900)
                if resume
                else None
            )
        view = first.server
        figures: dict[str, Any] = {
            "jobs": jobs,
            "disk": "RAM (/dev/shm)" if base is not None else "disk (tmp)",
            "max_in_flight": in_flight or "auto",
            "completed": completed,
            "failed": failed,
            "wall_s": first.process.wall_s,
            "server_makespan_s": view.makespan,
            "jobs_per_s": completed / view.makespan if view.makespan else float("nan"),
            "jobs_per_s_process": completed / first.process.wall_s,
            "cpu_s": first.process.cpu_s,
            "cpu_ms_per_job": 1000 * first.process.cpu_s / jobs,
            "thumbnails_cpu_s": thumbs,
            "cpu_ms_per_job_no_thumbnails": 1000 * (first.process.cpu_s - thumbs) / jobs,
            "peak_rss_mib": first.process.peak_rss_mib,
            "peak_source": first.process.peak_source,
            "api_calls": view.api_calls,
            "media_calls": view.calls.get("media", 0),
        }
        if again is not None:
            figures |= {
                "resume_wall_s": again.process.wall_s,
                "resume_cpu_s": again.process.cpu_s,
                "resume_ms_per_job": 1000 * again.process.wall_s / jobs,
                "resume_new_submits": again.server.accepted - view.accepted,
            }
        if floor:
            floors = [
                floor_figures(manifest, folder, rpm, in_flight, cached_sockets=cached)
                for cached in (False, True)
            ]
            figures["floors"] = floors
            # Above the floor of the runner's own network stack: the runner's own work.
            figures["own_cpu_ms_per_job"] = (
                figures["cpu_ms_per_job_no_thumbnails"] - floors[-1]["cpu_ms_per_job"]
            )
        return figures


def ledger_scan(rows: int) -> dict[str, Any]:
    """Seconds to build a ledger of `rows` completed jobs, and to read them back as a run does."""
    from runner.money import Micros
    from runner.store import Ledger, ledger_path

    keys = [f"k1:{hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(rows)]
    with scratch("ledger") as folder:
        started = time.perf_counter()
        ledger = Ledger.open(folder, backend="segmind", base_url="http://127.0.0.1:1")
        try:
            ledger.plan_many((key, i, "p", Micros(20_000)) for i, key in enumerate(keys))
        finally:
            ledger.close()
        # Completed rows in one transaction: the run's own path commits each one.
        with sqlite3.connect(ledger_path(folder)) as db:
            db.execute(
                "UPDATE jobs SET state = 'completed', charged = 0.02, completed_at = ?, files = ?",
                (time.time(), json.dumps(["p/x.jpg"])),
            )
        built = time.perf_counter() - started
        started = time.perf_counter()
        ledger = Ledger.open(folder, backend="segmind", base_url="http://127.0.0.1:1")
        try:
            found = 0
            for start in range(0, rows, 500):
                found += len(ledger.get_many(keys[start : start + 500]))
        finally:
            ledger.close()
        scanned = time.perf_counter() - started
    return {"rows": rows, "found": found, "build_s": built, "scan_s": scanned}


def resume_first_send(side: int) -> dict[str, Any]:
    """Seconds from spawning `runner run` to its first send, over side**2 - 1 finished jobs.

    The folder is built through the store API (ledger rows marked completed,
    one-byte image and sidecar files: a resume checks only that they are
    there); the sweep's last job has no row, so it is sent after the walk.
    """
    from runner.manifest import load_manifest
    from runner.money import Micros
    from runner.store import Ledger
    from runner.store.layout import image_path, relative_name, sidecar_path
    from runner.sweep import expand

    jobs = side * side
    config = bench_emulator(RUN_SCALE, latency="fixed:0", image_px=64)
    with scratch("resume", memory_disk()) as folder, served(config) as server:
        manifest = million_manifest(folder, side)
        text = manifest.read_text(encoding="utf-8").replace(
            "requests_per_minute: 50", "requests_per_minute: 1000000"
        )
        manifest.write_text(text, encoding="utf-8")
        out = folder / "out"
        started = time.perf_counter()
        ledger = Ledger.open(out, backend="segmind", base_url=server.base_url)
        try:
            ledger.plan_many(
                (job.key, job.index, job.prompt_id, Micros(20_000))
                for job in expand(load_manifest(str(manifest)))
            )
            with ledger.transaction():
                for job in expand(load_manifest(str(manifest))):
                    if job.index == jobs - 1:
                        break
                    image = image_path(out, job, 0)
                    image.parent.mkdir(parents=True, exist_ok=True)
                    image.write_bytes(b"x")
                    sidecar_path(image).write_bytes(b"{}")
                    done = [relative_name(out, image)]
                    ledger.completed(job.key, Micros(20_000), done, time.time())
        finally:
            ledger.close()
        built = time.perf_counter() - started
        spawned = time.time()  # the events' `wall` is the epoch clock
        again = run_runner(server, manifest, out, RUN_SCALE, json_events=True, timeout=900)
        sends = [
            event["wall"]
            for event in (json.loads(line) for line in again.process.stdout.splitlines())
            if isinstance(event, dict) and event.get("event") == "submitted"
        ]
    return {
        "finished_jobs": jobs - 1,
        "build_s": built,
        "first_send_s": min(sends) - spawned if sends else float("nan"),
        "wall_s": again.process.wall_s,
        "cpu_s": again.process.cpu_s,
        "new_submits": len(sends),
    }


REPORTS_PEAK_GOAL_MIB = 95.0  # the reports' share of a 100,000-job run's 143 MiB (150 MB)


def reports_figures(jobs: int) -> dict[str, Any]:
    """Peak memory (the child's own VmHWM) and wall seconds of the end-of-run reports over
    a folder of `jobs` finished jobs built on a RAM disk (benchmarks/reports_memory.py).
    """
    from benchmarks.reports_memory import build, measure

    with scratch("reports", memory_disk()) as folder:
        started = time.perf_counter()
        out = build(folder, jobs)
        built = time.perf_counter() - started
        figures = measure(out)
    return {"jobs": jobs, "build_s": built} | figures


def run(settings: Settings) -> Section:
    """Plan, run, resume, ledger scan."""
    started = time.perf_counter()
    side = 100 if settings.quick else 1000
    plans = plan_figures(side)
    jobs = 300 if settings.quick else 10_000
    runs = [
        run_figures(jobs, None, ram=True, floor=True),
        run_figures(100 if settings.quick else 400, None, ram=False, resume=False),
    ]
    scan = ledger_scan(10_000 if settings.quick else 100_000)
    first_send = resume_first_send(100 if settings.quick else 316)
    reports = reports_figures(2_000 if settings.quick else 100_000)
    seconds = time.perf_counter() - started
    return _section(plans, runs, scan, first_send, seconds, reports=reports)


# At or above this, the floor alone leaves too little of the 6 ms target to say nothing.
FLOOR_NOTED_MS = 5.0


def cpu_target(run: dict[str, Any]) -> Target:
    """Issue 12's "runner CPU per job", with the floor httpx sets measured in the same run."""
    measured = (
        f"{run['cpu_ms_per_job_no_thumbnails']:.1f} ms ({run['jobs']:,} jobs, zero "
        f"latency; {run['cpu_ms_per_job']:.1f} ms with the thumbnails)"
    )
    floors = run.get("floors")
    if floors:
        plain, ours = floors[0], floors[-1]
        measured += (
            f"; the floor httpx sets, same run: {plain['cpu_ms_per_job']:.1f} ms plain, "
            f"{ours['cpu_ms_per_job']:.1f} ms on the runner's network backend; the runner's "
            f"own {run['own_cpu_ms_per_job']:.1f} ms above it"
        )
        floor = ours["cpu_ms_per_job"]
        if floor >= 6.0:
            measured += (
                " (the floor alone is over 6 ms here: httpx's four calls a job do not fit "
                "the target on this machine, whatever the runner does besides them)"
            )
        elif floor >= FLOOR_NOTED_MS:
            measured += (
                f" (the floor alone is >= {FLOOR_NOTED_MS:g} ms here: 6 ms leaves "
                f"{6.0 - floor:.1f} ms for everything the runner does besides its four calls)"
            )
    return Target(
        "runner CPU per job (thumbnails excluded)",
        "<= 6 ms",
        measured,
        run["cpu_ms_per_job_no_thumbnails"] <= 6.0 and run["completed"] == run["jobs"],
    )


def floor_table(run: dict[str, Any]) -> Table:
    """The runner and the floors httpx sets side by side: CPU ms per job, same jobs and minutes."""
    floors = run["floors"]
    first = floors[0]
    return Table(
        f"CPU per job against the floor httpx sets ({run['jobs']:,} jobs, zero latency, "
        f"{first['concurrency']} jobs and {first['submits_in_flight']} submits in flight, "
        f"pools of {first['connections']} connections; each a child process, wait4)",
        ("client", "done", "API calls", "media calls", "CPU s", "CPU ms/job"),
        (
            (
                "runner, thumbnails excluded",
                run["completed"],
                run["api_calls"],
                run.get("media_calls"),
                run["cpu_s"] - run["thumbnails_cpu_s"],
                run["cpu_ms_per_job_no_thumbnails"],
            ),
            *(
                (
                    f"floor: {f['client']}",
                    f["completed"],
                    f["api_calls"],
                    f["media_calls"],
                    f["cpu_s"],
                    f["cpu_ms_per_job"],
                )
                for f in floors
            ),
            (
                "the runner's own (runner - the last floor)",
                None,
                None,
                None,
                None,
                run["own_cpu_ms_per_job"],
            ),
        ),
    )


def _section(
    plans: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    scan: dict[str, Any],
    first_send: dict[str, Any],
    seconds: float,
    *,
    reports: dict[str, Any],
) -> Section:
    plan_table = Table(
        "Planning (child process; peak memory is its maximum resident set)",
        ("what", "jobs", "wall s", "CPU s", "peak MiB", "per job"),
        tuple(
            (
                p["what"],
                p["jobs"],
                p["wall_s"],
                p["cpu_s"],
                p["peak_rss_mib"],
                f"{p['us_per_job']:.1f} µs" if "us_per_job" in p else "-",
            )
            for p in plans
        ),
    )
    run_table = Table(
        "A run against a zero-latency emulator, and its resume (runner process only)",
        (
            "jobs",
            "output on",
            "in flight",
            "done",
            "failed",
            "jobs/s (server)",
            "CPU ms/job",
            "without thumbnails",
            "peak MiB",
            "resume wall s",
            "resume ms/job",
        ),
        tuple(
            (
                r["jobs"],
                r["disk"],
                r["max_in_flight"],
                r["completed"],
                r["failed"],
                r["jobs_per_s"],
                r["cpu_ms_per_job"],
                r["cpu_ms_per_job_no_thumbnails"],
                r["peak_rss_mib"],
                r.get("resume_wall_s"),
                r.get("resume_ms_per_job"),
            )
            for r in runs
        ),
    )
    scan_table = Table(
        "Ledger scan of a resume (in the bench process)",
        ("rows", "found", "build s", "scan s", "µs per row"),
        (
            (
                scan["rows"],
                scan["found"],
                scan["build_s"],
                scan["scan_s"],
                1e6 * scan["scan_s"] / scan["rows"],
            ),
        ),
    )
    reports_table = Table(
        "End-of-run reports over finished jobs (child process, as `runner run` past 50,000 "
        "jobs: summary, then the gallery of at most 10,000 entries and their thumbnails)",
        ("what", "jobs", "peak MiB", "MiB at start", "wall s"),
        (
            (
                f"reports over {reports['jobs']:,} finished jobs",
                reports["jobs"],
                reports["child_peak_mib"],
                reports["hwm_start_mib"],
                reports["wall_s"],
            ),
        ),
    )
    plan = plans[0]
    run0 = runs[0]
    ordered = sorted(runs, key=lambda r: r["jobs"])
    small, large = ordered[0], ordered[-1]
    # Peak memory at 100,000 jobs, extrapolated along the line through the two runs.
    slope = (large["peak_rss_mib"] - small["peak_rss_mib"]) / max(1, large["jobs"] - small["jobs"])
    at_100k = large["peak_rss_mib"] + max(0.0, slope) * (100_000 - large["jobs"])
    memory_target = Target(
        "peak memory of a 100,000-job run",
        "<= 150 MB",
        f"{at_100k * 1.048576:.0f} MB extrapolated ({small['peak_rss_mib'] * 1.048576:.0f} "
        f"MB at {small['jobs']:,} jobs, {large['peak_rss_mib'] * 1.048576:.0f} MB at "
        f"{large['jobs']:,}; the child's own {large['peak_source']})",
        at_100k * 1.048576 <= 150,
    )
    targets = (
        cpu_target(run0),
        # A line through two runs of a few hundred jobs is noise: --quick does not judge it.
        *((memory_target,) if large["jobs"] >= 2_000 else ()),
        # --quick's folder is small: it shows the figure, it does not judge it.
        *(
            (
                Target(
                    "resume over 100,000 finished jobs: first send",
                    "<= 10 s",
                    f"{first_send['first_send_s']:.1f} s over "
                    f"{first_send['finished_jobs']:,} finished jobs "
                    f"(from spawn; {first_send['new_submits']} sent)",
                    first_send["first_send_s"] <= 10.0 and first_send["new_submits"] == 1,
                ),
            )
            if first_send["finished_jobs"] >= 99_000
            else ()
        ),
        # --quick's folder is small: it shows the figure, it does not judge it.
        *(
            (
                Target(
                    "end-of-run reports over 100,000 finished jobs: peak memory",
                    f"<= {REPORTS_PEAK_GOAL_MIB:.0f} MiB",
                    f"{reports['child_peak_mib']:.0f} MiB over {reports['jobs']:,} jobs "
                    f"({reports['hwm_start_mib']:.0f} MiB at start; {reports['wall_s']:.0f} s; "
                    f"the child's own {reports['peak_source']})",
                    reports["child_peak_mib"] <= REPORTS_PEAK_GOAL_MIB,
                ),
            )
            if reports["jobs"] >= 99_000
            else ()
        ),
        Target(
            "peak memory planning 1,000,000 jobs",
            "<= 150 MB",
            f"{plan['peak_rss_mib'] * 1.048576:.0f} MB ({plan['jobs']:,} jobs, "
            f"{plans[1]['peak_rss_mib'] * 1.048576:.0f} MB with the budget cut)",
            max(p["peak_rss_mib"] for p in plans[:2]) * 1.048576 <= 150,
        ),
    )
    memory = [
        "The run's peak memory grows with its size: "
        + ", ".join(
            f"{r['peak_rss_mib']:.0f} MiB at {r['jobs']:,} jobs"
            for r in sorted(runs, key=lambda r: r["jobs"])
        )
        + "."
    ]
    resume = (
        f"Resume: {runs[0]['resume_ms_per_job']:.2f} ms per finished job for the whole "
        f"`runner run` (it checks each job's image and sidecar on disk), against "
        f"{scan['scan_s'] / scan['rows'] * 1e3:.3f} ms per row for the ledger read alone: "
        f"a resume of 100,000 finished jobs would take about "
        f"{runs[0]['resume_ms_per_job'] * 100:.0f} s, nearly all of it in the file checks."
    )
    notes = (*memory, resume)
    floor = (floor_table(run0),) if "floors" in run0 else ()
    return Section(
        key="scale",
        title="4. Scale",
        intro=(__doc__ or "").split("\n\n", 1)[1],
        tables=(plan_table, run_table, *floor, scan_table, reports_table),
        targets=targets,
        notes=notes,
        figures={
            "plans": plans,
            "runs": runs,
            "ledger_scan": scan,
            "first_send": first_send,
            "reports": reports,
        },
        seconds=seconds,
    )
