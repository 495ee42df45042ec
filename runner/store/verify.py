"""`runner verify OUT`: every image against its sidecar, leftovers, and the ledger's word.

For each image: its sidecar exists and is valid, names this file, and
agrees with the bytes on disk (size, sha256) and the header (format, width,
height; read without decoding, with the same whole-file checks as a
download). Also reported: images without a sidecar and sidecars without an
image (orphans), temp files of interrupted writes, and files the ledger
says are complete but are not there. A JSON file that is not a sidecar and
has no image beside it (``summary.json``) is not ours to judge.

Jobs the ledger calls failed have no images to check: they are listed as
notes (the first `MAX_FAILED_NOTES`, with their reasons), not problems, so
that "all good" is never read as "all done" (a result with fewer images
than asked is such a job, issue #13).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from runner.errors import DownloadError, StoreError, UsageError
from runner.jobs import Job
from runner.money import to_usd
from runner.store.atomic import is_temp_name
from runner.store.layout import (
    EXTENSIONS,
    SIDECAR_SUFFIX,
    image_path,
    relative_name,
    sidecar_path,
)
from runner.store.ledger import JobRow, Ledger, ledger_path
from runner.store.media import inspect_image
from runner.store.sidecar import Sidecar, read_sidecar
from runner.store.status import billed_failures_text, billed_totals, with_billed

IMAGE_SUFFIXES: Final = frozenset(f".{ext}" for ext in EXTENSIONS.values())

MAX_FAILED_NOTES: Final = 10  # failed jobs named one by one in verify's report; then a count

# A stored image was checked when it arrived; this only bounds a hostile header.
_MAX_PIXELS: Final = 1 << 30

Problem = tuple[str, str]
"""(path relative to OUT with ``/``, what is wrong)."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What `verify` found. Paths are relative to `out_dir`, ``/``-separated."""

    out_dir: Path
    checked: int
    ok: int
    mismatches: tuple[Problem, ...]
    orphans: tuple[Problem, ...]
    temp_files: tuple[str, ...]
    missing: tuple[Problem, ...]
    failed: tuple[Problem, ...] = ()
    """(job, reason) of the first MAX_FAILED_NOTES failed jobs: notes, not problems."""
    failed_jobs: int = 0
    billed_failures: int = 0
    """Failures the server billed, over every run of the folder (as `runner status`)."""
    billed_failures_usd: float = 0.0

    @property
    def clean(self) -> bool:
        """True when nothing is wrong (the CLI exits 0)."""
        return not (self.mismatches or self.orphans or self.temp_files or self.missing)


def _read_sidecar(path: Path) -> tuple[Sidecar | None, str | None]:
    try:
        return read_sidecar(path), None
    except (ValueError, StoreError) as err:
        return None, str(err)


def check_pair(out_dir: Path, image: Path, *, deep: bool = True) -> list[str]:
    """What is wrong with `image` and its sidecar (empty when nothing is).

    With ``deep=False`` only the sidecar and the byte size are checked (cheap
    enough to run on resume for every completed job); with ``deep=True`` the
    bytes are read and hashed and the header is read.
    """
    side = sidecar_path(image)
    if not side.is_file():
        return ["no sidecar"]
    sidecar, error = _read_sidecar(side)
    if sidecar is None:
        return [f"sidecar unreadable: {error}"]
    reasons: list[str] = []
    name = relative_name(out_dir, image)
    if sidecar.file.name != name:
        reasons.append(f"sidecar names {sidecar.file.name!r}, not this file")
    try:
        size = image.stat().st_size
        data = image.read_bytes() if deep else b""
    except OSError as err:
        return [*reasons, f"cannot read the image: {err.strerror or err}"]
    if size != sidecar.file.bytes:
        reasons.append(f"size {size} bytes, sidecar says {sidecar.file.bytes}")
    if not deep:
        return reasons
    digest = hashlib.sha256(data).hexdigest()
    if digest != sidecar.file.sha256:
        reasons.append(f"sha256 {digest[:12]}..., sidecar says {sidecar.file.sha256[:12]}...")
    try:
        info = inspect_image(data, max_pixels=_MAX_PIXELS)
    except DownloadError as err:
        return [*reasons, f"not a whole image: {err}"]
    if info.format != sidecar.file.format:
        reasons.append(f"format {info.format}, sidecar says {sidecar.file.format}")
    if (info.width, info.height) != (sidecar.file.width, sidecar.file.height):
        reasons.append(
            f"{info.width}x{info.height} pixels, sidecar says "
            f"{sidecar.file.width}x{sidecar.file.height}"
        )
    return reasons


def finished_files(
    out_dir: Path, job: Job, *, pattern: str | None = None, deep: bool = False
) -> list[str] | None:
    """The job's image names (relative to OUT) if all n images and sidecars are there and agree.

    For resume: a job the ledger does not show completed, but whose files
    are all on disk (a crash after the sidecars, before the ledger commit),
    is complete; record it, do not poll or pay again. None when any image
    or sidecar is missing, belongs to another job, or fails `check_pair`.
    """
    names: list[str] = []
    for index in range(job.request.n):
        image = image_path(out_dir, job, index, pattern)
        if check_pair(out_dir, image, deep=deep):
            return None
        sidecar, _ = _read_sidecar(sidecar_path(image))
        if sidecar is None or (sidecar.key, sidecar.index) != (job.key, index):
            return None
        names.append(relative_name(out_dir, image))
    return names


def recorded_files(out_dir: Path, job: Job, files: Sequence[str]) -> list[str] | None:
    """The files a completed ledger row names, if each image and its sidecar is on disk; else None.

    For resume over a finished folder: the ledger recorded these files after
    they were checked and written (sidecar last), so two `stat` calls per
    image stand in for re-reading every sidecar (`finished_files`); a
    changed file is `runner verify`'s to find. A row that names fewer than
    the job's n images is not trusted (None).
    """
    if len(files) != job.request.n:
        return None
    # Strings and os.stat, not Path objects: a resume calls this once per
    # finished job, and pathlib's objects cost more than the two stats.
    base = os.fspath(out_dir)
    for name in files:
        image = os.path.join(base, name)
        if not (_is_file(image) and _is_file(os.path.splitext(image)[0] + SIDECAR_SUFFIX)):
            return None
    return list(files)


def _is_file(path: str) -> bool:
    """`Path.is_file` of a string path: a regular file (symlinks followed)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _walk(out_dir: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(images, json files, temp files) under `out_dir`, skipping hidden folders."""
    images: list[Path] = []
    jsons: list[Path] = []
    temps: list[Path] = []
    for folder, dirs, files in os.walk(out_dir):
        # Our names never start with a dot; .runner holds the ledger, not outputs.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            suffix = path.suffix.lower()
            if is_temp_name(name):
                temps.append(path)
            elif name.startswith("."):
                continue
            elif suffix in IMAGE_SUFFIXES:
                images.append(path)
            elif suffix == SIDECAR_SUFFIX:
                jsons.append(path)
    return images, jsons, temps


def _ledger_missing(out_dir: Path) -> list[Problem]:
    if not ledger_path(out_dir).is_file():
        return []
    missing: list[Problem] = []
    with Ledger.open_readonly(out_dir) as ledger:
        for row in ledger.rows("completed"):
            for name in row.files:
                image = out_dir / name
                for path in (image, sidecar_path(image)):
                    if not path.is_file():
                        missing.append(
                            (
                                relative_name(out_dir, path),
                                f"job {row.key} is completed in the ledger but this file is gone",
                            )
                        )
    return missing


@dataclass(frozen=True, slots=True)
class _Failed:
    notes: list[Problem]
    count: int
    billed: int
    billed_usd: float


def _failed_note(row: JobRow) -> Problem:
    reason = with_billed(row.reason or "no reason", to_usd(row.billed_failed))
    return f"{row.prompt_id} [{row.key.partition(':')[2][:8]}]", reason


def _ledger_failed(out_dir: Path) -> _Failed:
    if not ledger_path(out_dir).is_file():
        return _Failed([], 0, 0, 0.0)
    with Ledger.open_readonly(out_dir) as ledger:
        totals = ledger.totals().values()
        billed, billed_usd = billed_totals(totals)
        count = sum(t.jobs for t in totals if t.state == "failed")
        notes = (
            [_failed_note(row) for row in itertools.islice(ledger.rows("failed"), MAX_FAILED_NOTES)]
            if count
            else []
        )
    return _Failed(notes, count, billed, billed_usd)


def verify(out_dir: Path) -> VerifyReport:
    """Check every image under `out_dir` against its sidecar; see the module docstring.

    Raises UsageError if `out_dir` is not a folder or its ledger cannot be read.
    """
    if not out_dir.is_dir():
        raise UsageError(f"{out_dir} is not a folder; pass the --out folder of a run")
    images, jsons, temps = _walk(out_dir)
    mismatches: list[Problem] = []
    orphans: list[Problem] = []
    ok = 0
    for image in images:
        reasons = check_pair(out_dir, image)
        name = relative_name(out_dir, image)
        if reasons == ["no sidecar"]:
            orphans.append((name, "image without a sidecar"))
        elif reasons:
            mismatches.extend((name, reason) for reason in reasons)
        else:
            ok += 1
    image_stems = {image.with_suffix("") for image in images}
    for path in jsons:
        if path.with_suffix("") in image_stems:
            continue
        sidecar, _ = _read_sidecar(path)
        if sidecar is not None:
            orphans.append((relative_name(out_dir, path), "sidecar without an image"))
    failed = _ledger_failed(out_dir)
    return VerifyReport(
        out_dir=out_dir,
        checked=len(images),
        ok=ok,
        mismatches=tuple(mismatches),
        orphans=tuple(orphans),
        temp_files=tuple(relative_name(out_dir, path) for path in temps),
        missing=tuple(_ledger_missing(out_dir)),
        failed=tuple(failed.notes),
        failed_jobs=failed.count,
        billed_failures=failed.billed,
        billed_failures_usd=failed.billed_usd,
    )


def render_verify(report: VerifyReport) -> str:
    """A text report for the terminal: one line per problem, then a summary line."""
    lines = [f"mismatch  {path}: {reason}" for path, reason in report.mismatches]
    lines += [f"orphan    {path}: {reason}" for path, reason in report.orphans]
    lines += [f"temp      {path}: left by an interrupted write" for path in report.temp_files]
    lines += [f"missing   {path}: {reason}" for path, reason in report.missing]
    problems = (
        len(report.mismatches) + len(report.orphans) + len(report.temp_files) + len(report.missing)
    )
    lines += [f"failed    {job}: {reason}" for job, reason in report.failed]
    if report.failed_jobs > len(report.failed):
        lines.append(f"failed    ... and {report.failed_jobs - len(report.failed)} more")
    verdict = "all good" if report.clean else f"{problems} problem(s)"
    if report.failed_jobs:
        verdict += f" ({report.failed_jobs} job(s) failed: no images to check)"
    if report.billed_failures:
        # Money, not files: after the verdict, in runner status's words.
        verdict += f"; {billed_failures_text(report.billed_failures, report.billed_failures_usd)}"
    lines.append(f"{report.out_dir}: {report.checked} image(s) checked, {report.ok} ok; {verdict}")
    return "\n".join(lines) + "\n"
