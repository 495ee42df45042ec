"""The credit guard: reservations never pass the budget; amounts add up exactly."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.jobs import Request, make_job
from runner.money import Micros, micros
from runner.scheduling.credits import CreditGuard


def _job(mode: str = "standard", resolution: str = "1k", n: int = 1, i: int = 0):  # type: ignore[no-untyped-def]
    req = Request(f"p{i}", mode, "1:1", resolution, n, "png")
    return make_job(index=i, prompt_id="p", request=req, model="grok-imagine-image", repeat=i)


def test_estimate_is_price_times_n() -> None:
    guard = CreditGuard(None)
    assert guard.estimate(_job("quality", "2k", 3)) == Micros(150_000)


@pytest.mark.anyio
async def test_reserve_refuses_past_the_budget() -> None:
    guard = CreditGuard(micros(0.05))
    assert await guard.reserve("a", micros(0.02))
    assert await guard.reserve("b", micros(0.02))
    assert not await guard.reserve("c", micros(0.02))  # 0.06 > 0.05
    await guard.refund("b")
    assert await guard.reserve("c", micros(0.02))
    assert guard.stats().reserved == micros(0.04)


@pytest.mark.anyio
async def test_settle_uses_the_reported_cost() -> None:
    guard = CreditGuard(micros(1.0))
    await guard.reserve("a", micros(0.02))
    assert await guard.settle("a", micros(0.015)) == micros(0.015)
    await guard.reserve("b", micros(0.02))
    assert await guard.settle("b", None) == micros(0.02)
    s = guard.stats()
    assert (s.reserved, s.spent) == (0, micros(0.035))


@pytest.mark.anyio
async def test_ambiguous_cost_stays_held() -> None:
    guard = CreditGuard(micros(0.04))
    await guard.reserve("a", micros(0.02))
    await guard.mark_ambiguous("a")
    assert guard.stats().ambiguous == micros(0.02)
    assert await guard.reserve("a", micros(0.02))  # the retry of the same job
    assert not await guard.reserve("b", micros(0.02))


@pytest.mark.anyio
async def test_stop_blocks_new_reservations() -> None:
    guard = CreditGuard(None)
    await guard.stop("406: insufficient credits")
    await guard.stop("later reason")
    assert not await guard.reserve("a", micros(0.01))
    assert guard.stopped == "406: insufficient credits"


@settings(max_examples=100, deadline=None)
@given(
    budget=st.integers(0, 500).map(lambda c: Micros(c * 10_000)),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["reserve", "settle", "refund", "ambiguous"]), st.integers(0, 20)
        ),
        max_size=200,
    ),
)
def test_committed_never_passes_budget(budget: Micros, ops: list[tuple[str, int]]) -> None:
    anyio.run(_committed_never_passes_budget, budget, ops)


async def _committed_never_passes_budget(budget: Micros, ops: list[tuple[str, int]]) -> None:
    guard = CreditGuard(budget)
    for op, k in ops:
        key = f"j{k}"
        if op == "reserve":
            await guard.reserve(key, Micros(20_000 + (k % 3) * 10_000))
        elif op == "settle":
            await guard.settle(key, None)
        elif op == "refund":
            await guard.refund(key)
        else:
            await guard.mark_ambiguous(key)
        s = guard.stats()
        assert s.committed <= budget  # exact: no epsilon
        assert s.reserved >= 0


@pytest.mark.anyio
async def test_many_reservations_add_up_to_the_micro_dollar() -> None:
    # $0.01 100,000 times: a float sum drifts (999.9999999992356); µ$ do not.
    guard = CreditGuard(micros(1_000.0))
    cent = micros(0.01)
    for i in range(100_000):
        assert await guard.reserve(f"j{i}", cent)
    assert not await guard.reserve("one more", cent)
    assert guard.stats().committed == micros(1_000.0)
    for i in range(0, 100_000, 2):
        await guard.settle(f"j{i}", None)
    s = guard.stats()
    assert (s.spent, s.reserved) == (micros(500.0), micros(500.0))
