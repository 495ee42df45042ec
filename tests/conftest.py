"""Fixtures shared by the whole suite.

- `anyio_backend`: trio on a virtual clock (`MockClock(autojump_threshold=0)`):
  `anyio.sleep(60)` returns at once with the clock 60 s later. A test marked
  ``@pytest.mark.store_threads`` (a whole run whose store writes go through a
  worker thread) gets `thread_aware_clock()` instead: it never jumps while a
  thread job is running, so a write takes no virtual time however slow the
  disk. A test that needs asyncio says so with ``@pytest.mark.parametrize("anyio_backend",
  ["asyncio"])`` (or a module overrides this fixture). Tests that talk to a
  loopback server must not use the virtual clock (it would jump past real
  network waits and fire timeouts): use asyncio or a sync client there.
- `make_emulator(**config)` / `emulator`: an in-process emulator (`runner.emulator.InProcess`),
  whose `client()` gives an httpx.AsyncClient wired to it without a port. Its
  clock is the running event loop's, so use it inside an async test.
- `provider`: a `provider_cases.ProviderCase`, parametrized over both providers
  (Segmind and xAI): a test that takes it runs once against each one's routes.
- `serve_emulator(**config)` / `served_emulator`: the emulator on loopback
  (uvicorn in a thread, real clock, `time_scale` 0.001 unless given: a "10 s"
  job takes 10 ms), stopped when the test ends.

Config keywords are those of `runner.emulator.EmulatorConfig`; `utc_offset`
defaults to `TEST_UTC`, a whole minute, so fixed rate windows line up with
clock zero in-process.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing
from provider_cases import CASES, ProviderCase

from runner.emulator import EmulatorConfig, InProcess, Served, serve_in_thread

TEST_UTC = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a multiple of 60 s
SERVED_TIME_SCALE = 0.001


class _HoldWhileThreadsRun(trio.abc.Instrument):
    """Sets `clock`'s autojump threshold to infinity while a worker thread runs, 0 otherwise.

    Checked after every task step: a thread starts in the step of the task
    that asks for it, and trio counts it until that task has its result.
    """

    def __init__(self, clock: trio.testing.MockClock) -> None:
        self._clock = clock

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        threshold = math.inf if trio.testing.active_thread_count() else 0.0
        if self._clock.autojump_threshold != threshold:
            self._clock.autojump_threshold = threshold


def thread_aware_clock() -> dict[str, Any]:
    """trio's run options for a virtual clock that never jumps while a worker thread runs.

    The store runs its SQLite commits and fsynced writes in worker threads
    (`anyio.to_thread.run_sync`). A MockClock at threshold 0 sees the task
    waiting on one as idle and jumps to the next deadline: the write "takes"
    a rate window, a job finishes before a chosen crash, and while the thread
    runs trio's guest loop (anyio's pytest runner) keeps jumping and waking
    timers, a spin that starves the thread of the GIL (minutes of CPU per
    run). A fixed real-time threshold (the 0.01-0.1 s these tests used) only
    hides the jumps until the disk is slower than it, and costs that much
    real time at every jump. So the threshold is 0 (jump at once) while no
    thread runs, and infinite (trio waits in its I/O poll, without spinning,
    for the thread's result to wake it) while one does. (Threads are the only
    real waits of these runs: the in-process emulator has no sockets.)
    """
    clock = trio.testing.MockClock(autojump_threshold=0)
    return {"clock": clock, "instruments": [_HoldWhileThreadsRun(clock)]}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "store_threads: a virtual-clock test whose run writes through worker threads "
        "(conftest.thread_aware_clock)",
    )


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """trio with a virtual clock that jumps ahead whenever every task is waiting."""
    if request.node.get_closest_marker("store_threads") is not None:
        return ("trio", thread_aware_clock())
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def _config(defaults: dict[str, Any], overrides: dict[str, Any]) -> EmulatorConfig:
    return EmulatorConfig(**{**defaults, **overrides})


@pytest.fixture
def make_emulator() -> Callable[..., InProcess]:
    """Factory: `make_emulator(**EmulatorConfig keywords)` -> InProcess."""

    def make(**overrides: Any) -> InProcess:
        return InProcess.create(_config({"utc_offset": TEST_UTC}, overrides))

    return make


@pytest.fixture
def emulator(make_emulator: Callable[..., InProcess]) -> InProcess:
    """An in-process emulator with the default config (seed 0, latency ~10 s virtual)."""
    return make_emulator()


@pytest.fixture
def serve_emulator() -> Iterator[Callable[..., Served]]:
    """Factory: `serve_emulator(**EmulatorConfig keywords)` -> Served, on loopback."""
    with contextlib.ExitStack() as stack:

        def serve(**overrides: Any) -> Served:
            config = _config({"time_scale": SERVED_TIME_SCALE}, overrides)
            return stack.enter_context(serve_in_thread(config))

        yield serve


@pytest.fixture
def served_emulator(serve_emulator: Callable[..., Served]) -> Served:
    """The emulator on loopback with the default config and time_scale 0.001."""
    return serve_emulator()


@pytest.fixture(params=CASES, ids=[case.name for case in CASES])
def provider(request: pytest.FixtureRequest) -> ProviderCase:
    """Each provider in turn (tests/provider_cases.py)."""
    case: ProviderCase = request.param
    return case
