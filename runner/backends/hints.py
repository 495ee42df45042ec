"""What an answer says beside its body's main content: headers, wait hints, metrics. Pure.

`retry_after` turns the server's rate-limit hints into seconds to wait;
`parse_metrics` and `metrics_from_headers` read the job accounting that
Segmind reports in a ``metrics`` object (v2) or in ``x-*`` headers (v1).
Numbers are accepted as JSON numbers or numeric strings; anything else is
ignored rather than failing a paid job over a malformed statistic.

A reported cost is a belief, not a fact: one that is negative, not finite
or above `MAX_COST_PER_IMAGE` per image becomes None ("cost unknown"), so a
hostile answer can never lower what the budget counts; a negative duration
becomes None too (a sidecar holds only durations >= 0).
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from runner.backends.base import Metrics

MAX_RETRY_AFTER: Final = 3600.0  # seconds; a longer hint is a server bug, not a plan
METRIC_FIELDS: Final = ("inference_time", "queue_time", "total_time", "cost", "remaining_credits")
_DURATIONS: Final = ("inference_time", "queue_time", "total_time")
# USD. Far above any price of this API (cents per image): a larger report is a
# server bug or a lie, and the estimate is the better number.
MAX_COST_PER_IMAGE: Final = 1000.0

Headers = Mapping[str, str]


def header(headers: Headers, name: str) -> str | None:
    """A header's value, looked up without regard to case (plain dicts are allowed)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, found in headers.items():
        if key.lower() == lowered:
            return found
    return None


def number(value: object) -> float | None:
    """A finite float from a JSON number or a numeric string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def retry_after(headers: Headers, now_utc: datetime) -> float | None:
    """Seconds to wait before trying again, from the server's hints; None when it gave none.

    Reads ``Retry-After`` (seconds or an HTTP date) and
    ``x-rate-limit-reset-at-utc`` (ISO 8601 with ``Z`` or an offset, or epoch
    seconds). The larger wait wins; the result is clamped to 0..3600 s.
    `now_utc` is the wall-clock time the dates are compared with.
    """
    return reset_hint(headers, now_utc)[0]


def reset_hint(headers: Headers, now_utc: datetime) -> tuple[float | None, bool]:
    """`retry_after`'s wait, and whether the hint that set it is only good to the second.

    Coarse: a reset time without a fraction of a second (ISO without
    milliseconds, whole epoch seconds, any HTTP date) or a whole-second
    Retry-After. The server may then admit again up to a second later than
    the wait says, so a caller waits one second more (issue #12).
    """
    hints = [
        (wait, coarse)
        for wait, coarse in (
            (
                _retry_after_header(header(headers, "retry-after"), now_utc),
                _coarse(header(headers, "retry-after")),
            ),
            (
                _reset_at_header(header(headers, "x-rate-limit-reset-at-utc"), now_utc),
                _coarse(header(headers, "x-rate-limit-reset-at-utc")),
            ),
        )
        if wait is not None
    ]
    if not hints:
        return None, False
    wait, coarse = max(hints, key=lambda hint: hint[0])
    return min(max(wait, 0.0), MAX_RETRY_AFTER), coarse


def _coarse(value: str | None) -> bool:
    """Whether a hint's text has no fraction of a second (epoch ms count as fine)."""
    if value is None:
        return False
    text = value.strip()
    seconds = number(text)
    if seconds is not None:
        return seconds.is_integer() and "." not in text and seconds <= 1e11
    if "T" in text or "t" in text[:11]:  # ISO 8601: a fraction follows the seconds' dot
        clock = text.split("T", 1)[-1].split("t", 1)[-1]
        return "." not in clock and "," not in clock
    return True  # an HTTP date has whole seconds only


def _retry_after_header(value: str | None, now_utc: datetime) -> float | None:
    if value is None or not value.strip():
        return None
    seconds = number(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return _seconds_until(when, now_utc)


def _reset_at_header(value: str | None, now_utc: datetime) -> float | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    epoch = number(text)
    if epoch is not None:
        # Epoch milliseconds are the other common form; 1e11 s is the year 5138.
        if epoch > 1e11:
            epoch /= 1000.0
        return epoch - now_utc.timestamp()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return _seconds_until(when, now_utc)


def _seconds_until(when: datetime, now_utc: datetime) -> float:
    if when.tzinfo is None:  # the header's name says UTC
        when = when.replace(tzinfo=UTC)
    return (when - now_utc).total_seconds()


def trusted_cost(value: object, images: int = 1) -> float | None:
    """A reported job cost in USD, or None when it cannot be true.

    None for junk, a negative or non-finite number, or more than
    MAX_COST_PER_IMAGE USD for each of `images` images.
    """
    cost = number(value)
    if cost is None or cost < 0 or cost > MAX_COST_PER_IMAGE * max(1, images):
        return None
    return cost


def _metric(name: str, value: object, images: int) -> float | None:
    if name == "cost":
        return trusted_cost(value, images)
    parsed = number(value)
    if parsed is not None and name in _DURATIONS and parsed < 0:
        return None
    return parsed


def parse_metrics(value: object, *, images: int = 1) -> Metrics:
    """Metrics from a ``metrics`` object (seconds, USD); junk values are ignored.

    `images` is how many images the job is for, which bounds a believable cost.
    """
    if not isinstance(value, Mapping):
        return Metrics()
    found: dict[str, float] = {}
    for name in METRIC_FIELDS:
        parsed = _metric(name, value.get(name), images)
        if parsed is not None:
            found[name] = parsed
    return Metrics(**found)


def merge_metrics(first: Metrics, second: Metrics) -> Metrics:
    """`first`, with its missing fields taken from `second`."""
    found: dict[str, float] = {}
    for name in METRIC_FIELDS:
        value = getattr(first, name)
        if value is None:
            value = getattr(second, name)
        if value is not None:
            found[name] = value
    return Metrics(**found)


def metrics_from_headers(headers: Headers, *, images: int = 1) -> Metrics:
    """The v1 accounting headers: ``x-generation-time`` (s), ``x-cost`` or
    ``x-credits-consumed`` and ``x-remaining-credits`` (USD); `images` as in
    `parse_metrics`."""
    cost = trusted_cost(header(headers, "x-cost"), images)
    if cost is None:
        cost = trusted_cost(header(headers, "x-credits-consumed"), images)
    return Metrics(
        inference_time=_metric("inference_time", header(headers, "x-generation-time"), images),
        cost=cost,
        remaining_credits=number(header(headers, "x-remaining-credits")),
    )


def seed_of(value: object) -> int | None:
    """An integer seed from a number or numeric string; None for anything else."""
    parsed = number(value)
    if parsed is None or not parsed.is_integer():
        return None
    return int(parsed)
