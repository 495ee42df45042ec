"""Polling from observed latency, and the in-flight cap."""

from __future__ import annotations

import random

import trio
import trio.testing

from runner.scheduling.inflight import InFlightCap, auto_cap
from runner.scheduling.polling import (
    LatencyTracker,
    PollPolicy,
    first_poll_delay,
    next_poll_delay,
)


def test_first_poll_guess_before_any_job_finished() -> None:
    tracker = LatencyTracker(PollPolicy(first_guess=10.0, jitter=0.0))
    assert first_poll_delay(tracker, random.Random(1)) == 10.0


def test_first_poll_follows_the_median_latency() -> None:
    tracker = LatencyTracker(PollPolicy(jitter=0.0))
    for latency in (20.0, 22.0, 24.0, 100.0, 21.0):
        tracker.observe(latency)
    assert first_poll_delay(tracker, random.Random(1)) == 22.0


def test_steps_are_a_fraction_of_latency_and_bounded() -> None:
    policy = PollPolicy(step_fraction=0.1, min_step=0.5, max_step=5.0, jitter=0.0)
    tracker = LatencyTracker(policy)
    tracker.observe(20.0, inference=8.0)
    rng = random.Random(1)
    assert next_poll_delay(tracker, "PROCESSING", rng) == 2.0
    assert next_poll_delay(tracker, "QUEUED", rng) == 4.0  # half an inference still ahead
    tracker.observe(1000.0)
    tracker.observe(1000.0)
    assert next_poll_delay(tracker, "PROCESSING", rng) == 5.0


def test_scale_shrinks_every_duration() -> None:
    tracker = LatencyTracker(PollPolicy(first_guess=10.0, jitter=0.0, scale=0.01))
    assert first_poll_delay(tracker, random.Random(1)) == 0.1


def test_auto_cap_follows_littles_law() -> None:
    assert auto_cap(10, 60.0, 12.0) == 12  # 10 x 12 / 60 in steady state + a window's burst
    assert auto_cap(50, 60.0, 60.0) == 100
    assert auto_cap(None, 60.0, 10.0) == 64
    assert auto_cap(1, 60.0, 0.0) == 2


def test_cap_blocks_until_release_and_can_grow() -> None:
    events: list[tuple[str, float]] = []

    async def main() -> None:
        cap = InFlightCap(1)
        await cap.acquire()

        async def second() -> None:
            await cap.acquire()
            events.append(("second", trio.current_time()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(second)
            await trio.sleep(5)
            cap.resize(2)
        assert cap.used == 2

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert events == [("second", 5.0)]
