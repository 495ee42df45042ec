"""`runner run --json | head -1`: a real pipe whose reader leaves after the first line.

The run goes on without its event stream: every job ends completed, the
exit code is the documented one (0: every job done), and stderr holds one
line about the closed stream and no traceback. A subprocess, on the embedded
emulator (real time, scaled ten times faster).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from runner.store import Ledger, verify

ROOT = Path(__file__).resolve().parents[2]


def test_run_json_into_a_pipe_closed_after_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "SEGMIND_API_KEY"}
    command = [
        sys.executable,
        "-m",
        "runner",
        "run",
        str(ROOT / "manifests" / "example.yaml"),
        "--json",
        "--backend",
        "local",
        "--out",
        str(out),
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # what `head -1` does once it has its line
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
    assert json.loads(first)["event"] == "started"
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "BrokenPipeError" in lines[0]
    assert code == 0
    with Ledger.open_readonly(out) as ledger:
        counts = ledger.counts()
    assert counts["completed"] == 6
    assert sum(counts.values()) == 6
    assert verify(out).clean
