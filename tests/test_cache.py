"""runner/cache.py: a cache of finished jobs across folders, through `runner run --cache`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from whole_runs import runner_cli

from runner.emulator import Served
from runner.store import verify

KEY = "sk-test-cache-0123456789"


def runner(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return runner_cli(*args, "--no-progress", "--yes", env=env)


def manifest(tmp_path: Path, *, repeat: int = 1, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(
        "name: cached\n"
        "defaults: {resolution: 1k, output_format: png}\n"
        "prompts:\n  - id: mug\n    prompt: a {color} mug\n    vars: {color: [red, teal, sand]}\n"
        "sweep: {aspect_ratio: ['16:9', '1:1']}\n"
        f"repeat: {repeat}\n"
        "budget: {requests_per_minute: 600}\n"
    )
    return path


def ledger_rows(out: Path) -> list[tuple[str, str | None, int | None]]:
    with sqlite3.connect(out / ".runner" / "ledger.sqlite") as db:
        return list(db.execute("SELECT state, reason, charged FROM jobs ORDER BY idx"))


def test_a_second_folder_with_the_same_cache_pays_for_nothing(
    tmp_path: Path, serve_emulator: Callable[..., Served]
) -> None:
    served = serve_emulator(time_scale=0.01)
    loopback = ["--backend", "segmind", "--base-url", served.base_url, "--time-scale", "0.01"]
    env = {"SEGMIND_API_KEY": KEY, "RUNNER_CACHE": str(tmp_path / "cache")}
    m = str(manifest(tmp_path))
    first = runner("run", m, "--out", str(tmp_path / "a"), *loopback, env=env)
    assert first.returncode == 0, first.stderr
    assert len(served.emulator.accepted_submits()) == 6
    assert "cache: 6 finished job(s) added" in first.stderr
    # The flag names the same cache; the second folder sends no submit at all.
    env.pop("RUNNER_CACHE")
    second = runner(
        "run", m, "--out", str(tmp_path / "b"), "--cache", str(tmp_path / "cache"),
        "--junit", str(tmp_path / "b.xml"), *loopback, env=env,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert len(served.emulator.accepted_submits()) == 6
    assert not [c for c in served.emulator.calls() if c.kind in ("submit", "sync")][6:]
    assert "6 served from the cache (no request)" in second.stdout
    b = tmp_path / "b"
    assert verify(b).clean and verify(b).ok == 6
    assert json.loads((b / "summary.json").read_text())["run"]["cached"] == 6
    assert ledger_rows(b) == [("completed", "cached", 0)] * 6
    cases = ET.parse(tmp_path / "b.xml").getroot().iter("testcase")  # noqa: S314 (our own file)
    outcomes = [p.get("value") for case in cases for p in case.iter("property")]
    assert outcomes == ["cached"] * 6
    # The images are the paid folder's bytes (hard-linked where the disk allows it).
    names = sorted(p.relative_to(b).as_posix() for p in b.glob("*/*.png"))
    assert names == sorted(
        p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").glob("*/*.png")
    )
    for name in names:
        assert (b / name).read_bytes() == (tmp_path / "a" / name).read_bytes()
        assert (b / name).stat().st_nlink >= 2  # one file on disk, not three copies


def test_repeats_are_distinct_keys_never_served_from_one_another(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    once = runner("run", str(manifest(tmp_path)), "--out", str(tmp_path / "a"), "--cache", cache)
    assert once.returncode == 0, once.stderr
    twice = manifest(tmp_path, repeat=2, name="twice.yaml")
    done = runner("run", str(twice), "--out", str(tmp_path / "b"), "--cache", cache)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())["run"]
    # Repeat 0 of each combination is the cached job; repeat 1 is a new request.
    assert (summary["cached"], summary["completed"], summary["requests"]["submit"]) == (6, 6, 6)
    assert verify(tmp_path / "b").clean


def test_a_tampered_or_symlinked_entry_is_not_served(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    m = str(manifest(tmp_path))
    assert runner("run", m, "--out", str(tmp_path / "a"), "--cache", str(cache)).returncode == 0
    images = sorted(cache.glob("k1/*/*/0.png"))
    assert len(images) == 6
    # One entry's bytes changed, another's image swapped for a symlink to a good image.
    images[0].unlink()
    images[0].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    images[1].unlink()
    images[1].symlink_to(images[2])
    done = runner("run", m, "--out", str(tmp_path / "b"), "--cache", str(cache))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())["run"]
    assert (summary["cached"], summary["requests"]["submit"]) == (4, 2)
    assert verify(tmp_path / "b").clean
    # The refused entries were written anew from the paid folder: a third folder pays nothing.
    assert not images[1].is_symlink()
    again = runner("run", m, "--out", str(tmp_path / "c"), "--cache", str(cache))
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())["run"]
    assert (summary["cached"], summary["requests"].get("submit", 0)) == (6, 0), again.stderr


def test_emulated_images_never_land_in_a_paid_folder(
    tmp_path: Path, serve_emulator: Callable[..., Served]
) -> None:
    cache = str(tmp_path / "cache")
    m = str(manifest(tmp_path))
    assert runner("run", m, "--out", str(tmp_path / "a"), "--cache", cache).returncode == 0
    served = serve_emulator(time_scale=0.01)
    paid = runner(
        "run", m, "--out", str(tmp_path / "b"), "--cache", cache,
        "--backend", "segmind", "--base-url", served.base_url, "--time-scale", "0.01",
        env={"SEGMIND_API_KEY": KEY},
    )  # fmt: skip
    assert paid.returncode == 0, paid.stderr
    assert len(served.emulator.accepted_submits()) == 6


def test_the_resume_command_keeps_the_cache_and_a_file_is_no_cache(tmp_path: Path) -> None:
    from runner.manifest import load_manifest
    from runner.run import RunOptions, resume_command

    m = manifest(tmp_path)
    command = resume_command(load_manifest(m), RunOptions(cache=tmp_path / "c"))
    assert command.endswith(f"--cache {tmp_path / 'c'}")
    (tmp_path / "file").write_text("not a folder")
    done = runner("run", str(m), "--out", str(tmp_path / "a"), "--cache", str(tmp_path / "file"))
    assert done.returncode == 2
    assert "is not a folder" in done.stderr and "Traceback" not in done.stderr
