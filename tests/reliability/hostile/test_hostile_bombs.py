"""Bombs: answers far larger than memory are refused with bounded memory, and the run goes on.

Memory is measured with tracemalloc (the peak of Python allocations during
the run, the emulator's included), never with wall time. A gzip bomb is
small on the wire, so it runs in-process on the virtual clock; a huge plain
body must stream, so it is served on loopback (httpx's in-process ASGI
transport would buffer it whole) on the real clock with a time scale.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hostile_corpus import emulator_config, one_job_manifest, run_case

from runner.emulator import Emulator, serve_in_thread
from runner.run import RunOptions, run_manifest
from runner.store import Ledger, verify

pytestmark = pytest.mark.anyio

GIB = 1024**3
MIB = 1024**2
# Twice the 8 MiB answer cap, and room for the run itself: far below the bombs.
MEMORY_BOUND = 64 * MIB


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Yields a list that holds, once the block ends, the peak traced bytes within it."""
    found: list[int] = []
    tracemalloc.start()
    try:
        yield found
    finally:
        found.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["status", "result"])
async def test_a_6_gib_gzip_bomb_costs_megabytes(kind: str, tmp_path: Path) -> None:
    emu = Emulator(emulator_config(hostile_bytes=6 * GIB))
    emu.faults.script(kind, "gzip_bomb")  # type: ignore[arg-type]
    with peak_memory() as peak:
        report, row = await run_case(emu, tmp_path, one_job_manifest(tmp_path))
    assert peak[0] < MEMORY_BOUND, f"peak {peak[0] / MIB:.0f} MiB"
    # Refused, asked again (the job is paid and kept by the server), then completed.
    assert [c.fault for c in emu.calls(kind)][:2] == ["gzip_bomb", None]
    assert row.state == "completed" and report.stats.retries >= 1
    assert verify(tmp_path / "out").clean


# The real clock: the server is on a real socket.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(("kind", "size"), [("status", 500 * MIB), ("result", 200 * MIB)])
async def test_a_huge_body_is_cut_off_at_the_cap(
    kind: str, size: int, tmp_path: Path, anyio_backend: str
) -> None:
    """500 MB of JSON on a status, a 200 MB data: URI on a result, streamed over a socket."""
    config = emulator_config(hostile_bytes=size, time_scale=0.001)
    with serve_in_thread(config) as served:
        served.emulator.faults.script(kind, "huge_body")  # type: ignore[arg-type]
        options = RunOptions(
            backend="segmind",
            base_url=served.base_url,
            out=tmp_path / "out",
            time_scale=0.001,
            seed=1,
        )
        with peak_memory() as peak:
            report = await run_manifest(
                one_job_manifest(tmp_path), options, env={"SEGMIND_API_KEY": "sk-bomb"}
            )
        calls = [c.fault for c in served.emulator.calls(kind)]
    assert peak[0] < MEMORY_BOUND, f"peak {peak[0] / MIB:.0f} MiB"
    assert calls[:2] == ["huge_body", None]
    with Ledger.open_readonly(tmp_path / "out") as ledger:
        (row,) = list(ledger.rows())
    assert row.state == "completed" and report.stats.completed == 1
    assert verify(tmp_path / "out").clean
