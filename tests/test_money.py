"""runner.money: exact micro-dollars, one conversion in, one formatter out."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.money import Micros, format_usd, maybe_micros, micros, parse_micros, to_usd, total


def test_a_float_sum_drifts_and_micros_do_not() -> None:
    cents = [0.01] * 100_000
    assert sum(cents) != 1000.0  # 999.9999999992356
    assert total(micros(c) for c in cents) == micros(1000.0) == 1_000_000_000


@given(st.integers(-(10**15), 10**15))
def test_micros_and_usd_round_trip(amount: int) -> None:
    assert micros(to_usd(amount)) == amount


def test_no_number_is_never_zero() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="not an amount"):
            micros(bad)


def test_an_absent_amount_stays_absent() -> None:
    assert maybe_micros(None) is None
    assert maybe_micros(0.15000000000000002) == 150_000
    assert maybe_micros(0) == 0


def test_stored_text_parses_exactly() -> None:
    assert parse_micros("150000") == parse_micros(b"150000") == parse_micros(150_000) == 150_000
    with pytest.raises(ValueError):
        parse_micros("0.15")


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Micros(500_000), "$0.50"),
        (Micros(12_500), "$0.0125"),
        (Micros(12_345_000_000), "$12,345.00"),
        (Micros(0), "$0.00"),
    ],
)
def test_one_formatter(amount: Micros, text: str) -> None:
    assert format_usd(amount) == text
