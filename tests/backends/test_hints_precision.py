"""A reset hint's precision: one without a fraction of a second is only good to the second."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runner.backends.answers import api_error
from runner.backends.hints import reset_hint, retry_after
from runner.errors import RateLimited

NOW = datetime(2027, 1, 15, 8, 0, 0, 250_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "wait", "coarse"),
    [
        ({"x-rate-limit-reset-at-utc": "2027-01-15T08:00:05Z"}, 4.75, True),
        ({"x-rate-limit-reset-at-utc": "2027-01-15T08:00:05.500Z"}, 5.25, False),
        ({"X-Rate-Limit-Reset-At-UTC": "2027-01-15T08:00:05+00:00"}, 4.75, True),
        ({"retry-after": "3"}, 3.0, True),
        ({"retry-after": "2.5"}, 2.5, False),
        # The larger wait wins, and its precision with it.
        ({"retry-after": "9", "x-rate-limit-reset-at-utc": "2027-01-15T08:00:05.5Z"}, 9.0, True),
        ({"retry-after": "1", "x-rate-limit-reset-at-utc": "2027-01-15T08:00:05.5Z"}, 5.25, False),
        # A reset in the past is a wait of 0, never negative.
        ({"x-rate-limit-reset-at-utc": "2027-01-15T07:59:00Z"}, 0.0, True),
        ({}, None, False),
    ],
)
def test_reset_hint_says_whether_it_has_a_fraction(
    headers: dict[str, str], wait: float | None, coarse: bool
) -> None:
    assert reset_hint(headers, NOW) == (wait, coarse)
    assert retry_after(headers, NOW) == wait


def test_a_429_carries_the_hint_precision() -> None:
    headers = {"x-rate-limit-reset-at-utc": "2027-01-15T08:00:05Z"}
    body = b'{"error": "Rate limit exceeded"}'
    err = api_error("submit", 429, headers, body, secret=None, now_utc=NOW)
    assert isinstance(err, RateLimited)
    assert (err.retry_after, err.coarse) == (4.75, True)
