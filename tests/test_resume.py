"""The resume decision (runner/resume.py): every case, as a table; and its moves on a ledger.

The table below is the rule list of docs/store.md "Resume" in table form:
each case of (ledger state x files x the row's request age x lease x
options) takes the first table line that matches it, and every case must
match one. Each line says what `decide` returns.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.jobs import Job
from runner.manifest import parse_manifest
from runner.modes import INTERRUPTED, Ending, ending
from runner.resume import (
    COMPLETED,
    EXPIRED,
    LOST,
    RECORDED,
    Action,
    LeaseRecord,
    Reattach,
    Rules,
    Skip,
    Submit,
    apply,
    decide,
    failed_message,
    look,
    wants_files,
)
from runner.store import JobRow, Ledger
from runner.sweep import expand

NOW = 1_800_000_000.0
RETENTION = 3600.0
YOUNG = NOW - 60.0
OLD = NOW - RETENTION  # exactly at the window's edge: too old
FILES = ("a.png",)
OWN = "r-own"
LEASED = "r-lease"

STATES = (None, "planned", "submitting", "submitted", "completed", "failed", "expired")
AGES = ("young", "old", "none")  # of the row's own request (rows that carry one)
LEASES = ("alone", "empty", "submitting", "young", "old")
OPTIONS = tuple(itertools.product((False, True), (False, True)))  # retry, resubmit


@dataclass(frozen=True, slots=True)
class Case:
    state: str | None
    files: bool
    age: str
    lease: str
    retry_failed: bool
    resubmit_expired: bool


def row_of(case: Case) -> JobRow | None:
    if case.state is None:
        return None
    carries = case.state in ("submitted", "completed") and case.age != "none"
    return JobRow(
        key="k",
        idx=0,
        prompt_id="p",
        state=case.state,  # type: ignore[arg-type]
        request_id=OWN if carries else None,
        submitted_at=(YOUNG if case.age == "young" else OLD) if carries else None,
        completed_at=None,
        estimate=0.02,
        charged=0.018 if case.state in ("completed", "submitted") else None,
        reason="nsfw" if case.state == "failed" else None,
        attempts=1,
        ambiguous=0,
        files=(),
        updated_at=NOW - 10,
    )


def lease_of(case: Case) -> LeaseRecord | None:
    return {
        "alone": None,
        "empty": LeaseRecord(),
        "submitting": LeaseRecord("submitting"),
        "young": LeaseRecord("submitted", LEASED, YOUNG - 1),
        "old": LeaseRecord("submitted", LEASED, OLD - 1),
    }[case.lease]


def all_cases() -> list[Case]:
    cases = []
    for state, files, age, lease, (retry, resubmit) in itertools.product(
        STATES, (False, True), AGES, LEASES, OPTIONS
    ):
        if age != "young" and state not in ("submitted", "completed"):
            continue  # only these rows carry a request: one age stands for all
        if state == "submitted" and age == "none":
            continue  # the ledger records a submit with its request id
        cases.append(Case(state, files, age, lease, retry, resubmit))
    return cases


def own_young(c: Case) -> bool:
    return c.state in ("submitted", "completed") and c.age == "young"


def own_request(c: Case) -> bool:
    return c.state in ("submitted", "completed") and c.age != "none"


def adopt(c: Case) -> tuple[str, ...]:
    if c.state is None:
        return ("plan", "submitted")
    if c.state == "submitted":
        return ("expire", "reset", "submitted")
    if c.state in ("planned", "submitting"):
        return ("submitted",)
    return ("reset", "submitted")


def expire_moves(c: Case) -> tuple[str, ...]:
    return ("expire",) if c.state in ("submitting", "submitted") else ()


Rule = tuple[str, Callable[[Case], bool], Callable[[Case], Action]]

# The rules in order; the first whose condition holds gives the expected action.
TABLE: list[Rule] = [
    (
        "files there, row completed: skipped",
        lambda c: c.files and c.state == "completed",
        lambda c: Skip("completed", COMPLETED, 0.018, FILES),
    ),
    (
        "files there, no row: planned and recorded completed",
        lambda c: c.files and c.state is None,
        lambda c: Skip("completed", RECORDED, None, FILES, ("plan", "completed")),
    ),
    (
        "files there, row not completed: recorded completed with its charge",
        lambda c: c.files,
        lambda c: Skip(
            "completed",
            RECORDED,
            0.018 if c.state == "submitted" else None,
            FILES,
            ("completed",),
        ),
    ),
    (
        "own request young, submitted: re-attached as it is",
        lambda c: own_young(c) and c.state == "submitted",
        lambda c: Reattach(OWN, YOUNG),
    ),
    (
        "own request young, completed but files gone: re-downloaded",
        own_young,
        lambda c: Reattach(OWN, YOUNG, ("reset", "submitted")),
    ),
    (
        "the lease's request young: re-attached, recorded here first",
        lambda c: c.lease == "young",
        lambda c: Reattach(LEASED, YOUNG - 1, adopt(c)),  # type: ignore[arg-type]
    ),
    (
        "completed, files gone, no live request, resubmit: lost, submitted",
        lambda c: c.state == "completed" and c.resubmit_expired,
        lambda c: Submit(moves=("lose",)),
    ),
    (
        "completed, files gone, no live request: lost, skipped",
        lambda c: c.state == "completed",
        lambda c: Skip("expired", LOST, moves=("lose",)),
    ),
    (
        "only old requests, resubmit: expired, submitted",
        lambda c: (own_request(c) or c.lease == "old") and c.resubmit_expired,
        lambda c: Submit(moves=expire_moves(c)),  # type: ignore[arg-type]
    ),
    (
        "only old requests: expired, skipped",
        lambda c: own_request(c) or c.lease == "old",
        lambda c: Skip("expired", EXPIRED, moves=expire_moves(c)),  # type: ignore[arg-type]
    ),
    (
        "failed earlier: skipped without --retry-failed",
        lambda c: c.state == "failed" and not c.retry_failed,
        lambda c: Skip("failed", failed_message("nsfw")),
    ),
    (
        "expired earlier: skipped without --resubmit-expired",
        lambda c: c.state == "expired" and not c.resubmit_expired,
        lambda c: Skip("expired", EXPIRED),
    ),
    (
        "left submitting (row or lease): ambiguous once, submitted",
        lambda c: c.state == "submitting" or c.lease == "submitting",
        lambda c: Submit(True, ("plan", "ambiguous") if c.state is None else ("ambiguous",)),
    ),
    ("otherwise: submitted", lambda c: True, lambda c: Submit()),
]


def expected(case: Case) -> tuple[str, Action]:
    for name, holds, action in TABLE:
        if holds(case):
            return name, action(case)
    raise AssertionError(f"no rule for {case}")


CASES = all_cases()


def test_the_table_covers_every_rule_and_many_cases() -> None:
    used = {expected(case)[0] for case in CASES}
    assert used == {name for name, _, _ in TABLE}
    # 5 states with no request, submitted at 2 ages, completed at 3; x files x lease x options
    assert len(CASES) == (5 + 2 + 3) * 2 * 5 * 4


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_case_decides_as_the_table_says(case: Case) -> None:
    rules = Rules(RETENTION, case.retry_failed, case.resubmit_expired)
    got = decide(row_of(case), FILES if case.files else None, lease_of(case), NOW, rules)
    name, want = expected(case)
    assert got == want, name


def test_the_files_are_looked_for_only_when_the_ledger_or_the_lease_knows_the_job() -> None:
    row = row_of(Case("planned", False, "young", "alone", False, False))
    assert not wants_files(None, None)
    assert not wants_files(None, LeaseRecord())
    assert wants_files(None, LeaseRecord("submitting"))
    assert wants_files(row, None)


# -- the moves, on a real ledger ------------------------------------------------------------


def one_job(tmp_path: Path) -> Job:
    text = f"name: r\nprompts:\n  - {{id: p, prompt: a red cube}}\noutput: {{dir: {tmp_path}}}\n"
    manifest = parse_manifest(text, path=str(tmp_path / "m.yaml"), base_dir=tmp_path)
    return next(expand(manifest))


def test_a_crash_after_the_sidecars_is_recorded_completed_with_the_rows_charge(
    tmp_path: Path,
) -> None:
    job = one_job(tmp_path)
    with Ledger.open(tmp_path, backend="local", base_url="http://x") as ledger:
        ledger.plan(job.key, job.index, job.prompt_id, 0.02)
        ledger.submitting(job.key)
        ledger.submitted(job.key, "r-1", NOW - 5)
        row = ledger.get(job.key)
        action = decide(row, ["p.png"], None, NOW, Rules(RETENTION))
        apply(action, job, ledger, estimate=0.02, now=NOW)
        after = ledger.get(job.key)
    assert isinstance(action, Skip) and action.message == RECORDED
    assert after is not None and after.state == "completed" and after.files == ("p.png",)


def test_a_lapsed_lease_request_is_recorded_before_it_is_polled(tmp_path: Path) -> None:
    job = one_job(tmp_path)
    lease = LeaseRecord("submitted", "r-9", NOW - 30)
    with Ledger.open(tmp_path, backend="local", base_url="http://x") as ledger:
        action = decide(None, None, lease, NOW, Rules(RETENTION))
        apply(action, job, ledger, estimate=0.02, now=NOW)
        after = ledger.get(job.key)
    assert action == Reattach("r-9", NOW - 30, ("plan", "submitted"))
    assert after is not None and (after.state, after.request_id) == ("submitted", "r-9")


def test_a_submit_left_on_the_wire_is_counted_ambiguous_once(tmp_path: Path) -> None:
    job = one_job(tmp_path)
    with Ledger.open(tmp_path, backend="local", base_url="http://x") as ledger:
        ledger.plan(job.key, job.index, job.prompt_id, 0.02)
        ledger.submitting(job.key)
        row = ledger.get(job.key)
        # The lease says so too (the same worker died): still one count.
        action = decide(row, None, LeaseRecord("submitting"), NOW, Rules(RETENTION))
        apply(action, job, ledger, estimate=0.02, now=NOW)
        after = ledger.get(job.key)
    assert action == Submit(True, ("ambiguous",))
    assert after is not None and after.ambiguous == 1


def test_look_reads_no_file_for_a_job_new_to_the_folder(tmp_path: Path) -> None:
    job = one_job(tmp_path)
    assert look(tmp_path, job, None, None, None) is None


@pytest.mark.parametrize(
    ("reason", "lost", "credit", "want"),
    [
        (INTERRUPTED, "redis gone", "budget", Ending("interrupted", INTERRUPTED)),
        ("redis gone", "redis gone", "budget", Ending("error", "redis gone")),
        ("budget reached", None, "budget reached", Ending("credits", "budget reached")),
        ("another worker's stop", None, "budget", Ending("credits", "another worker's stop")),
        (None, None, None, Ending(None, None)),
    ],
)
def test_a_runs_ending_is_interrupt_then_lost_then_credits(
    reason: str | None, lost: str | None, credit: str | None, want: Ending
) -> None:
    assert ending(reason, lost=lost, credit_stop=credit) == want
