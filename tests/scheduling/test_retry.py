"""One retry policy: what is retried, and the bounds of its waits."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import (
    AuthError,
    BadRequest,
    DownloadError,
    InsufficientCredits,
    JobFailed,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
)
from runner.scheduling.retry import RetryPolicy, backoff, retry_delay


@pytest.mark.parametrize("op", ["submit", "status", "result", "download", "sync"])
def test_connect_errors_and_5xx_are_retried_everywhere(op: str) -> None:
    assert retry_delay(op, TransportError("refused", sent=False), 1) is not None  # type: ignore[arg-type]
    assert retry_delay(op, ServerError("502", status=502), 1) is not None  # type: ignore[arg-type]


def test_a_lost_submit_answer_is_not_retried_here() -> None:
    err = TransportError("reset", sent=True)
    assert retry_delay("submit", err, 1) is None
    assert retry_delay("status", err, 1) is not None


@pytest.mark.parametrize(
    "err",
    [
        BadRequest("bad", status=400),
        JobFailed("blocked"),
        AuthError("no", status=401),
        InsufficientCredits("poor", status=406),
        ValueError("not ours"),
    ],
)
def test_final_answers_are_not_retried(err: BaseException) -> None:
    for op in ("submit", "status", "result", "download"):
        assert retry_delay(op, err, 1) is None  # type: ignore[arg-type]


def test_server_hint_is_honoured() -> None:
    wait = retry_delay("status", RateLimited("429", status=429, retry_after=17.0), 1)
    assert wait is not None and 17.0 <= wait <= 18.0


def test_not_found_is_retried_a_few_times_on_polls_only() -> None:
    policy = RetryPolicy(not_found_attempts=3)
    assert retry_delay("status", NotFound("404"), 1, policy) is not None
    assert retry_delay("status", NotFound("404"), 3, policy) is None
    assert retry_delay("submit", NotFound("404"), 1, policy) is None


def test_downloads_retry_only_repairable_damage() -> None:
    assert retry_delay("download", DownloadError("cut", retryable=True), 1) is not None
    assert retry_delay("download", DownloadError("wrong size", retryable=False), 1) is None


def test_attempts_are_bounded() -> None:
    policy = RetryPolicy(attempts=4, submit_attempts=2)
    err = ServerError("500", status=500)
    assert retry_delay("status", err, 3, policy) is not None
    assert retry_delay("status", err, 4, policy) is None
    assert retry_delay("submit", err, 2, policy) is None


@given(attempt=st.integers(0, 200), seed=st.integers(0, 2**32))
def test_backoff_stays_within_bounds(attempt: int, seed: int) -> None:
    policy = RetryPolicy(base=0.5, cap=30.0)
    wait = backoff(policy, attempt, random.Random(seed))
    assert 0.0 <= wait <= min(30.0, 0.5 * 2 ** min(attempt, 30))


def test_scale_zero_is_a_test_mode_without_waiting() -> None:
    policy = RetryPolicy(scale=0.0)
    assert retry_delay("status", ServerError("500", status=500), 1, policy) == 0.0
