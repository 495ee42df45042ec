"""The write path of one image, and finding a job's finished files on resume."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_helpers import SMALL, encode, job, store_job

from runner.errors import DownloadError
from runner.jobs import ImageInput
from runner.store.layout import image_path
from runner.store.ledger import Ledger
from runner.store.save import expected_pixels, save_image
from runner.store.verify import finished_files


def test_save_image_checks_then_writes(tmp_path: Path) -> None:
    the_job = job(prompt_id="fox", output_format="webp")
    data = encode("webp")
    saved = save_image(tmp_path, the_job, 0, data, expected_size=SMALL)
    assert saved.path == image_path(tmp_path, the_job, 0)
    assert saved.name == f"fox/a-red-fox-in-the-snow-golden-hour-{the_job.key8}-0.webp"
    assert saved.path.read_bytes() == data
    assert (saved.info.width, saved.info.height, saved.info.format) == (*SMALL, "webp")


def test_a_rejected_download_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="asked for png but the image is jpeg"):
        save_image(tmp_path, job(), 0, encode("jpeg"), expected_size=SMALL)
    with pytest.raises(DownloadError, match="truncated"):
        save_image(tmp_path, job(), 0, encode("png")[:-20], expected_size=SMALL)
    assert list(tmp_path.iterdir()) == []


def test_expected_pixels() -> None:
    assert expected_pixels(job(aspect_ratio="16:9", resolution="2k")) == (2816, 1536)
    assert expected_pixels(job(aspect_ratio="9:16", resolution="1k")) == (768, 1408)
    assert expected_pixels(job(aspect_ratio="auto")) is None
    edit = ImageInput(kind="path", source="in.png", sha256="0" * 64, path="/m/in.png")
    assert expected_pixels(job(image=edit)) is None


def test_finished_files_finds_a_pair_the_ledger_never_recorded(tmp_path: Path) -> None:
    the_job = job(n=3, output_format="jpeg")
    with Ledger.open(tmp_path, backend="local", base_url="http://x") as ledger:
        names = store_job(tmp_path, ledger, the_job, complete=False)
        row = ledger.get(the_job.key)
    assert row is not None and row.state == "submitted"
    assert finished_files(tmp_path, the_job) == names
    assert finished_files(tmp_path, the_job, deep=True) == names
    # Another job, even one sharing the prompt id, has no files.
    assert finished_files(tmp_path, job(n=3, output_format="jpeg", repeat=1)) is None
    (tmp_path / names[2]).with_suffix(".json").unlink()
    assert finished_files(tmp_path, the_job) is None
