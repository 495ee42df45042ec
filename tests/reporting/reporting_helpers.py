"""A real output folder for the reporting tests: the sweep demo's jobs through the store.

`make_sweep_folder` expands manifests/sweep-demo.yaml (24 jobs) and runs the
store's own write path for each job the way the run loop does: real images
(Pillow, at their 1k pixel sizes, so thumbnails are really smaller), atomic
writes, sidecars, ledger rows. Chosen jobs end failed, expired, ambiguous or
not run, so every report has something to say about them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from runner.jobs import Job, Request, make_job
from runner.manifest import load_manifest
from runner.money import Micros, micros
from runner.params import pixel_size
from runner.store import (
    Ledger,
    build_sidecar,
    save_image,
    sidecar_path,
    write_sidecar,
)
from runner.sweep import expand

ROOT = Path(__file__).resolve().parents[2]
SWEEP_DEMO = ROOT / "manifests" / "sweep-demo.yaml"
AT = 1_800_000_000.0
BASE_URL = "http://127.0.0.1:9"

FAILED = {5: "content blocked: the prompt was flagged by the moderation filter (HTTP 422)"}
EXPIRED = frozenset({9})
NOT_RUN = frozenset({22, 23})
AMBIGUOUS = {3: 1}  # job index -> lost submit answers (the job then completed)
CHARGED = micros(0.025)  # what the emulated API reports for even-indexed jobs (µ$)

_PIL = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_COLORS = {"red": (196, 48, 43), "teal": (22, 128, 128)}


@dataclass
class Folder:
    """A written folder and what was done to each job, for tests to check reports against."""

    out: Path
    jobs: list[Job]
    failed: dict[str, str] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)
    not_run: set[str] = field(default_factory=set)
    completed: set[str] = field(default_factory=set)

    @property
    def by_key(self) -> dict[str, Job]:
        return {job.key: job for job in self.jobs}

    def job(self, index: int) -> Job:
        return self.jobs[index]


def picture(job: Job, i: int, size: tuple[int, int] | None = None) -> bytes:
    """A real image for image `i` of `job`: colored by its `color` var, its key8 written on it."""
    request = job.request
    width, height = size or pixel_size(request.aspect_ratio, request.resolution) or (640, 480)
    color = _COLORS.get(dict(job.vars).get("color", ""), (60 + job.index * 7, 90, 160))
    image = Image.new("RGB", (width, height), color)
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 8, height // 8, width * 7 // 8, height * 7 // 8), outline="white")
    draw.text((width // 6, height // 6), f"{job.prompt_id} {job.key8} {i}", fill="white")
    buffer = io.BytesIO()
    image.save(buffer, format=_PIL[request.output_format])
    return buffer.getvalue()


def complete_job(
    out: Path, ledger: Ledger, job: Job, *, charged: Micros | None, size: tuple[int, int] | None
) -> list[str]:
    """The store's write path for a finished job: images, sidecars, then the ledger."""
    ledger.submitted(job.key, f"req-{job.key8}", AT + job.index)
    files = []
    estimate = micros(0.02 * job.request.n)
    for i in range(job.request.n):
        saved = save_image(out, job, i, picture(job, i, size), expected_size=None)
        sidecar = build_sidecar(
            job=job,
            index=i,
            image=saved.info,
            file_name=saved.name,
            backend="local",
            base_url=BASE_URL,
            request_id=f"req-{job.key8}",
            estimate=estimate,
            charged=charged,
            submitted_at=AT + job.index,
            completed_at=AT + job.index + 11.5,
            queue_s=0.5,
            inference_s=10.25,
            wall_s=11.5,
            manifest_path="manifests/sweep-demo.yaml",
            manifest_sha256="0" * 64,
            seed=1000 + job.index,
        )
        write_sidecar(sidecar_path(saved.path), sidecar)
        files.append(saved.name)
    ledger.completed(job.key, charged, files, AT + job.index + 11.5)
    return files


def make_folder(
    out: Path,
    jobs: list[Job],
    *,
    failed: Mapping[int, str] = FAILED,
    expired: frozenset[int] = EXPIRED,
    not_run: frozenset[int] = NOT_RUN,
    ambiguous: Mapping[int, int] = AMBIGUOUS,
    size: tuple[int, int] | None = None,
) -> Folder:
    """Write `jobs` into `out` with the given job indexes failed, expired, not run."""
    folder = Folder(out=out, jobs=jobs)
    with Ledger.open(out, backend="local", base_url=BASE_URL) as ledger:
        ledger.plan_many((j.key, j.index, j.prompt_id, micros(0.02 * j.request.n)) for j in jobs)
        for job in jobs:
            if job.index in not_run:
                folder.not_run.add(job.key)
                continue
            ledger.submitting(job.key)
            for _ in range(ambiguous.get(job.index, 0)):
                ledger.ambiguous(job.key)
            if job.index in failed:
                ledger.failed(job.key, failed[job.index])
                folder.failed[job.key] = failed[job.index]
            elif job.index in expired:
                ledger.submitted(job.key, f"req-{job.key8}", AT)
                ledger.expired(job.key)
                folder.expired.add(job.key)
            else:
                charged = CHARGED if job.index % 2 == 0 else None
                complete_job(out, ledger, job, charged=charged, size=size)
                folder.completed.add(job.key)
    return folder


def sweep_jobs() -> list[Job]:
    """The 24 jobs of manifests/sweep-demo.yaml, in expansion order."""
    return list(expand(load_manifest(str(SWEEP_DEMO))))


def make_sweep_folder(out: Path, **options: object) -> Folder:
    """The sweep demo written into `out` (see the module docstring)."""
    return make_folder(out, sweep_jobs(), **options)  # type: ignore[arg-type]


def mug_jobs(count: int) -> list[Job]:
    """`count` jobs of one prompt, `mug {i} on a table`, var i (for folders of many jobs)."""

    def request(i: int) -> Request:
        return Request(
            prompt=f"mug {i} on a table", mode="standard", aspect_ratio="1:1", resolution="1k",
            n=1, output_format="jpeg",
        )  # fmt: skip

    return [
        make_job(index=i, prompt_id="mug", request=request(i), model="m", vars=(("i", str(i)),))
        for i in range(count)
    ]
