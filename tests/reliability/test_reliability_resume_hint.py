"""The `resume with: ... --max-credits X` hint of a budget stop is enough to finish (issue #13).

Real `python -m runner run` processes on the embedded emulator, real folders.
Followed as printed, the hint must finish the folder: before, it named the
table's estimate of the rest, which is less than the next run's budget
counts when a price is not yet seen (its first job is reserved at 2x the
table) or when a kill left submits possibly billed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from whole_runs import jobs_manifest, runner_cli

from runner.backends.select import LOCAL_BASE_URL
from runner.manifest import load_manifest
from runner.money import micros
from runner.store import Ledger
from runner.sweep import expand


def manifest(tmp_path: Path, jobs: int, n: int, cap: float) -> Path:
    jobs_manifest(tmp_path, jobs, rpm=600, max_credits=cap, n=n, prefix="t", write=True)
    return tmp_path / "m.yaml"


def follow_the_hint(stopped: subprocess.CompletedProcess[str]) -> tuple[float, str]:
    """The cap the hint names, and the output of the run it says to type."""
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    hint = next(line for line in stopped.stdout.splitlines() if line.startswith("resume with:"))
    command = hint.removeprefix("resume with: python -m runner ").split()
    cap = float(command[command.index("--max-credits") + 1])
    again = runner_cli(*command, "--no-progress", "--time-scale", "0.01", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    return cap, again.stdout


def test_the_hint_covers_the_first_job_of_an_unseen_price(tmp_path: Path) -> None:
    # One job of 2 images, $0.04 at the table, reserved at $0.08 before its price is seen.
    path = manifest(tmp_path, jobs=1, n=2, cap=0.05)
    stopped = runner_cli("run", str(path), "--no-progress", "--time-scale", "0.01", "--yes")
    assert "the next job needs $0.08" in stopped.stdout
    cap, out = follow_the_hint(stopped)  # was --max-credits 0.04: below the cap that stopped it
    assert cap >= 0.08
    assert "1 of 1 jobs done" in out


def test_the_hint_covers_what_a_kill_may_have_cost(tmp_path: Path) -> None:
    path = manifest(tmp_path, jobs=10, n=1, cap=0.20)
    with Ledger.open(tmp_path / "out", backend="local", base_url=LOCAL_BASE_URL) as ledger:
        ledger.start_run(argv=["runner"], manifest_sha256=None, at=1.0)  # killed: never ended
        for job in expand(load_manifest(path)):
            ledger.plan(job.key, job.index, job.prompt_id, micros(0.02))
            ledger.submitting(job.key)  # every row marked, no id journalled
    stopped = runner_cli("run", str(path), "--no-progress", "--time-scale", "0.01", "--yes")
    assert "$0.08 of it possibly billed" in stopped.stdout
    assert "raise max_credits by $0.08" in stopped.stdout
    cap, out = follow_the_hint(stopped)  # was --max-credits 0.20: the cap that stopped it
    assert cap >= 0.28
    assert "10 of 10 jobs done" in out
