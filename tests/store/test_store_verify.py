"""`verify` on a real folder written by the store, then tampered with."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import job, store_job

from runner.errors import UsageError
from runner.store.ledger import Ledger
from runner.store.verify import check_pair, render_verify, verify


@pytest.fixture
def out(tmp_path: Path) -> Iterator[Path]:
    """A folder with three images of two jobs (png; jpeg with n=2) and a summary.json."""
    with Ledger.open(tmp_path, backend="local", base_url="http://127.0.0.1:9") as ledger:
        store_job(tmp_path, ledger, job(prompt_id="fox"))
        store_job(tmp_path, ledger, job(prompt_id="mug", n=2, output_format="jpeg", index=1))
    (tmp_path / "summary.json").write_text('{"jobs": 2}\n', encoding="utf-8")
    yield tmp_path


def images(out: Path, suffix: str) -> list[Path]:
    return sorted(out.rglob(f"*{suffix}"))


def test_a_good_folder_is_clean(out: Path) -> None:
    report = verify(out)
    assert report.clean
    assert (report.checked, report.ok) == (3, 3)
    assert render_verify(report).endswith("3 image(s) checked, 3 ok; all good\n")


def test_a_changed_byte_is_a_mismatch(out: Path) -> None:
    (image,) = images(out, ".png")
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0x01
    image.write_bytes(bytes(data))
    report = verify(out)
    assert not report.clean
    reasons = [reason for path, reason in report.mismatches if path.startswith("fox/")]
    assert any(reason.startswith("sha256 ") for reason in reasons)
    assert any("bad CRC" in reason for reason in reasons)
    assert report.ok == 2


def test_a_changed_jpeg_byte_and_an_appended_byte(out: Path) -> None:
    first, second = images(out, ".jpg")
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0x01
    first.write_bytes(bytes(data))
    second.write_bytes(second.read_bytes() + b"\0")
    problems = dict(verify(out).mismatches)
    assert problems[first.relative_to(out).as_posix()].startswith("sha256 ")
    assert "sidecar says" in problems[second.relative_to(out).as_posix()]
    # The cheap check used on resume sees the size, not a same-size flip.
    assert check_pair(out, first, deep=False) == []
    assert check_pair(out, second, deep=False)[0].startswith("size ")


def test_a_missing_sidecar_and_a_missing_image(out: Path) -> None:
    jpg, other_jpg = images(out, ".jpg")
    jpg.with_suffix(".json").unlink()
    other_jpg.unlink()
    report = verify(out)
    assert sorted(report.orphans) == sorted(
        [
            (jpg.relative_to(out).as_posix(), "image without a sidecar"),
            (
                other_jpg.with_suffix(".json").relative_to(out).as_posix(),
                "sidecar without an image",
            ),
        ]
    )
    missing = sorted(path for path, _ in report.missing)
    assert missing == sorted(
        [
            jpg.with_suffix(".json").relative_to(out).as_posix(),
            other_jpg.relative_to(out).as_posix(),
        ]
    )
    assert "is completed in the ledger but this file is gone" in report.missing[0][1]


def test_a_stray_temp_file(out: Path) -> None:
    stray = out / "fox" / ".a-12345678-0.png.0a1b2c3d4e5f.tmp"
    stray.write_bytes(b"half an image")
    report = verify(out)
    assert report.temp_files == ("fox/.a-12345678-0.png.0a1b2c3d4e5f.tmp",)
    assert not report.clean
    assert "temp      fox/.a-12345678-0.png.0a1b2c3d4e5f.tmp" in render_verify(report)


def test_a_tampered_sidecar(out: Path) -> None:
    (png,) = images(out, ".png")
    side = png.with_suffix(".json")
    doc = json.loads(side.read_text(encoding="utf-8"))
    doc["file"]["width"] = 4096
    doc["file"]["name"] = "elsewhere/x.png"
    side.write_text(json.dumps(doc), encoding="utf-8")
    reasons = [reason for _, reason in verify(out).mismatches]
    assert "sidecar names 'elsewhere/x.png', not this file" in reasons
    assert "64x48 pixels, sidecar says 4096x48" in reasons
    side.write_text("{not json", encoding="utf-8")
    (reason,) = [reason for _, reason in verify(out).mismatches]
    assert reason.startswith("sidecar unreadable:")


def test_a_folder_without_a_ledger_is_still_checked(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "a", backend="local", base_url="http://x") as ledger:
        store_job(tmp_path / "a", ledger, job())
    (tmp_path / "a" / ".runner" / "ledger.sqlite").rename(tmp_path / "elsewhere.sqlite")
    report = verify(tmp_path / "a")
    assert report.clean and report.checked == 1


def test_verify_needs_a_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a folder"):
        verify(tmp_path / "nope")
