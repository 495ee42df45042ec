"""The gallery's cap: a folder of more entries than the cap shows the cap's worth, those
that need attention first, counts the rest in the header, and holds memory for the cap.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from reporting_helpers import make_folder, make_sweep_folder, mug_jobs
from test_reporting_gallery import page
from whole_runs import ROOT, cli_env

from runner.reporting.gallery import GALLERY_MAX_ITEMS, write_gallery
from runner.reporting.gallery_select import DigestSet, Smallest
from runner.reporting.thumbnails import THUMBS_DIR
from runner.subset import parse_subset


def test_a_capped_page_shows_failures_first_and_counts_the_rest(tmp_path: Path) -> None:
    folder = make_sweep_folder(tmp_path / "out", size=(48, 48))
    attention = {j.key for j in folder.jobs if j.key not in folder.completed}
    assert len(attention) == 4  # failed 5, expired 9, not run 22 and 23
    result = write_gallery(folder.out, jobs=folder.by_key, cap=8)
    assert (result.images, result.unfinished, result.total) == (4, 4, 24)
    assert result.thumbs_made == 4  # only entries shown get thumbnails
    assert len(list((folder.out / THUMBS_DIR).iterdir())) == 4
    _, data = page(folder.out)
    keys = [item["k"] for item in data["items"]]
    first_images = [j.key for j in folder.jobs if j.key in folder.completed][:4]
    assert set(keys) == attention | set(first_images)
    order = {job.key: job.index for job in folder.jobs}
    assert [order[k] for k in keys] == sorted(order[k] for k in keys)  # reads like the manifest
    meta = dict((label, value) for value, label in data["meta"][:3])
    assert meta == {"images": "20", "failed": "2", "not run": "2"}  # of all, not of those shown
    shown, hint = data["meta"][3]
    assert shown == "showing 8 of 24"
    assert f"`runner gallery {folder.out} --filter EXPR`" in hint


def test_under_the_cap_nothing_is_left_out_and_no_hint(tmp_path: Path) -> None:
    folder = make_sweep_folder(tmp_path / "out", size=(48, 48))
    result = write_gallery(folder.out, jobs=folder.by_key, cap=24)
    assert result.total == 24 == result.images + result.unfinished
    _, data = page(folder.out)
    assert not any("showing" in value for value, _ in data["meta"])
    assert GALLERY_MAX_ITEMS == 10_000


def test_a_filter_and_the_cap_together(tmp_path: Path) -> None:
    folder = make_sweep_folder(tmp_path / "out", size=(48, 48))
    subset = parse_subset(["mug"], None)
    mugs = [j for j in folder.jobs if j.prompt_id == "mug"]
    result = write_gallery(folder.out, jobs=folder.by_key, subset=subset, cap=3)
    assert result.total == len(mugs)
    _, data = page(folder.out)
    assert len(data["items"]) == 3
    assert {item["k"] for item in data["items"]} <= {j.key for j in mugs}
    assert data["meta"][3][0] == f"showing 3 of {len(mugs)}"


def test_smallest_keeps_the_smallest_and_digest_set_answers_membership() -> None:
    kept: Smallest[int] = Smallest(3)
    for value in (9, 4, 7, 1, 8, 2):
        kept.offer(value)
    assert kept.sorted() == [1, 2, 4]
    assert kept.offered == 6
    keys: Smallest[str] = Smallest(2, distinct=True)
    for key in "bbaaccab":
        keys.offer(key)
    assert keys.sorted() == ["a", "b"]
    assert "a" in keys and "c" not in keys
    names = DigestSet()
    for i in range(1000):
        names.add(f"mug/{i:04d}.jpg")
    names.freeze()
    assert "mug/0500.jpg" in names
    assert "mug/1000.jpg" not in names


@pytest.mark.parametrize("size", [None, 0, 1, 3])
def test_smallest_admits_what_offer_would_keep_and_offer_says_what_it_pushed_out(
    size: int | None,
) -> None:
    kept: Smallest[int] = Smallest(size)
    for value in (9, 4, 7, 1, 8, 2, 5, 0, 6):
        before = kept.sorted()
        admitted = kept.admits(value)
        assert kept.sorted() == before  # asking changes nothing
        dropped = kept.offer(value)
        assert admitted == (value in kept.sorted())
        gone = set(before) - set(kept.sorted())
        assert gone == ({dropped} if dropped is not None else set())  # what it pushed out


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder in memory where there is one (/dev/shm), else tmp_path: 4,000 jobs written
    through the store (each file and ledger change fsynced) take seconds there, not a minute.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="runner-gallery-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# The measures run in a fresh interpreter: in the test's own process, what the tests
# before it left (caches, the collector's state, the table of interned strings) moved
# the figures by megabytes, and the order the tests ran in decided the outcome.
_PEAKS = """
import json, sys, tracemalloc
from pathlib import Path
from runner.reporting.gallery import write_gallery
def peak(out, cap):
    tracemalloc.start()
    try:
        write_gallery(Path(out), cap=cap)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
small, large = sys.argv[1:3]
write_gallery(Path(large), cap=3000)  # once unmeasured: first-use caches, thumbnails made
uncapped = peak(large, 3000)
print(json.dumps([peak(small, 1000), peak(large, 1000), uncapped]))  # the capped page stays
"""


def _peaks(small: Path, large: Path) -> list[int]:
    """tracemalloc's peaks (bytes) of writing the gallery of `small` capped at 1,000, and of
    `large` capped at 1,000 and at 3,000 (Pillow's own buffers are not traced: the
    thumbnails made on the way do not blur the figures)."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAKS, str(small), str(large)],
        capture_output=True, text=True, env=cli_env(), cwd=ROOT, check=True, timeout=600,
    )  # fmt: skip
    peaks: list[int] = json.loads(done.stdout)
    return peaks


def test_memory_is_bounded_by_the_cap_not_the_folder(fast_dir: Path) -> None:
    jobs = mug_jobs(3000)
    small = make_folder(fast_dir / "small", jobs[:1000], failed={}, expired=frozenset(),
                        not_run=frozenset(), ambiguous={}, size=(8, 8))  # fmt: skip
    large = make_folder(fast_dir / "large", jobs, failed={2999: "blocked"}, expired=frozenset(),
                        not_run=frozenset(), ambiguous={}, size=(8, 8))  # fmt: skip
    one_thousand, three_thousand_capped, uncapped = _peaks(small.out, large.out)
    _, data = page(large.out)
    assert len(data["items"]) == 1000
    assert any(item["s"] == "failed" for item in data["items"])  # the last job, kept first
    # Holding 3,000 entries would be ~3x; the cap holds the same 1,000 plus 16 bytes each.
    assert three_thousand_capped < 1.5 * one_thousand, (one_thousand, three_thousand_capped)
    assert uncapped > 2 * one_thousand  # the measure sees what the cap saves
