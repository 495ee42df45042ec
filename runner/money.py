"""Money as integer micro-dollars: the one place USD becomes an exact number.

A million float additions of $0.02 drift below a cap and count one job too
few; so every amount the runner adds, compares or stores is a whole number
of micro-dollars (1 USD = 1,000,000 µ$). Floats appear only at the edges: a
price a manifest or an API states, and the text a person reads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final, NewType

Micros = NewType("Micros", int)
"""An amount of US dollars in millionths (µ$). Exact; add with `Micros(a + b)`."""

MICROS_PER_USD: Final = 1_000_000
ZERO: Final = Micros(0)


def micros(usd: float | int) -> Micros:
    """`usd` dollars as micro-dollars, rounded to the nearest µ$.

    Raises ValueError for NaN and infinities: an amount that is no number is
    never silently zero.
    """
    if isinstance(usd, float) and not math.isfinite(usd):
        raise ValueError(f"not an amount of money: {usd!r}")
    return Micros(round(usd * MICROS_PER_USD))


def to_usd(amount: int) -> float:
    """Micro-dollars as a float of dollars, for JSON and for people."""
    return amount / MICROS_PER_USD


def format_usd(amount: int) -> str:
    """``$1,234.50`` with cents, or with 4 decimals when cents would hide a fraction."""
    if amount % 10_000 == 0:
        return f"${to_usd(amount):,.2f}"
    return f"${to_usd(amount):,.4f}"


def maybe_micros(usd: float | None) -> Micros | None:
    """An amount an answer or a file states in USD (None when absent), as Micros.

    The one conversion of an observed cost (an API's ``cost``, a sidecar's
    ``charged_usd``): it happens where the number comes in, never twice.
    """
    return None if usd is None else micros(usd)


def total(amounts: Iterable[int]) -> Micros:
    """The exact sum of `amounts` (µ$)."""
    return Micros(sum(amounts))


def parse_micros(text: str | bytes | int) -> Micros:
    """A stored whole number of µ$ (a Redis field, a ledger cell) as Micros.

    Raises ValueError for anything but an integer: a fraction of a µ$ was
    never written by the runner, so it is not silently rounded.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii")
    return Micros(int(text))
