"""The in-flight cap's arithmetic (runner/scheduling/inflight.py). Pure."""

from __future__ import annotations

import pytest

from runner.scheduling.inflight import auto_cap, latency_free_cap


@pytest.mark.parametrize("rpm", [None, 1, 5, 50, 99, 100, 101, 1_000_000])
def test_a_latency_free_cap_is_the_auto_cap_at_every_latency(rpm: int | None) -> None:
    fixed = latency_free_cap(rpm)
    caps = {auto_cap(rpm, 60.0, latency) for latency in (0.0, 0.5, 10.0, 60.0, 3600.0)}
    if fixed is None:
        # The latency moves the cap: the caller must ask the latency model.
        assert len(caps) > 1
    else:
        assert caps == {fixed}


def test_only_budgets_below_the_ceiling_need_the_latency() -> None:
    assert latency_free_cap(None) == 64
    assert latency_free_cap(1_000_000) == 100
    assert latency_free_cap(100) == 100
    assert latency_free_cap(99) is None
    assert latency_free_cap(5) is None
