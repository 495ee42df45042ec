"""The local/shared seam (runner/modes.py): a single-process run stays clear of coordination."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import functools, sys
from pathlib import Path
import anyio
from runner.manifest import parse_manifest
from runner.run import RunOptions, run_manifest

out = Path(sys.argv[1])
text = "name: m\\nprompts:\\n  - {id: p, prompt: a cube}\\noutput: {dir: %s}\\n" % out
manifest = parse_manifest(text, path=str(out / "m.yaml"), base_dir=out)
options = RunOptions(backend="local", out=out, time_scale=0.01, seed=1)
report = anyio.run(functools.partial(run_manifest, manifest, options, env={}))
print(report.stats.completed, report.stop, report.whole)
print(sorted(name for name in sys.modules if name.startswith("runner.coordination")))
"""


def test_a_single_process_run_never_imports_the_coordination_package(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["1 None True", "[]"]
