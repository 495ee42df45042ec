"""The exit-code decision: ARCHITECTURE.md's table, its precedence, and --max-failures."""

from __future__ import annotations

import pytest

from runner.errors import UsageError
from runner.reporting.exit_codes import (
    EXIT_CREDITS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    FailureTolerance,
    decide_exit,
    parse_max_failures,
)


def counts(
    *,
    completed: int = 0,
    failed: int = 0,
    expired: int = 0,
    planned: int = 0,
    submitted: int = 0,
    submitting: int = 0,
) -> dict[str, int]:
    return {
        "planned": planned,
        "submitting": submitting,
        "submitted": submitted,
        "completed": completed,
        "failed": failed,
        "expired": expired,
    }


def test_every_job_done_is_0() -> None:
    decision = decide_exit(counts(completed=24))
    assert decision.code == EXIT_OK
    assert "24" in decision.reason


def test_a_failed_or_expired_job_is_1_and_says_how_many() -> None:
    assert decide_exit(counts(completed=23, failed=1)).code == EXIT_FAILED
    decision = decide_exit(counts(completed=22, failed=1, expired=1))
    assert decision.code == EXIT_FAILED
    assert "2 of 24" in decision.reason


def test_unfinished_jobs_without_a_stop_are_1() -> None:
    decision = decide_exit(counts(completed=20, planned=3, submitted=1))
    assert decision.code == EXIT_FAILED
    assert "4 job(s) of 24 unfinished" in decision.reason


@pytest.mark.parametrize(
    ("stop", "code"),
    [("interrupted", EXIT_INTERRUPTED), ("auth", EXIT_USAGE), ("usage", EXIT_USAGE),
     ("credits", EXIT_CREDITS), ("error", EXIT_FAILED)],
)  # fmt: skip
def test_a_stop_decides_over_failures(stop: str, code: int) -> None:
    decision = decide_exit(
        counts(completed=10, failed=2, planned=5),
        stop=stop,  # type: ignore[arg-type]
        stop_reason="why it stopped",
        max_failures=FailureTolerance(count=100, text="100"),
    )
    assert decision.code == code
    assert "why it stopped" in decision.reason


def test_interrupt_wins_over_a_credit_stop_by_order() -> None:
    # The caller reports one stop; an interrupt during a budget stop is an interrupt.
    assert decide_exit(counts(planned=1), stop="interrupted").code == EXIT_INTERRUPTED


def test_credit_stop_tells_how_many_were_not_run() -> None:
    decision = decide_exit(counts(completed=2, planned=22), stop="credits")
    assert decision.code == EXIT_CREDITS
    assert "22 job(s) not run" in decision.reason


@pytest.mark.parametrize(
    ("text", "failed", "total", "code"),
    [
        ("2", 2, 100, EXIT_OK),
        ("2", 3, 100, EXIT_FAILED),
        ("0", 1, 100, EXIT_FAILED),
        ("0.05", 5, 100, EXIT_OK),
        ("0.05", 6, 100, EXIT_FAILED),
        ("5%", 1, 20, EXIT_OK),  # 5 % of 20 is exactly 1 despite float rounding
        ("5%", 2, 20, EXIT_FAILED),
        ("0.05", 1, 19, EXIT_FAILED),  # 0.95 of a job rounds down
        ("1.0", 7, 7, EXIT_OK),
    ],
)
def test_max_failures_tolerates_a_count_or_a_fraction(
    text: str, failed: int, total: int, code: int
) -> None:
    tolerance = parse_max_failures(text)
    decision = decide_exit(counts(completed=total - failed, failed=failed), max_failures=tolerance)
    assert decision.code == code
    assert f"--max-failures {text}" in decision.reason


def test_tolerance_does_not_excuse_unfinished_jobs() -> None:
    tolerance = parse_max_failures("10")
    assert decide_exit(counts(completed=5, planned=1), max_failures=tolerance).code == 1


@pytest.mark.parametrize("text", ["", "-1", "abc", "1.5", "150%", "nan", "2x"])
def test_bad_max_failures_names_the_option_and_the_forms(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_max_failures(text)
    message = str(caught.value)
    assert message.startswith("--max-failures:")
    assert "e.g. 3" in message
    assert "5%" in message
