"""The stop state only ever tightens, and an abandon cancels every poll, even later ones."""

from __future__ import annotations

import anyio
import pytest

from runner.errors import StoreError
from runner.scheduling.stop import Stop, StopState

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("requests", "expected"),
    [
        ([("budget", False, False)], StopState("budget", False, False)),
        ([("budget", False, False), ("406", True, False)], StopState("budget", True, False)),
        (
            [("interrupted", True, True), ("budget", False, False)],
            StopState("interrupted", True, True),
        ),
    ],
)
def test_a_later_request_never_loosens_an_earlier_one(
    requests: list[tuple[str, bool, bool]], expected: StopState
) -> None:
    told: list[str] = []
    stop = Stop(told.append)
    for reason, hold, abandon in requests:
        stop.request(reason, hold_submits=hold, abandon_polls=abandon)
    assert stop.state == expected
    assert told == [requests[0][0]]  # told once, with the first reason


def test_a_fatal_error_abandons_polls_and_is_kept() -> None:
    stop = Stop(lambda reason: None)
    first, second = StoreError("disk full"), StoreError("again")
    stop.fail(first)
    stop.fail(second)
    assert stop.state.fatal is first
    assert stop.state.abandon_polls and stop.state.hold_submits
    assert stop.state.reason == "disk full"


async def test_an_abandon_cancels_running_polls_and_those_that_start_after() -> None:
    stop = Stop(lambda reason: None)
    ended: list[str] = []

    async def poll(name: str) -> None:
        with stop.polling():
            await anyio.sleep(100)
            ended.append(f"{name} finished")  # not reached when abandoned
        ended.append(f"{name} left")

    async with anyio.create_task_group() as tg:
        tg.start_soon(poll, "early")
        await anyio.sleep(1)
        stop.request("interrupted", abandon_polls=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(poll, "late")
    assert ended == ["early left", "late left"]
    assert anyio.current_time() < 100
