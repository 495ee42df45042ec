"""The end-of-run reports hold memory for what they show, not for the folder.

Over a folder of 3,000 finished jobs (real files, a real ledger): the gallery's
selection never holds more entries than its cap while it walks (live
`GalleryItem`s counted from inside the walk's own sidecar reads), the walk holds
no listing of a folder, and the summary holds no ledger rows (live `JobRow`s
counted as the real rows stream in; tracemalloc's peak flat in the ledger's size).
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from reporting_helpers import Folder, make_folder, mug_jobs
from test_reporting_gallery import page

from runner.money import Micros
from runner.reporting.gallery import GalleryItem, folder_sidecars, write_gallery
from runner.reporting.summary import build_summary, summarize_folder
from runner.store import JobRow, Ledger, Sidecar, read_sidecar

JOBS = 3000


@pytest.fixture(scope="module")
def folder() -> Iterator[Folder]:
    """3,000 completed jobs (8 x 8 JPEGs) and one failed, in one folder of 6,000 files;
    in memory where there is one (/dev/shm): every file and ledger change is fsynced.
    """
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else None, prefix="runner-memory-"))
    try:
        made = make_folder(base / "out", mug_jobs(JOBS + 1), failed={JOBS: "blocked"},
                           expired=frozenset(), not_run=frozenset(), ambiguous={},
                           size=(8, 8))  # fmt: skip
        yield made
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _live(kind: type) -> int:
    """Objects of `kind` alive now (slotted dataclasses are tracked by gc)."""
    return sum(1 for thing in gc.get_objects() if type(thing) is kind)


def test_the_selection_never_holds_more_entries_than_the_cap(folder: Folder) -> None:
    cap = 50
    reads = 0
    most = 0

    def read(path: Path) -> Sidecar:
        # The walk's own reads: every 250th, count the entries held so far.
        nonlocal reads, most
        reads += 1
        if reads % 250 == 0:
            most = max(most, _live(GalleryItem))
        return read_sidecar(path)

    result = write_gallery(folder.out, cap=cap, read=read)
    assert reads == JOBS  # the walk read every sidecar once
    assert (result.total, result.images, result.unfinished) == (JOBS + 1, cap - 1, 1)
    _, data = page(folder.out)
    assert len(data["items"]) == cap
    assert data["items"][-1]["s"] == "failed"  # the last job, kept first, shown in job order
    # The cap's entries and a few in passing; holding the folder's would be 3,000.
    assert 0 < most <= cap + 5, most


def _walk_peak(out: Path) -> tuple[int, int]:
    """(pairs, tracemalloc's peak in bytes) of walking `out` without holding what it yields.

    Walked once before: a process's first sidecar reads fill caches (pydantic's, re's).
    """
    sum(1 for _ in folder_sidecars(out))
    tracemalloc.start()
    try:
        pairs = sum(1 for _ in folder_sidecars(out))
        return pairs, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_walk_holds_no_listing_of_a_folder(folder: Folder) -> None:
    pairs, peak = _walk_peak(folder.out)
    assert pairs == JOBS
    # 6,000 names in a folder as a list and a set of strings: ~1.26 MB peak (measured
    # before the walk streamed); streamed listings: ~0.28 MB (8 bytes a name, one
    # sidecar's parse at a time).
    assert peak < 600_000, peak


def _ledger(out: Path, jobs: int) -> Path:
    """A ledger of `jobs` completed rows (no files: a summary reads only the ledger)."""
    keys = [f"k1:{i:064x}" for i in range(jobs)]
    with Ledger.open(out, backend="local", base_url="http://127.0.0.1:9") as ledger:
        ledger.plan_many((key, i, "p", Micros(20_000)) for i, key in enumerate(keys))
        with ledger.transaction():
            for i, key in enumerate(keys):
                ledger.completed(key, Micros(20_000), [f"p/{i}.jpg"], 1_800_000_000.0 + i)
    return out


def test_the_summary_holds_no_rows(tmp_path: Path) -> None:
    out = _ledger(tmp_path / "out", 2000)
    most = pulled = 0

    def counted(rows: Iterator[JobRow]) -> Iterator[JobRow]:
        nonlocal most, pulled
        for row in rows:
            pulled += 1
            if pulled % 200 == 0:
                most = max(most, _live(JobRow))
            yield row

    with Ledger.open_readonly(out) as ledger:
        summary = build_summary(out, counted(ledger.stream_rows(batch=100)), meta=ledger.meta)
    assert pulled == summary.jobs.done == 2000
    assert summary.credits.spent_usd == pytest.approx(40.0)
    assert 0 < most <= 3, most  # the row in hand (rows are decoded one at a time)


def _summary_peak(out: Path) -> int:
    tracemalloc.start()
    try:
        summary = summarize_folder(out)
        assert summary.jobs.done == summary.jobs.total
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_summarize_folder_reads_the_ledger_in_bounded_batches(tmp_path: Path) -> None:
    small = _summary_peak(_ledger(tmp_path / "small", 2000))
    large = _summary_peak(_ledger(tmp_path / "large", 8000))
    # One batch of rows at a time: 4x the rows is the same peak (all of them: ~4x).
    assert large < 1.3 * small, (small, large)
