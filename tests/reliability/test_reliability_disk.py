"""Local disk faults stop a run cleanly: a clear error, completed work intact, nothing paid twice.

`runner run` runs in a subprocess against a loopback emulator, on real file
systems with real faults, made with the kernel's own tools rather than by
patching our code:

- no space: the output folder is a small tmpfs, mostly filled beforehand;
- read-only: the output folder is bind-mounted read-only over itself, from the
  start, or while the run is writing images;
- no permission: the run is a process of user ``nobody`` in a folder it may not
  write (root ignores permissions, so a root test drops to ``nobody``);
- a file where a folder should be (needs no privilege at all).

Mounting needs CAP_SYS_ADMIN (the suite runs as root here); where it is
missing those tests are skipped with the reason. Then the folder is repaired
and the run resumed: jobs submitted before the fault are re-attached, never
submitted again; the only extra submits allowed are those whose ledger row
was still ``submitting`` when the fault stopped the run (the same window a
kill has, see reliability_soak.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.emulator import Emulator, EmulatorConfig, Served, serve_in_thread
from runner.manifest import parse_manifest
from runner.store import Ledger, check_pair, temp_files, verify
from runner.sweep import expand

RUNNER = Path(sys.executable).with_name("runner")
KEY = "sk-disk-0001"
SCALE = 0.01


def _sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


def _can_mount() -> str | None:
    """None when this process may mount (tmpfs, bind), else why not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        return "mounting needs root and mount(8)"
    with tempfile.TemporaryDirectory() as probe:
        if _sh("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe).returncode != 0:
            return "this container may not mount (no CAP_SYS_ADMIN)"
        _sh("umount", probe)
    return None


MOUNT_SKIP = _can_mount()
needs_mount = pytest.mark.skipif(MOUNT_SKIP is not None, reason=MOUNT_SKIP or "")


@contextlib.contextmanager
def tmpfs(at: Path, size: str) -> Iterator[Path]:
    at.mkdir(parents=True, exist_ok=True)
    done = _sh("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(at))
    assert done.returncode == 0, done.stderr
    try:
        yield at
    finally:
        _sh("umount", "-l", str(at))


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` read-only for new opens, through a read-only bind mount over itself.

    The kernel refuses (EBUSY) while a file is open for writing through the new
    mount, which a running writer does for a few milliseconds per image: try again.
    """
    assert _sh("mount", "--bind", str(folder), str(folder)).returncode == 0
    try:
        for _ in range(500):
            done = _sh("mount", "-o", "remount,bind,ro", str(folder))
            if done.returncode == 0:
                break
        assert done.returncode == 0, done.stderr
        yield
    finally:
        _sh("umount", "-l", str(folder))


def write_manifest(folder: Path, jobs: int, rpm: int = 50) -> Path:
    """`jobs` 1k PNG jobs; a low `rpm` keeps a run going while a test changes the disk."""
    things = ", ".join(f"t{i:03d}" for i in range(jobs))
    path = folder / "disk.yaml"
    path.write_text(
        f"""name: disk
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: png}}
prompts:
  - id: p
    prompt: "a picture of {{thing}}"
    vars: {{thing: [{things}]}}
budget: {{requests_per_minute: {rpm}}}
""",
        encoding="utf-8",
    )
    return path


def runner_run(
    manifest: Path, out: Path, base_url: str, *, unprivileged: bool = False
) -> subprocess.Popen[str]:
    """`runner run` in a subprocess; `unprivileged`: without root's power to ignore
    file permissions (setpriv drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH)."""
    prefix: list[str] = []
    if unprivileged and os.geteuid() == 0:
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    return subprocess.Popen(
        [
            *prefix,
            str(RUNNER),
            "run",
            str(manifest),
            "--backend",
            "segmind",
            "--base-url",
            base_url,
            "--time-scale",
            str(SCALE),
            "--no-progress",
            "--yes",
            "--out",
            str(out),
        ],
        env={**os.environ, "SEGMIND_API_KEY": KEY, "HOME": "/tmp"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out + err


def assert_clean_stop(code: int, text: str, *phrases: str) -> None:
    """Exit 1 with one clear error line naming the cause and the fix; no traceback."""
    assert code == 1, text
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, text
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def completed_intact(out: Path) -> dict[str, str | None]:
    """Every job the ledger calls completed has its files, checked deeply; by key: request id."""
    with Ledger.open_readonly(out) as ledger:
        rows = list(ledger.rows())
    done = {}
    for row in rows:
        if row.state == "completed":
            for name in row.files:
                assert check_pair(out, out / name) == [], name
            done[row.key] = row.request_id
    return done


def submitting_keys(out: Path) -> set[str]:
    with Ledger.open_readonly(out) as ledger:
        return {row.key for row in ledger.rows() if row.state == "submitting"}


def assert_paid_once(
    emu: Emulator, manifest: Path, allowed_again: set[str], done_before: dict[str, str | None]
) -> None:
    """Each job accepted once, but for jobs left `submitting` by the fault; completed
    jobs never again."""
    doc = parse_manifest(manifest.read_text(), path=str(manifest), base_dir=manifest.parent)
    key_of = {job.request.prompt: job.key for job in expand(doc)}
    per_key: dict[str, int] = {}
    for view in emu.accepted_submits():
        key = key_of[view.params.prompt]
        per_key[key] = per_key.get(key, 0) + 1
    for key, count in per_key.items():
        if key in done_before:
            assert count == 1, key
        else:
            assert count <= (2 if key in allowed_again else 1), key
    assert set(per_key) == set(key_of.values())


def wait_for_media(emu: Emulator, count: int, proc: subprocess.Popen[str]) -> None:
    """Block until the server has served `count` downloads (or the run ended)."""
    deadline = time.monotonic() + 120
    while len(emu.calls("media")) < count and proc.poll() is None:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.005)  # a condition wait on the server's log


@pytest.fixture
def served() -> Iterator[Served]:
    with serve_in_thread(EmulatorConfig(time_scale=SCALE, workers=32, seed=4)) as s:
        yield s


@needs_mount
def test_no_space_for_images_stops_the_run_cleanly_and_resume_pays_nothing_twice(
    served: Served, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path, 40)
    out = tmp_path / "out"
    # The prompt's folder is a 256 KiB disk: room for a dozen 1k PNGs and their sidecars.
    with tmpfs(out / "p", "256k"):
        code, text = finish(runner_run(manifest, out, served.base_url))
        assert_clean_stop(code, text, "no space left on device", "free space or use --out")
        assert list(temp_files(out)) == []
        done = completed_intact(out)
        assert 0 < len(done) < 40
        again = submitting_keys(out)
        saved = {p.name: p.read_bytes() for p in (out / "p").iterdir()}
    # "Free space": the same files on a roomy disk.
    for name, data in saved.items():
        (out / "p" / name).write_bytes(data)
    code, text = finish(runner_run(manifest, out, served.base_url))
    assert code == 0, text
    assert verify(out).clean
    assert completed_intact(out).items() >= done.items()
    assert_paid_once(served.emulator, manifest, again, done)


@needs_mount
def test_no_space_for_the_ledger_stops_the_run_cleanly(served: Served, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 40, rpm=5)  # 8 windows of 0.6 s
    out = tmp_path / "out"
    with tmpfs(out / ".runner", "8m") as runner_dir:
        proc = runner_run(manifest, out, served.base_url)
        wait_for_media(served.emulator, 5, proc)
        filler = runner_dir / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as fill:
            while True:  # until the disk is full
                fill.write(bytes(64 * 1024))
                fill.flush()
        code, text = finish(proc)
        assert_clean_stop(code, text, "ledger", "no space left on device")
        done = completed_intact(out)
        again = submitting_keys(out)
        filler.unlink()
        code, text = finish(runner_run(manifest, out, served.base_url))
        assert code == 0, text
        assert verify(out).clean
        assert completed_intact(out).items() >= done.items()
        assert_paid_once(served.emulator, manifest, again, done)


@needs_mount
def test_folder_turning_read_only_mid_run_stops_cleanly(served: Served, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 40, rpm=5)  # 8 windows of 0.6 s
    out = tmp_path / "out"
    out.mkdir()
    proc = runner_run(manifest, out, served.base_url)
    wait_for_media(served.emulator, 8, proc)
    with read_only(out):
        code, text = finish(proc)
        assert_clean_stop(code, text, "read-only", "use --out elsewhere")
        done = completed_intact(out)
    # A temp file created just before the remount cannot be removed on a read-only
    # disk (EROFS on unlink too); the resume sweeps it before anything else.
    again = submitting_keys(out)
    code, text = finish(runner_run(manifest, out, served.base_url))
    assert code == 0, text
    assert list(temp_files(out)) == []
    assert verify(out).clean
    assert completed_intact(out).items() >= done.items()
    assert_paid_once(served.emulator, manifest, again, done)


@needs_mount
def test_a_read_only_folder_is_refused_before_any_submit(served: Served, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 3)
    out = tmp_path / "out"
    code, _ = finish(runner_run(manifest, out, served.base_url))
    assert code == 0
    done = completed_intact(out)
    accepted = len(served.emulator.accepted_submits())
    extended = write_manifest(tmp_path, 6)  # three more jobs to do
    with read_only(out):
        code, text = finish(runner_run(extended, out, served.base_url))
        assert_clean_stop(code, text, "read-only")
        assert len(served.emulator.accepted_submits()) == accepted  # nothing sent
        assert completed_intact(out) == done
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with read_only(fresh):
        code, text = finish(runner_run(manifest, fresh / "out", served.base_url))
        assert_clean_stop(code, text, "read-only", "use --out elsewhere")
    assert len(served.emulator.accepted_submits()) == accepted


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None,
    reason="root ignores permissions and setpriv(1) is missing to drop that power",
)
def test_no_permission_is_refused_before_any_submit(served: Served, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 3)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, text = finish(runner_run(manifest, out, served.base_url, unprivileged=True))
    finally:
        out.chmod(0o755)
    assert_clean_stop(code, text, "permission denied", "use --out elsewhere")
    assert served.emulator.accepted_submits() == []


def test_a_file_where_a_folder_should_be(served: Served, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, 5)
    out = tmp_path / "out"
    out.mkdir()
    (out / "p").write_text("not a folder")  # where the prompt's images go
    code, text = finish(runner_run(manifest, out, served.base_url))
    assert_clean_stop(code, text, "is a file, not a folder")
    assert list(temp_files(out)) == []
    again = submitting_keys(out)
    (out / "p").unlink()
    code, text = finish(runner_run(manifest, out, served.base_url))
    assert code == 0, text
    assert verify(out).clean
    assert_paid_once(served.emulator, manifest, again, {})
