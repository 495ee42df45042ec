"""Running one client as a child process and measuring that process alone.

`os.wait4` returns the resource usage of exactly the child it reaps, so the
CPU seconds and peak resident memory are the client's own, not the bench's
(which serves the emulator in a thread) nor another child's. Output goes to
files, not pipes, so a chatty child cannot block on a full pipe.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class ProcessFailed(RuntimeError):
    """A child that had to succeed did not; str() names the command and its stderr tail."""


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """One finished child: exit code, wall seconds (spawn to reaping), its own CPU
    seconds (user + system), its peak resident set in MiB, and what it printed."""

    argv: tuple[str, ...]
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    stdout: str
    stderr: str
    timed_out: bool = False

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
    ):
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
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
        return ProcessResult(
            argv=tuple(argv),
            returncode=proc.returncode,
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_mib=usage.ru_maxrss / 1024,  # Linux reports KiB
            stdout=out.read(),
            stderr=err.read(),
            timed_out=killed.is_set(),
        )
