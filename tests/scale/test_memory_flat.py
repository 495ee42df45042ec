"""Memory flat in the size of a run (issue 12's target: 100,000 jobs in <= 150 MB).

A run holds nothing per finished job: whatever its end needs is counted as
jobs finish or read back from the ledger. Two runs of the same shape, N=200
and N=1,200 jobs, on the in-process emulator (virtual clock, zero latency),
each measured at its `finished` event: the bytes the process holds that the
emulator does not (the emulator keeps every job it served, as Segmind keeps
results for an hour; the runner must not). The larger run may hold more only
by a small figure per job: a list of finished jobs, events, requests or
answers kept to the end costs far more than that, and fails this test.

The measure is the objects the garbage collector tracks and the strings,
bytes and numbers they hold (each object once, `sys.getsizeof`), less those
reachable from the emulator's state: no timing, and no tracemalloc (which
would make the runs several times slower).
"""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from runner.emulator import InProcess, Latency
from runner.events import Event, RunStats
from runner.manifest import parse_manifest
from runner.run import RunOptions, run_manifest

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.store_threads]

EPOCH = 1_800_000_000.0  # the wall clock at virtual time 0 (conftest's TEST_UTC)
SMALL, LARGE = 200, 1_200
# Bytes a job may add to what the run holds at its end. Bounded caches (the
# naming module's lru_cache of folded values, the rate gate's window of call
# times, all inside one window at zero latency) fill with the larger run's
# distinct values and count here; one kept object per job does not fit.
PER_JOB_BYTES = 1_000


def wall() -> float:
    return EPOCH + anyio.current_time()


# Not walked through: from a function or a class every module is reachable, and
# the run's own module-level caches would pass for the emulator's.
_SHARED = (
    types.ModuleType,
    types.FunctionType,
    types.MethodType,
    type,
    types.CodeType,
    types.BuiltinFunctionType,
    types.FrameType,
)


def _reachable(root: object) -> set[int]:
    """Ids of the objects reachable from `root`'s instance data (gc referents, not
    through modules, functions or classes)."""
    seen: set[int] = {id(root)}
    stack = [root]
    while stack:
        for child in gc.get_referents(stack.pop()):
            if id(child) not in seen and not isinstance(child, _SHARED):
                seen.add(id(child))
                stack.append(child)
    return seen


def held_bytes(exclude: object) -> int:
    """Bytes of the gc-tracked objects (and their untracked referents) not reachable
    from `exclude`, each object counted once."""
    gc.collect()
    skip = _reachable(exclude)
    counted: set[int] = set()
    objects = gc.get_objects()
    # This function's own bookkeeping (sets of ids, the list of objects) is not the run's.
    skip.update((id(skip), id(counted), id(objects)))
    total = 0
    for obj in objects:
        if id(obj) in skip:
            continue  # nor what it holds: reachable from `exclude` too, or ours
        for item in (obj, *gc.get_referents(obj)):
            key = id(item)
            if key in skip or key in counted:
                continue
            if item is not obj and gc.is_tracked(item):
                continue  # counted as an object of its own
            counted.add(key)
            total += sys.getsizeof(item)
    return total


async def held_at_finish(jobs: int, tmp_path: Path, emu: InProcess) -> tuple[int, RunStats]:
    """Run `jobs` zero-latency jobs; the bytes held (less the emulator's) at `finished`."""
    things = ", ".join(f"t{i}" for i in range(jobs))
    text = f"""name: flat
defaults: {{resolution: 2k, aspect_ratio: auto, output_format: jpeg}}
prompts:
  - id: p
    prompt: "a picture of {{thing}}"
    vars: {{thing: [{things}]}}
budget: {{requests_per_minute: 1000000}}
output: {{dir: {tmp_path / "out"}}}
"""
    manifest = parse_manifest(text, path=str(tmp_path / "m.yaml"), base_dir=tmp_path)
    measured: list[int] = []

    def at_finish(event: Event, stats: RunStats) -> None:
        if event.kind == "finished":
            measured.append(held_bytes(emu))

    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1)
    report = await run_manifest(
        manifest, opts, emulator=emu.emulator, env={}, wall=wall, listeners=[at_finish]
    )
    assert len(measured) == 1
    return measured[0], report.stats


async def test_a_run_holds_nothing_per_finished_job(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    # 16-pixel images (auto ratio: the runner checks no pixel size) keep the runs short.
    config = {
        "latency": Latency("fixed", 0.0),
        "workers": 100_000,
        "unlimited_credits": True,
        "sizes": {("1:1", "2k"): (16, 16)},
    }
    small, small_stats = await held_at_finish(SMALL, tmp_path / "small", make_emulator(**config))
    large, large_stats = await held_at_finish(LARGE, tmp_path / "large", make_emulator(**config))
    assert (small_stats.completed, large_stats.completed) == (SMALL, LARGE)
    per_job = (large - small) / (LARGE - SMALL)
    assert per_job < PER_JOB_BYTES, (
        f"{per_job:.0f} bytes more per job at {LARGE:,} jobs than at {SMALL:,} "
        f"({small:,} -> {large:,} bytes held at the end of the run)"
    )
