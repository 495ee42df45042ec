"""Fixtures of the backend tests: the real client on an in-process emulator.

The suite's conftest gives `anyio_backend` (trio on a virtual clock). `emu`
is the emulator's state itself (not the suite's `InProcess` wrapper), so
tests read its call log and accounts directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from backend_helpers import FAKE_KEY, small_config

from runner.backends.segmind import SegmindBackend
from runner.backends.select import local_backend
from runner.emulator import Emulator


@pytest.fixture
def emu() -> Emulator:
    """A small, fast emulator that accepts only FAKE_KEY (see `small_config`)."""
    return Emulator(small_config())


@pytest.fixture
async def backend(emu: Emulator) -> AsyncIterator[SegmindBackend]:
    """The real client on the in-process emulator, with the emulator's one accepted key."""
    async with local_backend(emulator=emu, api_key=FAKE_KEY) as client:
        yield client
