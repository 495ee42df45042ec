"""The reliability suite's switches.

Tests marked ``chaos`` (the full soak: 1,000 jobs, 10 kills, minutes) are
deselected unless the marker expression names them (``make chaos`` runs
``pytest -m chaos``); `make test` runs the smaller soak instead.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect `chaos` tests unless ``-m`` asks for them."""
    if "chaos" in (config.getoption("markexpr", "") or ""):
        return
    chaos = [item for item in items if item.get_closest_marker("chaos") is not None]
    if chaos:
        config.hook.pytest_deselected(items=chaos)
        items[:] = [item for item in items if item.get_closest_marker("chaos") is None]
