"""Running one client (the runner or a peer) against a fresh loopback emulator.

Each measurement gets its own emulator, so the server's log holds that
client's calls only. The client runs as a child process (its CPU and memory
are its own, and it does not share the bench's interpreter lock with the
server); the emulator runs in a thread of the bench.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmarks.processes import ProcessResult, run_process
from benchmarks.serverlog import ServerView, read_server
from runner.emulator import EmulatorConfig, Served, serve_in_thread

ROOT = Path(__file__).resolve().parent.parent
BENCH_KEY = "bench-key"  # the emulator accepts any key; this one is not a secret
PeerKind = Literal["sdk", "httpx"]


@dataclass(frozen=True, slots=True)
class ClientRun:
    """One client's run: its process, what it says it did, and what the server saw.

    `client_wall` is the client's own start-to-finish in seconds (the
    runner's `started`/`finished` events, a peer's first call to its last
    download), without interpreter start-up; None if it did not say.
    """

    name: str
    process: ProcessResult
    server: ServerView
    completed: int
    failed: int
    client_wall: float | None
    extra: dict[str, Any] = field(default_factory=dict)


PYCACHE = Path(tempfile.gettempdir()) / "runner-bench-pycache"


def child_env() -> dict[str, str]:
    """The environment of a client: the bench key, no base URL from outside.

    Bytecode is cached (in a folder of its own, not beside the sources) even
    where PYTHONDONTWRITEBYTECODE is set, as it is on the CI machine: without
    a cache every child compiles every module it imports (~1.5 s of CPU),
    which is not what a user's installed runner pays.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SEGMIND_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["SEGMIND_API_KEY"] = BENCH_KEY
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def runner_argv() -> list[str]:
    """How to start `runner`: the console script beside this Python, else `python -m runner`."""
    script = Path(sys.executable).parent / "runner"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "runner"]


@contextmanager
def served(config: EmulatorConfig) -> Iterator[Served]:
    """A fresh emulator on loopback for one measurement."""
    with serve_in_thread(config) as server:
        yield server


@contextmanager
def scratch(prefix: str, base: Path | None = None) -> Iterator[Path]:
    """A temporary folder (under `base`, else the system's), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def memory_disk() -> Path | None:
    """A RAM-backed folder (/dev/shm) where the system has one, else None."""
    # Only ever a parent for mkdtemp, which makes a private (0700) folder of its own.
    shm = Path("/dev/shm")  # noqa: S108
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


def server_view(server: Served) -> ServerView:
    """What the emulator saw so far."""
    emu = server.emulator
    return read_server(emu.calls(), emu.accepted_submits())


def run_runner(
    server: Served,
    manifest: Path,
    out: Path,
    scale: float,
    *,
    json_events: bool = True,
    extra_args: Sequence[str] = (),
    timeout: float = 600.0,
) -> ClientRun:
    """`runner run MANIFEST --backend segmind` against `server`, time-scaled by `scale`."""
    argv = [
        *runner_argv(),
        "run",
        str(manifest),
        "--backend",
        "segmind",
        "--base-url",
        server.base_url,
        "--time-scale",
        repr(scale),
        "--out",
        str(out),
        "--yes",
        "--seed",
        "1",
        "--json" if json_events else "--no-progress",
        *extra_args,
    ]
    process = run_process(argv, env=child_env(), cwd=ROOT, timeout=timeout)
    wall = None
    if json_events:
        events = [_json(line) for line in process.stdout.splitlines()]
        walls = {e["event"]: e["wall"] for e in events if e.get("event") in ("started", "finished")}
        if "started" in walls and "finished" in walls:
            wall = walls["finished"] - walls["started"]
    completed, failed = ledger_counts(out)
    return ClientRun(
        name="runner",
        process=process,
        server=server_view(server),
        completed=completed,
        failed=failed,
        client_wall=wall,
    )


def _json(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def ledger_counts(out: Path) -> tuple[int, int]:
    """(completed, failed) jobs in the ledger of the output folder `out` ((0, 0) without one)."""
    from runner.errors import RunnerError
    from runner.store import Ledger

    try:
        ledger = Ledger.open_readonly(out)
    except RunnerError:
        return 0, 0
    try:
        counts = ledger.counts()
    finally:
        ledger.close()
    return counts["completed"], counts["failed"]


def run_peer(
    kind: PeerKind,
    server: Served,
    jobs_file: Path,
    out: Path,
    *,
    concurrency: int,
    interval: float,
    retry_429: bool = False,
    timeout: float = 600.0,
) -> ClientRun:
    """One peer (benchmarks.peers.<kind>_peer) against `server`."""
    argv = [
        sys.executable,
        "-m",
        f"benchmarks.peers.{kind}_peer",
        "--base-url",
        server.base_url,
        "--jobs",
        str(jobs_file),
        "--concurrency",
        str(concurrency),
        "--interval",
        repr(interval),
        "--out",
        str(out),
    ]
    if retry_429:
        argv.append("--retry-429")
    process = run_process(argv, env=child_env(), cwd=ROOT, timeout=timeout)
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    report: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    wall = report["finished"] - report["started"] if report else None
    return ClientRun(
        name=f"{kind} C={concurrency}",
        process=process,
        server=server_view(server),
        completed=int(report.get("completed", 0)),
        failed=int(report.get("failed", 0)),
        client_wall=wall,
        extra={"errors": report.get("errors", {}), "seen_429": report.get("seen_429", 0)},
    )


def bench_emulator(
    scale: float,
    *,
    latency: str = "fixed:10",
    rpm: int | None = None,
    limiter: Literal["fixed", "sliding", "bucket"] = "fixed",
    rate_scope: Literal["submit", "all"] = "submit",
    image_px: int = 256,
    seed: int = 7,
    rate_window: float = 60.0,
    reset_hint: Literal["exact", "second", "none"] = "exact",
) -> EmulatorConfig:
    """An emulator for one measurement: time-scaled, never the bottleneck itself.

    Workers far above any batch here (no server-side queue, so the bounds hold),
    credits that never run out, 1:1 2k images shrunk to `image_px` square
    (the encode would otherwise dominate the server's own CPU; the runner checks
    the pixel size of 1k images, which are published, not of 2k ones).
    `rate_window` is nominal seconds; `reset_hint` how a 429 states its reset.
    """
    from runner.emulator import Latency

    return EmulatorConfig(
        workers=100_000,
        latency=Latency.parse(latency),
        time_scale=scale,
        unlimited_credits=True,
        rpm=rpm,
        limiter=limiter,
        rate_scope=rate_scope,
        rate_window=rate_window,
        reset_hint=reset_hint,
        sizes={("1:1", "2k"): (image_px, image_px)},
        seed=seed,
    )
