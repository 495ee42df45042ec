"""Atomic writes on a real disk, and disk faults turned into clear StoreErrors."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from runner.errors import StoreError
from runner.store.atomic import (
    ensure_dir,
    is_temp_name,
    open_atomic,
    remove_temp_files,
    store_error,
    temp_files,
    write_atomic,
)


def everything(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_write_creates_folders_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "fox" / "deep" / "a-1234abcd-0.png"
    write_atomic(target, b"first")
    assert target.read_bytes() == b"first"
    write_atomic(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert everything(tmp_path) == ["fox", "fox/deep", "fox/deep/a-1234abcd-0.png"]


def test_open_atomic_streams_into_place_or_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "junit.xml"
    with open_atomic(target) as file:
        file.write(b"<a>")
        assert not target.exists()  # nothing under the final name until the end
        file.write(b"</a>")
    assert target.read_bytes() == b"<a></a>"
    with pytest.raises(RuntimeError, match="half way"), open_atomic(target) as file:
        file.write(b"<b>")
        raise RuntimeError("half way")
    assert target.read_bytes() == b"<a></a>"  # the old file stays whole
    assert everything(tmp_path) == ["reports", "reports/junit.xml"]  # the temp is gone


def test_a_very_long_name_still_gets_a_valid_temp_name(tmp_path: Path) -> None:
    target = tmp_path / ("n" * 250)
    write_atomic(target, b"data")
    assert target.read_bytes() == b"data"
    assert list(temp_files(tmp_path)) == []


def test_a_file_in_the_way_of_the_folder_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "fox").write_bytes(b"I am a file")
    target = tmp_path / "fox" / "image.png"
    with pytest.raises(StoreError) as caught:
        write_atomic(target, b"data")
    message = str(caught.value)
    assert str(target) in message
    assert "--out elsewhere" in message
    assert everything(tmp_path) == ["fox"]


def test_a_failed_rename_removes_the_temp_file(tmp_path: Path) -> None:
    # A non-empty folder where the file should go: os.replace refuses it after the
    # temp file was written and fsynced.
    target = tmp_path / "image.png"
    target.mkdir()
    (target / "keep").write_bytes(b"x")
    with pytest.raises(StoreError, match=r"cannot write .*image\.png"):
        write_atomic(target, b"data")
    assert everything(tmp_path) == ["image.png", "image.png/keep"]


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root ignores folder permissions; the translation is tested with synthetic errors",
)
def test_a_read_only_folder_is_a_store_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="permission denied"):
            write_atomic(folder / "x.png", b"data")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "no space left on device; free space or use --out elsewhere"),
        (getattr(errno, "EDQUOT", errno.ENOSPC), "no space left on device"),
        (errno.EACCES, "permission denied"),
        (errno.EPERM, "permission denied"),
        (errno.EROFS, "read-only; use --out elsewhere"),
        (errno.ENOTDIR, "not a folder"),
        (errno.EIO, "(EIO)"),
    ],
)
def test_os_errors_become_store_errors_naming_path_and_fix(code: int, words: str) -> None:
    path = Path("/data/out/fox/a-1234abcd-0.png")
    err = store_error(OSError(code, os.strerror(code)), path)
    assert isinstance(err, StoreError)
    assert str(err).startswith(f"cannot write {path}: ")
    assert words in str(err)
    assert "Traceback" not in str(err)


def test_ensure_dir_makes_parents_and_tolerates_existing(tmp_path: Path) -> None:
    ensure_dir(tmp_path / "a" / "b" / "c")
    ensure_dir(tmp_path / "a" / "b" / "c")
    assert (tmp_path / "a" / "b" / "c").is_dir()
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StoreError, match="cannot create the folder"):
        ensure_dir(tmp_path / "file" / "sub")


def test_leftover_temp_files_are_found_and_removed(tmp_path: Path) -> None:
    (tmp_path / "fox").mkdir()
    leftovers = [tmp_path / ".a-1.png.0a1b2c3d4e5f.tmp", tmp_path / "fox" / ".b.json.ffff.tmp"]
    for path in leftovers:
        path.write_bytes(b"partial")
    keep = [tmp_path / ".gitkeep", tmp_path / "fox" / "notes.tmp", tmp_path / "fox" / "a.png"]
    for path in keep:
        path.write_bytes(b"keep")
    assert sorted(temp_files(tmp_path)) == sorted(leftovers)
    assert sorted(remove_temp_files(tmp_path)) == sorted(leftovers)
    assert all(path.exists() for path in keep)
    assert not any(path.exists() for path in leftovers)


def test_temp_names() -> None:
    assert is_temp_name(".a-1234abcd-0.png.0a1b2c3d4e5f.tmp")
    assert not is_temp_name("a.tmp")
    assert not is_temp_name(".gitkeep")
