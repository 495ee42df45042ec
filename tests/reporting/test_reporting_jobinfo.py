"""Job facts: the same from a Job and from its sidecar, labels, remembered facts, run rows."""

from __future__ import annotations

import json
from pathlib import Path

from reporting_helpers import make_folder, sweep_jobs

from runner.money import micros
from runner.reporting.jobinfo import (
    JobCatalog,
    JobFacts,
    facts_of_job,
    facts_of_sidecar,
    facts_path,
    run_rows,
)
from runner.store import Ledger, read_sidecar, sidecar_path


def test_a_sidecar_says_the_same_as_its_job(tmp_path: Path) -> None:
    jobs = sweep_jobs()[:2]
    folder = make_folder(tmp_path / "out", jobs, failed={}, expired=frozenset(),
                         not_run=frozenset(), ambiguous={}, size=(32, 32))  # fmt: skip
    with Ledger.open_readonly(folder.out) as ledger:
        row = ledger.get(jobs[1].key)
    assert row is not None
    sidecar = read_sidecar(sidecar_path(folder.out / row.files[0]))
    assert facts_of_sidecar(sidecar) == facts_of_job(jobs[1])
    assert JobCatalog(folder.out).get(row) == facts_of_job(jobs[1])


def test_labels_are_readable_and_unique() -> None:
    jobs = sweep_jobs()
    labels = [facts_of_job(job).label() for job in jobs]
    assert len(set(labels)) == len(labels)
    assert labels[1] == (
        "color=red surface=an oak table aspect_ratio=16:9 output_format=jpeg #1 [4a538f3f]"
    )
    plain = JobFacts(key="k1:" + "ab" * 32, index=0, prompt_id="p",
                     prompt="A very long prompt " * 5, params=())  # fmt: skip
    assert plain.label() == "A very long prompt A very long prompt A… [abababab]"


def test_facts_round_trip_through_json() -> None:
    for job in sweep_jobs()[::5]:
        facts = facts_of_job(job)
        assert JobFacts.from_json(json.loads(json.dumps(facts.to_json()))) == facts


def test_remembered_facts_keep_only_jobs_without_images(tmp_path: Path) -> None:
    jobs = sweep_jobs()[:8]
    folder = make_folder(tmp_path / "out", jobs, size=(32, 32))
    with Ledger.open_readonly(folder.out) as ledger:
        rows = list(ledger.rows())
    JobCatalog(folder.out, folder.by_key).remember(rows)
    doc = json.loads(facts_path(folder.out).read_text(encoding="utf-8"))
    assert {item["key"] for item in doc["jobs"]} == set(folder.failed)
    # A broken file is a cache miss, not an error.
    facts_path(folder.out).write_text("{not json", encoding="utf-8")
    failed = next(row for row in rows if row.state == "failed")
    assert JobCatalog(folder.out).get(failed) is None


def test_run_rows_cover_exactly_the_runs_jobs(tmp_path: Path) -> None:
    jobs = sweep_jobs()
    folder = make_folder(tmp_path / "out", jobs[:4], failed={}, expired=frozenset(),
                         not_run=frozenset(), ambiguous={}, size=(32, 32))  # fmt: skip
    with Ledger.open_readonly(folder.out) as ledger:
        every = list(ledger.rows())
    assert list(run_rows(every, None)) == every
    run = {job.key: job for job in jobs[2:10]}
    rows = list(run_rows(every, run))
    assert [row.key for row in rows] == list(run)  # jobs 0-1 are not this run's
    assert [row.state for row in rows] == ["completed"] * 2 + ["planned"] * 6
    assert rows[2].estimate == micros(0.02)
    quality = next(job for job in jobs if job.request.mode == "quality")
    (row,) = run_rows(every, {quality.key: quality})
    assert row.estimate == micros(0.05)
    (row,) = run_rows(every, {quality.key: quality}, prices={"quality": {"1k": 0.5}})
    assert row.estimate == micros(0.5)
