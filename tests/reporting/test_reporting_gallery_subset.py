"""`runner gallery OUT --filter/--limit`: the page shows only the subset's entries."""

from __future__ import annotations

from pathlib import Path

from reporting_helpers import make_sweep_folder
from test_reporting_gallery import page

from runner.reporting.gallery import write_gallery
from runner.subset import parse_subset


def test_a_filtered_gallery_keeps_only_matching_jobs(tmp_path: Path) -> None:
    folder = make_sweep_folder(tmp_path / "out")
    subset = parse_subset(["mug", "color=red"], None)
    write_gallery(folder.out, jobs=folder.by_key, subset=subset)
    _, data = page(folder.out)
    keys = {item["k"] for item in data["items"]}
    wanted = {j.key for j in folder.jobs if j.prompt_id == "mug" and dict(j.vars)["color"] == "red"}
    # Every matching job has an entry (an image or its reason), and nothing else does.
    assert keys == wanted
    limited = parse_subset(None, 3)
    write_gallery(folder.out, jobs=folder.by_key, subset=limited)
    _, data = page(folder.out)
    # The first three jobs in expansion order, one image each in the demo (n: 1).
    assert [item["k"] for item in data["items"]] == [j.key for j in folder.jobs[:3]]
