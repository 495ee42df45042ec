"""The suite's virtual clocks (tests/conftest.py): what the thread-aware one is for.

A worker-thread job here stands in for a slow store write (an fsync on a
loaded disk): the thread sleeps 50 ms of real time, the loop has a 10 s
timer pending.
"""

from __future__ import annotations

import time

import anyio
import anyio.to_thread
import pytest

pytestmark = pytest.mark.anyio

SLOW_WRITE = 0.05  # real seconds


async def thread_job_under_a_pending_timer() -> tuple[float, float]:
    """Virtual seconds that passed during the thread job, and in all."""
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.sleep, 10.0)
        await anyio.to_thread.run_sync(time.sleep, SLOW_WRITE)
        during = anyio.current_time() - start
    return during, anyio.current_time() - start


@pytest.mark.store_threads
async def test_the_thread_aware_clock_stands_still_while_a_thread_runs() -> None:
    during, total = await thread_job_under_a_pending_timer()
    assert during == 0.0
    assert total == 10.0  # and jumps at once when no thread runs


async def test_the_plain_clock_jumps_while_a_thread_runs() -> None:
    # Why store_threads exists: the plain clock takes the waiting task for idle.
    during, total = await thread_job_under_a_pending_timer()
    assert during == 10.0 and total == 10.0
