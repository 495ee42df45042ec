"""Measure each fault of a shared run (issue #18's figures; docs/distributed.md "Faults, measured").

    python -m benchmarks.coord_faults [--repeat N]      # needs redis-server; a few minutes

Three `runner run --coordinator` processes on one API key against a loopback
emulator (a sliding 4-per-window limit, 10 s jobs, time scale 0.05: a window
is 3 s), a real redis-server, one fault per scenario. Every figure is counted
from the emulator's log (submits, windows, 429s), the run's record in Redis
and the exit codes; the bound each figure must meet is printed beside it.
The test suite checks the same outcomes (tests/coordination/test_coord_*.py);
this script prints the numbers, repeated, on one machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.local_redis import LocalRedis, local_redis
from benchmarks.workers import Event, Worker, start_workers, wait_any
from runner.coordination.status import coordinator_status
from runner.emulator import EmulatorConfig, Latency, Served, serve_in_thread
from runner.emulator.log import most_in_window
from runner.money import format_usd

SCALE = 0.05
WINDOW = 60.0 * SCALE
RPM = 4
JOBS = 12
WORKERS = 3
LEASE = 3.0
TIMEOUT = 120.0


def write_manifest(
    folder: Path, jobs: int, *, max_credits: float, lease: float, rpm: int | str = RPM
) -> Path:
    """A manifest of `jobs` jobs (one prompt, one var) at `rpm` per minute, as folder/m.yaml."""
    things = ", ".join(f"thing{i}" for i in range(jobs))
    path = folder / "m.yaml"
    path.write_text(
        "name: coord-faults\n"
        'defaults: {resolution: 1k, aspect_ratio: "1:1", output_format: jpeg}\n'
        f'prompts: [{{id: p, prompt: "a picture of {{thing}}", vars: {{thing: [{things}]}}}}]\n'
        f"budget: {{requests_per_minute: {rpm}, max_credits: {max_credits}}}\n"
        f"output: {{dir: {folder / 'out'}}}\n"
        f"coordinator: {{lease: {lease}}}\n",
        encoding="utf-8",
    )
    return path


@contextmanager
def emulator() -> Iterator[Served]:
    config = EmulatorConfig(
        time_scale=SCALE, rpm=RPM, limiter="sliding", latency=Latency("fixed", 10.0), workers=16
    )
    with serve_in_thread(config) as served:
        yield served


def submitted(count: int) -> Callable[[list[Event]], bool]:
    def seen(events: list[Event]) -> bool:
        return bool(sum(e.get("event") == "submitted" for e in events) >= count)

    return seen


def extra_paid(served: Served) -> int:
    per_job = Counter(v.params.prompt for v in served.emulator.accepted_submits())
    return sum(n - 1 for n in per_job.values())


def most_accepted(served: Served) -> int:
    """Most submits the server accepted in any window (half-open, as max_in_window)."""
    return most_in_window(
        (c.time for c in served.emulator.calls("submit") if c.status != 429), WINDOW
    )


def rate_figures(served: Served) -> str:
    most = served.emulator.max_in_window(WINDOW, ("submit",))
    refused = sum(1 for c in served.emulator.calls() if c.status == 429)
    return (
        f"most submits in a window {most}, {most_accepted(served)} accepted (limit {RPM}), "
        f"429s {refused}"
    )


def resume(worker: Worker) -> int:
    """Run a worker's printed resume command to its end; its exit code."""
    printed = worker.stderr + worker.stdout
    match = re.search(r"resume with: (.+)", printed)
    if match is None:
        return -100
    command = shlex.split(match.group(1))
    args = command[command.index("run") :]
    full = [sys.executable, "-m", "runner", *args, "--time-scale", str(SCALE), "--no-progress"]
    env = {**os.environ, "SEGMIND_API_KEY": "sk-local-workers"}
    return subprocess.run(full, env=env, capture_output=True, check=False).returncode


def redis_lost(tmp: Path, server: LocalRedis) -> str:
    with emulator() as served:
        manifest = write_manifest(tmp, JOBS, max_credits=1.0, lease=LEASE)
        with start_workers(
            manifest,
            WORKERS,
            coordinator=server.url,
            out_root=tmp,
            base_url=served.base_url,
            time_scale=SCALE,
        ) as workers:
            wait_any(workers, submitted(1), TIMEOUT)
            server.kill()
            killed = time.monotonic()
            exits = []
            for w in workers:
                code = w.wait(TIMEOUT)
                exits.append((code, time.monotonic() - killed))
        server.start()
    codes = [c for c, _ in exits]
    latest = max(t for _, t in exits)
    return (
        f"Redis lost mid-run: exit codes {codes} (1 expected), last exit {latest:.1f} s "
        f"after the kill (bound lease + 10 = {LEASE + 10:.0f} s)"
    )


def empty_restart(tmp: Path, server: LocalRedis) -> str:
    with emulator() as served:
        manifest = write_manifest(tmp, JOBS, max_credits=1.0, lease=LEASE)
        with start_workers(
            manifest,
            WORKERS,
            coordinator=server.url,
            out_root=tmp,
            base_url=served.base_url,
            time_scale=SCALE,
        ) as workers:
            wait_any(workers, submitted(1), TIMEOUT)
            server.kill()
            server.start()  # empty, at once
            codes = [w.wait(TIMEOUT) for w in workers]
            resumed = [resume(w) for w, c in zip(workers, codes, strict=True) if c == 1]
        figures = rate_figures(served)
        extra = extra_paid(served)
    return f"Redis back empty: exit codes {codes}, resumed {resumed}; {figures}; extra paid {extra}"


def aof_restart(tmp: Path) -> str:
    (tmp / "aof").mkdir()
    with local_redis(tmp / "aof", appendonly=True) as server, emulator() as served:
        manifest = write_manifest(tmp, JOBS, max_credits=1.0, lease=LEASE)
        with start_workers(
            manifest,
            WORKERS,
            coordinator=server.url,
            out_root=tmp,
            base_url=served.base_url,
            time_scale=SCALE,
        ) as workers:
            wait_any(workers, submitted(2), TIMEOUT)
            server.kill()
            server.start()  # the append-only file is replayed
            codes = [w.wait(TIMEOUT) for w in workers]
            resumed = [resume(w) for w, c in zip(workers, codes, strict=True) if c == 1]
        (run,) = coordinator_status(server.url)
        extra = extra_paid(served)
        jobs = len({v.params.prompt for v in served.emulator.accepted_submits()})
    return (
        f"AOF restart: exit codes {codes}, resumed {resumed}; {run.completed}/{JOBS} done, "
        f"{jobs} jobs submitted, extra paid {extra} (bound 0)"
    )


def kills_in_a_burst(tmp: Path, server: LocalRedis, kills: int) -> str:
    with emulator() as served:
        manifest = write_manifest(tmp, JOBS, max_credits=1.0, lease=LEASE)
        with start_workers(
            manifest,
            WORKERS,
            coordinator=server.url,
            out_root=tmp,
            base_url=served.base_url,
            time_scale=SCALE,
        ) as workers:
            alive = list(workers)
            for _ in range(kills):
                # A worker's second submit: its burst is on the wire.
                victim = wait_any(alive, submitted(2), TIMEOUT)
                if victim is None:
                    break
                victim.kill()
                alive.remove(victim)
            codes = [w.wait(TIMEOUT) for w in alive]
        (run,) = coordinator_status(server.url)
        extra = extra_paid(served)
        figures = rate_figures(served)
    return (
        f"{kills} kill(s) inside a burst: survivors exit {codes}, {run.completed}/{JOBS} done, "
        f"extra paid {extra} (bound {kills}); {figures}"
    )


def budget_stop_with_a_kill(tmp: Path, server: LocalRedis) -> str:
    budget = round(JOBS / 2 * 0.02, 2)
    with emulator() as served:
        manifest = write_manifest(tmp, JOBS, max_credits=budget, lease=LEASE)
        with start_workers(
            manifest,
            WORKERS,
            coordinator=server.url,
            out_root=tmp,
            base_url=served.base_url,
            time_scale=SCALE,
        ) as workers:
            victim = wait_any(workers, submitted(1), TIMEOUT)
            assert victim is not None
            victim.kill()
            codes = [w.wait(TIMEOUT) for w in workers if w is not victim]
        (run,) = coordinator_status(server.url)
        charged = served.emulator.charged_total()
        paid = len(served.emulator.accepted_submits())
    return (
        f"budget stop (${budget:.2f}, half the jobs) with a kill: survivors exit {codes} "
        f"(3 expected), {paid} submits paid, {run.completed} completed, charged ${charged:.2f}, "
        f"reserved at the end {format_usd(run.reserved)} (bound $0)"
    )


def stall(tmp: Path, server: LocalRedis, seconds: float = 8.0) -> str:
    with emulator() as served:
        manifest = write_manifest(tmp, JOBS, max_credits=1.0, lease=LEASE)
        with start_workers(
            manifest,
            WORKERS,
            coordinator=server.url,
            out_root=tmp,
            base_url=served.base_url,
            time_scale=SCALE,
        ) as workers:
            stalled = wait_any(workers, submitted(1), TIMEOUT)
            assert stalled is not None
            stalled.process.send_signal(signal.SIGSTOP)
            time.sleep(seconds)  # the fault itself: a stop of this length
            stalled.process.send_signal(signal.SIGCONT)
            codes = [w.wait(TIMEOUT) for w in workers]
        (run,) = coordinator_status(server.url)
        extra = extra_paid(served)
        lost = "lost the coordinator" in stalled.stderr + stalled.stdout
    return (
        f"SIGSTOP {seconds:.0f} s with a {LEASE:.0f} s lease, then SIGCONT: exit codes {codes} "
        f"(stalled worker {stalled.index}, lost the coordinator: {lost}), "
        f"{run.completed}/{JOBS} done, {run.takeovers} take-overs, extra paid {extra}, "
        f"reserved at the end {format_usd(run.reserved)}"
    )


def auto_quota(tmp: Path, server: LocalRedis) -> str:
    with emulator() as served:
        manifest = write_manifest(tmp, JOBS, max_credits=1.0, lease=LEASE, rpm="auto")
        with start_workers(
            manifest,
            WORKERS,
            coordinator=server.url,
            out_root=tmp,
            base_url=served.base_url,
            time_scale=SCALE,
        ) as workers:
            codes = [w.wait(TIMEOUT) for w in workers]
        (run,) = coordinator_status(server.url)
        figures = rate_figures(served)
        extra = extra_paid(served)
    return (
        f"requests_per_minute: auto (server {RPM} per window, not told): exit codes {codes}, "
        f"{run.completed}/{JOBS} done, extra paid {extra}; {figures} (bound: 429s <= 3)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory() as root:
        base = Path(root)
        with local_redis(base) as server:

            def fresh(name: str, i: int) -> Path:
                server.kill()
                server.start()  # every scenario on an empty Redis
                path = base / f"{name}{i}"
                path.mkdir()
                return path

            for i in range(repeat):
                for line in (
                    redis_lost(fresh("lost", i), server),
                    empty_restart(fresh("empty", i), server),
                    aof_restart(fresh("aof", i)),
                    kills_in_a_burst(fresh("burst", i), server, 1),
                    kills_in_a_burst(fresh("burst2", i), server, 2),
                    budget_stop_with_a_kill(fresh("budget", i), server),
                    stall(fresh("stall", i), server),
                    auto_quota(fresh("auto", i), server),
                ):
                    print(line, flush=True)


if __name__ == "__main__":
    main()
