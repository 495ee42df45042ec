"""Running one client as a child process and measuring that process alone.

`os.wait4` returns the CPU seconds of exactly the child it reaps. Its peak
resident memory (ru_maxrss) is not the child's alone: after the fork it
starts from the parent's, and the bench's own process (which serves the
emulator in a thread) is large. The peak memory therefore comes from the
child itself: a Python child imports benchmarks/probe/sitecustomize.py at
start-up and writes its own `VmHWM` (reset by the kernel at exec) at exit;
wait4's figure is the fallback for a child that did not report (killed, or
not Python). Output goes to files, not pipes, so a chatty child cannot
block on a full pipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PROBE_DIR = Path(__file__).resolve().parent / "probe"


class ProcessFailed(RuntimeError):
    """A child that had to succeed did not; str() names the command and its stderr tail."""


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """One finished child: exit code, wall seconds (spawn to reaping), its own CPU
    seconds (user + system), its peak resident set in MiB, and what it printed.

    `peak_source` says where the peak comes from: "VmHWM" (the child's own
    report) or "wait4" (ru_maxrss, which may include the parent's peak).
    """

    argv: tuple[str, ...]
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    stdout: str
    stderr: str
    timed_out: bool = False
    peak_source: str = "wait4"

    def check(self) -> ProcessResult:
        """Self, or ProcessFailed when the child failed or timed out."""
        if self.returncode != 0 or self.timed_out:
            tail = self.stderr.strip().splitlines()[-5:]
            why = "timed out" if self.timed_out else f"exit {self.returncode}"
            raise ProcessFailed(f"{' '.join(self.argv[:4])} ... {why}: {' | '.join(tail)}")
        return self


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 600.0,
) -> ProcessResult:
    """Run `argv` to its end (killed after `timeout` seconds) and measure it."""
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8") as out,
        tempfile.TemporaryFile("w+", encoding="utf-8") as err,
        tempfile.TemporaryDirectory(prefix="bench-probe-") as probe_dir,
    ):
        probe = Path(probe_dir) / "probe.json"
        child_env = dict(env) if env is not None else dict(os.environ)
        child_env["BENCH_PROBE_OUT"] = str(probe)
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROBE_DIR), child_env.get("PYTHONPATH")) if p
        )
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=child_env,
            cwd=cwd,
        )
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            proc.kill()

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # Interrupted (Ctrl-C): leave no child behind.
            proc.kill()
            proc.wait()
            raise
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - start
        # wait4 reaped the child: tell Popen, so it does not wait for it again.
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        peak_kib, source = _own_peak(probe)
        return ProcessResult(
            argv=tuple(argv),
            returncode=proc.returncode,
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mib=(peak_kib if peak_kib is not None else usage.ru_maxrss) / 1024,  # KiB
            stdout=out.read(),
            stderr=err.read(),
            timed_out=killed.is_set(),
            peak_source=source,
        )


def _own_peak(probe: Path) -> tuple[int | None, str]:
    """The child's own VmHWM in KiB from its probe report, or (None, "wait4")."""
    try:
        report = json.loads(probe.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, "wait4"
    hwm = report.get("vmhwm_kib") if isinstance(report, dict) else None
    return (hwm, "VmHWM") if isinstance(hwm, int) else (None, "wait4")
