"""A resume's price book, taught the folder's charges (runner.run._price_book) on a real
ledger of many completed jobs: the same beliefs, one batch of rows in memory, and a walk
that ends where the charges do.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from whole_runs import jobs_manifest

from runner.jobs import Job
from runner.manifest import Manifest
from runner.money import Micros, micros
from runner.run import RunOptions, _price_book, _recall_folder_charges, run_jobs
from runner.scheduling.prices import book_for
from runner.store import Ledger

URL = "http://127.0.0.1:9"
CHARGED = {"standard": micros(0.03), "quality": micros(0.07)}  # above the table: learned
BUDGET = micros(1000.0)


def manifest(tmp_path: Path, things: int) -> Manifest:
    return jobs_manifest(
        tmp_path,
        things,
        rpm=600,
        max_credits=1000,
        sweep="{mode: [standard, quality]}",
        prefix="t",
    )


def folder(tmp_path: Path, things: int, completed: int, dearer: int | None = None) -> Manifest:
    """The manifest's first `completed` jobs completed (charged by mode; job `dearer`
    charged more), the next one submitted (a resume re-attaches it), the rest planned.
    """
    m = manifest(tmp_path, things)
    jobs = list(run_jobs(m, None))
    with Ledger.open(tmp_path / "out", backend="local", base_url=URL) as ledger:
        ledger.plan_many((job.key, job.index, job.prompt_id, micros(0.02)) for job in jobs)
        with ledger.transaction():
            for job in jobs[: completed + 1]:
                ledger.submitting(job.key)
                ledger.submitted(job.key, f"req-{job.index}", 1.0)
                if job.index < completed:
                    charged = CHARGED[job.request.mode]
                    if job.index == dearer:
                        charged = Micros(charged + micros(0.01))
                    ledger.completed(job.key, charged, [], 2.0)
    return m


def first_of(jobs: list[Job], mode: str) -> Job:
    return next(job for job in jobs if job.request.mode == mode)


def test_a_resume_holds_each_class_at_its_highest_recorded_charge(tmp_path: Path) -> None:
    m = folder(tmp_path, things=1500, completed=2000, dearer=1234)
    jobs = list(run_jobs(m, None))
    unlearned = book_for(m.prices, BUDGET)
    with Ledger.open(tmp_path / "out", backend="local", base_url=URL) as ledger:
        book = _price_book(m, RunOptions(), ledger, BUDGET)
    dearer_mode = jobs[1234].request.mode
    for mode, charged in CHARGED.items():
        job = first_of(jobs, mode)
        assert unlearned.reservation(job) == 2 * unlearned.table_price(job)  # a scout's hold
        expected = charged + micros(0.01) if mode == dearer_mode else charged
        assert book.knowledge(job) == "observed"
        assert book.reservation(job) == expected


def test_the_walk_ends_once_every_recorded_charge_is_matched(tmp_path: Path) -> None:
    m = folder(tmp_path, things=1500, completed=1200)  # 3,000 jobs, the first 1,200 done
    drawn = 0

    def counted(jobs: Iterator[Job]) -> Iterator[Job]:
        nonlocal drawn
        for job in jobs:
            drawn += 1
            yield job

    book = book_for(m.prices, BUDGET)
    with Ledger.open(tmp_path / "out", backend="local", base_url=URL) as ledger:
        learned = _recall_folder_charges(book, counted(run_jobs(m, None)), ledger)
    assert learned == 1200
    assert 1200 <= drawn <= 1500  # to the end of the batch holding the last charge, of 3,000


def _peak(tmp_path: Path, completed: int) -> int:
    m = folder(tmp_path, things=completed // 2 + 1, completed=completed)
    with Ledger.open(tmp_path / "out", backend="local", base_url=URL) as ledger:
        tracemalloc.start()
        try:
            _price_book(m, RunOptions(), ledger, BUDGET)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def test_memory_does_not_grow_with_the_completed_jobs(tmp_path: Path) -> None:
    # Before, every completed row was read and kept by key: 4x the rows, ~4x the peak.
    small = _peak(tmp_path / "small", 1000)
    big = _peak(tmp_path / "big", 4000)
    assert big < 1.5 * small, (small, big)
