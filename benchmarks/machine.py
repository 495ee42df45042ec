"""The machine a bench ran on, for the header of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages, where the system has them."""
    try:
        return os.getloadavg()
    except OSError:
        return None


def git_commit(root: Path) -> str:
    """The checked-out commit (short), with "+changes" when the tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+changes" if dirty else head


def describe(root: Path) -> dict[str, Any]:
    """Cores, CPU, Python, OS, date, commit and load average now."""
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": sys.version.split()[0],
        "os": f"{platform.system()} {platform.release()}",
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(root),
        "load_average": load_average(),
    }
