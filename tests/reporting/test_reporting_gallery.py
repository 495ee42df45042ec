"""gallery.html as data: items, axes, thumbnails on disk, escaping, the CSP. No browser here."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from reporting_helpers import Folder, make_folder, make_sweep_folder, sweep_jobs

from runner.errors import UsageError
from runner.jobs import Request, make_job
from runner.reporting.gallery import write_gallery
from runner.reporting.gallery_page import embed_json, render_page
from runner.reporting.thumbnails import THUMBS_DIR
from runner.store import verify

_DATA = re.compile(r'<script type="application/json" id="gallery-data">(.*?)</script>', re.S)


def page(out: Path) -> tuple[str, dict[str, Any]]:
    text = (out / "gallery.html").read_text(encoding="utf-8")
    (raw,) = _DATA.findall(text)
    data = json.loads(raw)
    assert isinstance(data, dict)
    return text, data


def axis_value(data: dict[str, Any], item: dict[str, Any], axis_id: str) -> str:
    for a, axis in enumerate(data["axes"]):
        if axis["id"] == axis_id:
            value = axis["values"][item["a"][a]]
            assert isinstance(value, str)
            return value
    raise AssertionError(f"no axis {axis_id}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    """The sweep demo at real 1k pixel sizes, with its gallery written."""
    folder = make_sweep_folder(tmp_path_factory.mktemp("sweep") / "out")
    write_gallery(folder.out, jobs=folder.by_key)
    return folder


def test_one_item_per_image_and_per_job_without_one(folder: Folder) -> None:
    _, data = page(folder.out)
    items = data["items"]
    assert len(items) == 24
    states = {item["k"]: item["s"] for item in items}
    assert {k for k, s in states.items() if s == "completed"} == folder.completed
    assert {k for k, s in states.items() if s == "failed"} == set(folder.failed)
    assert {k for k, s in states.items() if s == "expired"} == folder.expired
    assert {k for k, s in states.items() if s == "planned"} == folder.not_run
    # In expansion order, so the sheet reads like the manifest.
    order = {job.key: job.index for job in folder.jobs}
    assert [order[item["k"]] for item in items] == sorted(order.values())


def test_axes_are_what_varies_and_the_defaults_make_a_grid(folder: Folder) -> None:
    _, data = page(folder.out)
    ids = [axis["id"] for axis in data["axes"]]
    assert ids == [
        "prompt",
        "var:color",
        "var:surface",
        "var:time",
        "aspect_ratio",
        "output_format",
        "mode",
        "repeat",
    ]
    assert (data["rows"], data["cols"]) == ("prompt", "aspect_ratio")
    labels = {axis["id"]: axis["label"] for axis in data["axes"]}
    assert labels["var:color"] == "color"
    values = {axis["id"]: axis["values"] for axis in data["axes"]}
    assert values["aspect_ratio"] == ["16:9", "1:1"]
    assert values["var:color"] == ["red", "teal", ""]  # "" for the lighthouse prompt


def test_failed_jobs_sit_in_their_cells_with_the_reason(folder: Folder) -> None:
    _, data = page(folder.out)
    job = folder.job(5)
    (item,) = [i for i in data["items"] if i["k"] == job.key]
    assert item["r"] == folder.failed[job.key]
    assert item["t"] is None and item["f"] is None
    assert axis_value(data, item, "var:color") == "red"
    assert axis_value(data, item, "var:surface") == "white marble"
    assert axis_value(data, item, "aspect_ratio") == "16:9"
    assert ["reason", folder.failed[job.key]] in item["d"]


def test_grid_uses_small_thumbnails_and_links_the_full_image(folder: Folder) -> None:
    _, data = page(folder.out)
    images = [item for item in data["items"] if item["s"] == "completed"]
    for item in images:
        assert item["t"].startswith(THUMBS_DIR + "/")
        with Image.open(folder.out / item["t"]) as thumb:
            assert max(thumb.size) <= 256
            assert thumb.size == (item["tw"], item["th"])
        with Image.open(folder.out / item["f"]) as full:
            assert max(full.size) > 256  # the 1k original, only opened on click
    details = dict(images[0]["d"])
    job = folder.by_key[images[0]["k"]]
    assert details["request id"] == f"req-{job.key8}"
    assert details["prompt"] == job.request.prompt
    assert details["credits est."] == "$0.02"
    assert details["inference"] == "10.2 s"


def test_the_folder_still_verifies_clean_with_the_gallery_in_it(folder: Folder) -> None:
    report = verify(folder.out)
    assert report.clean, report
    assert report.checked == 20


def test_a_rerun_reuses_thumbnails_and_drops_unused_ones(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "out", sweep_jobs()[:4], size=(300, 200))
    first = write_gallery(folder.out, jobs=folder.by_key)
    assert (first.images, first.unfinished, first.thumbs_made) == (4, 0, 4)
    again = write_gallery(folder.out, jobs=folder.by_key)
    assert again.thumbs_made == 0
    _, data = page(folder.out)
    gone = next(item for item in data["items"] if item["s"] == "completed")
    (folder.out / gone["f"]).unlink()
    (folder.out / gone["f"]).with_suffix(".json").unlink()
    third = write_gallery(folder.out, jobs=folder.by_key)
    assert third.images == 3
    assert not (folder.out / gone["t"]).exists()
    assert len(list((folder.out / THUMBS_DIR).iterdir())) == 3
    _, data = page(folder.out)
    (missing,) = [item for item in data["items"] if item["s"] == "missing"]
    assert missing["k"] == gone["k"]
    assert "runner verify" in missing["r"]


def test_standalone_gallery_places_failures_from_remembered_facts(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "out", sweep_jobs()[:8], size=(64, 64))
    write_gallery(folder.out)  # as `runner gallery OUT` before any run remembered them
    _, data = page(folder.out)
    (failed,) = [item for item in data["items"] if item["s"] == "failed"]
    assert axis_value(data, failed, "aspect_ratio") == ""  # not known yet
    write_gallery(folder.out, jobs=folder.by_key)  # a run's gallery remembers them
    write_gallery(folder.out)
    _, data = page(folder.out)
    (failed,) = [item for item in data["items"] if item["s"] == "failed"]
    assert axis_value(data, failed, "aspect_ratio") == "16:9"
    assert axis_value(data, failed, "var:surface") == "white marble"


def test_user_text_cannot_escape_the_data_or_the_page(tmp_path: Path) -> None:
    hostile = "</script><script>window.pwned=1</script><!-- <img src=x onerror=alert(1)> & \u2028"
    request = Request(
        prompt=hostile,
        mode="standard",
        aspect_ratio="1:1",
        resolution="1k",
        n=1,
        output_format="png",
    )
    jobs = [
        make_job(index=i, prompt_id="evil", request=request, model="m", repeat=i) for i in range(2)
    ]
    folder = make_folder(
        tmp_path / "out",
        jobs,
        failed={1: hostile},
        expired=frozenset(),
        not_run=frozenset(),
        ambiguous={},
        size=(32, 32),
    )
    write_gallery(folder.out, jobs=folder.by_key, title=hostile)
    text, data = page(folder.out)
    assert text.count("</script>") == 2  # the data's and the script's own
    assert "<!--" not in text
    assert "<img" not in text
    assert f"<title>{html.escape(hostile)} · runner gallery</title>" in text
    assert data["title"] == hostile
    assert {item["p"] for item in data["items"]} == {hostile}
    assert [item["r"] for item in data["items"] if item["s"] == "failed"] == [hostile]


def test_embed_json_round_trips_every_escaped_character() -> None:
    value = {"t": "</script> <!-- & > \u2028 \u2029 é"}
    text = embed_json(value)
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == value


def test_the_policy_allows_exactly_the_pages_own_script_and_style() -> None:
    text = render_page("t", {"title": "t", "meta": [], "axes": [], "rows": "", "cols": "",
                             "items": []})  # fmt: skip
    (policy,) = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]*)"', text)
    policy = html.unescape(policy)
    assert "default-src 'none'" in policy
    for tag, directive in (("style", "style-src"), ("script", "script-src")):
        (body,) = re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.S)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in policy
    assert "http" not in policy  # no network source at all


def test_not_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a folder"):
        write_gallery(tmp_path / "nope")


def test_an_unreadable_image_gets_a_reason_instead_of_a_thumbnail(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "out", sweep_jobs()[:1], failed={}, expired=frozenset(),
                         not_run=frozenset(), ambiguous={}, size=(64, 64))  # fmt: skip
    (image,) = (folder.out / "mug").glob("*.jpg")
    image.write_bytes(b"not an image at all")
    result = write_gallery(folder.out)
    assert result.images == 1
    _, data = page(folder.out)
    (item,) = data["items"]
    assert item["t"] is None
    assert item["r"].startswith("no thumbnail: the image cannot be read")


def test_a_folder_without_a_ledger_shows_its_sidecars(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "out", sweep_jobs()[:6], size=(64, 64))
    for path in (folder.out / ".runner").iterdir():
        path.unlink()
    (folder.out / ".runner").rmdir()
    result = write_gallery(folder.out)
    assert (result.images, result.unfinished) == (len(folder.completed), 0)
    _, data = page(folder.out)
    assert {item["k"] for item in data["items"]} == folder.completed
