"""Faults of a shared run with a defined outcome, against a real Redis (workers in-process).

Each test holds one fix of issue #18: it failed before the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from coord_helpers import manifest_of, workers

from runner.coordination.local_redis import LocalRedis
from runner.coordination.status import coordinator_status
from runner.scheduling.scheduler import SchedulerConfig

pytestmark = pytest.mark.anyio

WATCHDOG_S = 20.0  # far beyond what each test needs; a hang fails instead of blocking the suite


async def test_the_fallback_gate_frees_a_slot_when_each_call_ends(
    tmp_path: Path, redis_url: str, redis_server: LocalRedis
) -> None:
    config = SchedulerConfig(rpm=4, window=0.3, margin=0.05)
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 2, tmp_path, config=config) as (a, _):
        await a.beat()
        redis_server.kill()
        calls = 0
        with anyio.fail_after(WATCHDOG_S):
            # Three times the fallback's share (4 // 2): each call's end frees its slot.
            for _ in range(6):
                assert await a.gate.admit() is None
                a.gate.finished()
                calls += 1
        assert a.gate.local_share == 2
    assert calls == 6


async def test_a_zero_hold_is_settled_and_refunded_without_losing_the_coordinator(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 1, tmp_path, budget=1.0) as (coord,):
        assert await coord.guard.reserve("free", 0.0)
        assert await coord.guard.settle("free", 0.0) == 0.0
        await coord.guard.refund("never-reserved")  # holds nothing: "-0" before the fix
        await coord.guard.mark_ambiguous("never-reserved-either")
        assert coord.lost is None
        assert await coord.guard.reserve("next", 0.02)
        s = coord.guard.stats()
    assert (s.reserved, s.spent, s.ambiguous) == pytest.approx((0.02, 0.0, 0.0))


async def test_status_judges_silence_by_the_workers_own_lease(
    tmp_path: Path, redis_url: str
) -> None:
    manifest = manifest_of(tmp_path, 1)
    async with workers(redis_url, manifest, 1, tmp_path) as (coord,):
        client = coord.link.client
        seconds, _ = client.time()  # type: ignore[misc]
        # Two workers as they registered, both last seen 3 s ago (Redis time):
        # past a 1 s lease, within a 15 s one.
        for worker, lease in (("short", 1.0), ("long", 15.0)):
            info = {"host": "h", "pid": 1, "out": "o", "lease": lease, "started": 0}
            client.hset(coord.keys.workers, worker, json.dumps(info))
            client.hset(coord.keys.seen, worker, f"{int(seconds) - 3}.0")
        (run,) = coordinator_status(redis_url)
        states = {w.worker: w.state for w in run.workers}
    assert states == {"short": "silent", "long": "alive", coord.worker: "alive"}
