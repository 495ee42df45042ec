"""The local/shared seam (runner/modes.py): a single-process run stays clear of coordination."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.modes import sends_left_on_the_wire

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


def in_a_fresh_process(script: str, tmp_path: Path) -> list[str]:
    """The lines `script` printed, run by a new interpreter with `tmp_path` as argv[1]."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_a_single_process_run_never_imports_the_coordination_package(tmp_path: Path) -> None:
    assert in_a_fresh_process(SCRIPT, tmp_path) == ["1 None True", "[]"]


# A resume's start-up: Ledger.open and the single-process limits, in a fresh process so
# that the audit hook (which cannot be removed) counts only this. The journal holds one
# answered send and two with no answer, one of them 10 s old, one an hour old.
OPENS_SCRIPT = """
import sys, time
from pathlib import Path
from runner.manifest import parse_manifest
from runner.modes import Alone, Setting
from runner.resume import Rules
from runner.scheduling.config import SchedulerConfig
from runner.store import Ledger
from runner.store.journal import Journal

out = Path(sys.argv[1])
now = time.time()
journal = Journal.open(out, capacity=8)
journal.sending("k1:a", now - 20.0)
journal.accepted("k1:a", "req-a", now - 19.0)
journal.sending("k1:b", now - 10.0)
journal.sending("k1:c", now - 3600.0)
journal.close()
opened = []
sys.addaudithook(
    lambda event, args: opened.append(args[0])
    if event == "open" and str(args[0]).endswith("journal.bin") else None
)
manifest = parse_manifest("name: m\\nprompts: [{id: p, prompt: x}]\\n", path=str(out / "m.yaml"),
                          base_dir=out)
setting = Setting(manifest=manifest, jobs=lambda: iter(()), count=lambda: 0, out=out,
                  base_url="http://127.0.0.1:1", api_key=None, budget=None,
                  config=SchedulerConfig(rpm=10, window=60.0, seed=1), rules=Rules(3600.0),
                  wall=time.time)
with Ledger.open(out, backend="local", base_url="http://127.0.0.1:1") as ledger:
    alone = Alone(setting)
    gate, _ = alone.limits(ledger)
    alone.close()
print(len(opened), sorted(round(now - at) for at in ledger.unanswered_sends))
"""


def test_a_resume_reads_the_journal_once_for_the_replay_and_the_gate(tmp_path: Path) -> None:
    """The ledger's open reads the journal (0.7 s at 200,000 records); the gate is seeded
    from that read, not from a second one."""
    # One open of journal.bin, and the ledger kept the two sends with no answer (10 s and
    # an hour old) for the gate, whose window takes the first (the test below).
    assert in_a_fresh_process(OPENS_SCRIPT, tmp_path) == ["1 [10, 3600]"]


@pytest.mark.parametrize(
    ("sent", "counted"),
    [
        ((), []),
        ((990.0,), [10.0]),  # 10 s ago: in the window
        ((1000.0,), [0.0]),  # just now
        ((940.0,), [60.0]),  # the window's far edge counts
        ((939.0,), []),  # older than the window: the server has forgotten it
        ((1001.0,), []),  # stamped ahead of now (a clock stepped back): not counted
        ((500.0, 995.0, 970.0), [5.0, 30.0]),
    ],
)
def test_sends_left_on_the_wire_are_the_unanswered_sends_of_the_window(
    sent: tuple[float, ...], counted: list[float]
) -> None:
    assert sorted(sends_left_on_the_wire(sent, 1000.0, 60.0)) == counted
