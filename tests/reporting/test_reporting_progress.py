"""Status lines for a log (not a terminal): a real run on the embedded emulator, virtual clock."""

from __future__ import annotations

import io
import itertools
import math
import re
from pathlib import Path

import pytest

from runner.emulator import EmulatorConfig, Latency
from runner.events import RunStats
from runner.manifest import load_manifest
from runner.reporting.progress import ProgressBar, rate_note
from runner.run import RunOptions, run_manifest


def _manifest(tmp_path: Path, jobs: int, rpm: int) -> Path:
    things = ", ".join(f"t{i}" for i in range(jobs))
    path = tmp_path / "m.yaml"
    path.write_text(
        f"""
name: progress
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: jpeg}}
prompts:
  - id: p
    prompt: "a picture of {{thing}}"
    vars: {{thing: [{things}]}}
budget: {{requests_per_minute: {rpm}}}
output: {{dir: {tmp_path / "out"}}}
"""
    )
    return path


@pytest.mark.anyio
async def test_a_status_line_every_interval_of_the_run_clock(tmp_path: Path) -> None:
    # 6 jobs at 2 a minute, each 200 s long: about 3 minutes of run clock.
    log = io.StringIO()
    bar = ProgressBar(stream=log, status_every=30.0)
    report = await run_manifest(
        load_manifest(str(_manifest(tmp_path, 6, rpm=2))),
        RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0),
        env={},
        listeners=[bar],
        emulator_config=EmulatorConfig(time_scale=1.0, latency=Latency("fixed", 200.0)),
    )
    bar.close()
    assert report.stats.completed == 6
    lines = [line for line in log.getvalue().splitlines() if line.startswith("status: ")]
    times = [float(line.rsplit("; ", 1)[1].removesuffix(" s")) for line in lines]
    states = [line.removeprefix("status: ").split(";")[0].split(" (")[0] for line in lines]
    assert "waiting for the rate window" not in states[-2:]  # nothing is left to wait
    # Jobs held for the window: the line says when it opens and, at 2 a minute,
    # when the sends are done (here while others are in flight, "running").
    # (While the gate waits for a call on the wire to end, it says that instead.)
    waits = [line for line in lines if re.search(r"waiting \d", line)]
    assert waits, lines
    for line in waits:
        slot = re.search(r"\((?:next slot in (\d+) s, )?ETA by the rate ~[^)]+\);", line)
        ends = "(next slot when a call on the wire ends);" in line
        assert ends or (slot is not None and int(slot[1] or 0) <= 61), line
    assert states[-1] == "finished" and "waiting 1" in log.getvalue()
    # No two lines of one state closer than the interval; never silent for long.
    pairs = list(zip(states, times, strict=True))
    for (a, t0), (b, t1) in itertools.pairwise(pairs):
        assert a != b or t1 - t0 >= 29.5, lines
    assert times[-1] > 120 and len(lines) >= 4, lines


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.anyio
async def test_on_a_terminal_a_resume_leaves_earlier_jobs_out_of_the_rate(tmp_path: Path) -> None:
    manifest = load_manifest(str(_manifest(tmp_path, 6, rpm=60)))
    options = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0)
    config = EmulatorConfig(time_scale=1.0, latency=Latency("fixed", 2.0))
    first = await run_manifest(manifest, options, env={}, emulator_config=config)
    assert first.stats.completed == 6
    screen = _Terminal()
    bar = ProgressBar(stream=screen)
    again = await run_manifest(manifest, options, env={}, listeners=[bar], emulator_config=config)
    bar.close()
    assert again.stats.skipped == 6
    text = screen.getvalue()
    # The six done earlier fill the bar; this run did nothing, so it has no rate
    # (was "6/6 [00:00<00:00, 410.17job/s]": the earlier jobs counted as this run's).
    assert "6/6" in text, text
    assert not re.search(r"[1-9][\d.e+]*job/s", text), text


@pytest.mark.parametrize(
    ("waiting", "next_slot_s", "rate_eta_s", "note"),
    [
        (0, 12.0, 130.0, ""),  # nothing waits
        (2, None, None, ""),  # the gate cannot say
        (2, 12.0, 130.0, " (next slot in 12 s, ETA by the rate ~2 min 10 s)"),
        (2, 12.0, None, " (next slot in 12 s)"),
        (2, 1.0, None, " (next slot in 1 s)"),
        # Under a second: the slot is as good as open; "next slot in 0 s" was a flicker.
        (2, 0.4, 130.0, " (ETA by the rate ~2 min 10 s)"),
        (2, 0.999, None, ""),
        (2, 0.0, None, ""),
        (2, math.inf, 130.0, " (next slot when a call on the wire ends)"),
    ],
)
def test_the_rate_note_says_when_the_next_slot_opens_unless_it_is_open(
    waiting: int, next_slot_s: float | None, rate_eta_s: float | None, note: str
) -> None:
    stats = RunStats(waiting=waiting, next_slot_s=next_slot_s, rate_eta_s=rate_eta_s)
    assert rate_note(stats) == note
    assert "in 0 s" not in rate_note(stats)
