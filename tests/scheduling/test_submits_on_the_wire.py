"""At most `max_submits_in_flight` billed sends are marked or on the wire at once (issue #13).

A kill costs at most the paid submits whose request ids are not yet
recorded, and a resumed run counts as possibly billed every job it finds
`submitting`. Both are bounded by one place per billed send that spans the
mark, the send and the record of the answer. Here every submit takes 5 s
(the emulator's `slow` fault), the rate limit would let all 20 jobs go at
once, and the run is watched from both sides: the server's arrival times,
and the journal, where each mark (`sending`) and each recorded request id
(`accepted`) is appended in the order the run made them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from whole_runs import jobs_manifest

from runner.emulator import InProcess
from runner.emulator.config import FaultRate
from runner.run import RunOptions, run_manifest
from runner.store import verify
from runner.store.journal import read_journal

pytestmark = pytest.mark.anyio

JOBS = 20
SLOW_S = 5.0


@pytest.mark.parametrize("places", [1, 4])
async def test_no_more_billed_sends_than_places_are_marked_or_on_the_wire(
    tmp_path: Path, make_emulator: Callable[..., InProcess], places: int
) -> None:
    emu = make_emulator(faults=(FaultRate("submit", "slow", 1.0),), slow_delay=SLOW_S)
    manifest = jobs_manifest(
        tmp_path, JOBS, rpm=600, max_in_flight=JOBS, max_submits_in_flight=places, prefix="t"
    )
    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1)
    report = await run_manifest(manifest, opts, emulator=emu.emulator, env={})

    assert report.stats.completed == JOBS
    arrivals = sorted(c.time for c in emu.emulator.calls("submit"))
    assert len(arrivals) == JOBS
    # Each submit is answered SLOW_S after it arrives: the most that arrive
    # within SLOW_S of one another is the most on the wire at once.
    on_the_wire = max(sum(1 for t in arrivals if first <= t < first + SLOW_S) for first in arrivals)
    assert on_the_wire == places
    # Marked but not yet recorded, at any moment: what a kill would find.
    open_marks: set[str] = set()
    most_open = 0
    for entry in read_journal(tmp_path / "out"):
        if entry.kind == "sending":
            open_marks.add(entry.key)
        else:
            open_marks.discard(entry.key)
        most_open = max(most_open, len(open_marks))
    assert most_open == places
    assert verify(tmp_path / "out").clean
