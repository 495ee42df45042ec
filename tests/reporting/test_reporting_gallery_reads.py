"""The gallery reads each sidecar once per page: counted through the reader it is given
(the store's own read_sidecar, wrapped to count), on a real folder.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from reporting_helpers import AT, Folder, make_sweep_folder

from runner.reporting.gallery import collect, collect_items, write_gallery
from runner.reporting.gallery_items import image_details
from runner.store import Sidecar, read_sidecar, sidecar_path
from runner.subset import Subset, parse_subset


class CountingReader:
    """read_sidecar, counting its calls by path."""

    def __init__(self) -> None:
        self.reads: Counter[Path] = Counter()

    def __call__(self, path: Path) -> Sidecar:
        self.reads[path] += 1
        return read_sidecar(path)


def sidecars(out: Path) -> set[Path]:
    return {p for p in out.rglob("*.json") if not any(part.startswith(".") for part in p.parts)}


@pytest.fixture
def folder(tmp_path: Path) -> Folder:
    return make_sweep_folder(tmp_path / "out", size=(48, 48))


@pytest.mark.parametrize(
    ("cap", "subset"),
    [(10_000, None), (5, None), (0, None), (10_000, parse_subset(["color=red"], None))],
    ids=["all", "capped", "cap-0", "filter"],
)
def test_each_sidecar_is_read_once_and_the_page_is_the_same(
    folder: Folder, cap: int, subset: Subset | None
) -> None:
    out = folder.out
    assert len(sidecars(out)) == 20  # one per image of the sweep demo's 20 completed jobs
    write_gallery(out, jobs=folder.by_key, now=AT, cap=cap, subset=subset)
    before = (out / "gallery.html").read_bytes()
    reader = CountingReader()
    write_gallery(out, jobs=folder.by_key, now=AT, cap=cap, subset=subset, read=reader)
    assert set(reader.reads) == sidecars(out)
    assert set(reader.reads.values()) == {1}  # 3 per shown image before: walk, item, details
    assert (out / "gallery.html").read_bytes() == before


@pytest.mark.parametrize(("cap", "reads"), [(10_000, 1), (3, 1), (2, 2)])
def test_with_a_limit_the_first_pass_keeps_up_to_the_caps_worth(
    folder: Folder, cap: int, reads: int
) -> None:
    # The pass that finds the first 3 jobs holds their entries too, while they are no
    # more than the cap's worth; past that, one more pass collects them.
    subset = parse_subset(None, 3)
    write_gallery(folder.out, now=AT, subset=subset, cap=cap)
    before = (folder.out / "gallery.html").read_bytes()
    reader = CountingReader()
    result = write_gallery(folder.out, now=AT, subset=subset, cap=cap, read=reader)
    assert result.total == 3 and result.images == min(3, cap)
    assert set(reader.reads) == sidecars(folder.out)
    assert set(reader.reads.values()) == {reads}
    assert (folder.out / "gallery.html").read_bytes() == before


def test_an_entry_holds_the_details_of_the_sidecar_it_was_made_from(folder: Folder) -> None:
    # Read once, the details are still the sidecar's own (not a later read's).
    items = [item for item in collect_items(folder.out) if item.image is not None]
    assert len(items) == 20 and all(item.details_json is None for item in items)  # a grid's
    shown = [item for item in collect(folder.out).items if item.image is not None]
    assert len(shown) == 20
    for item in shown:
        assert item.image is not None
        sidecar = read_sidecar(sidecar_path(folder.out / item.image))
        assert item.detail_rows() == image_details(sidecar)
