"""The scheduler's JobSink over the store: files, sidecars and ledger rows.

Order per job (docs/store.md): ledger `submitting` before the POST,
`submitted` (fsynced) before the first poll, each image written atomically,
then its sidecar (the "done" marker), then the ledger's `completed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.backends.base import Submission
from runner.jobs import Job
from runner.scheduling.sink import Completion, SavedImage
from runner.store import (
    Ledger,
    SavedFile,
    build_sidecar,
    expected_pixels,
    save_image,
    sidecar_path,
    write_sidecar,
)


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    """What every sidecar of a run shares. `secrets` are refused in any written text."""

    out: Path
    backend: str
    base_url: str
    name_pattern: str | None = None
    manifest_path: str | None = None
    manifest_sha256: str | None = None
    # The 2k sizes of the pixel table are a guess: against the real API a
    # different size must not throw away a paid image, so only the format
    # and the image's integrity are checked there.
    strict_sizes: bool = True
    secrets: tuple[str, ...] = ()


class Recorder:
    """Implements runner.scheduling.sink.JobSink with the store's parts."""

    def __init__(self, ledger: Ledger, config: RecorderConfig) -> None:
        self._ledger = ledger
        self._config = config
        # Images written and waiting for their sidecars, by (job key, index).
        self._pending: dict[tuple[str, int], SavedFile] = {}

    def submitting(self, job: Job, estimate: float) -> None:
        row = self._ledger.get(job.key)
        if row is None:
            self._ledger.plan(job.key, job.index, job.prompt_id, estimate)
        elif row.state in ("failed", "expired", "completed"):
            self._ledger.reset(job.key)
        # A row left `submitting` by an earlier run is counted ambiguous by
        # the resume decision (runner/resume.py), once, before it gets here.
        self._ledger.submitting(job.key)

    def submitted(self, job: Job, submission: Submission, wall: float) -> None:
        self._ledger.submitted(job.key, submission.request_id, wall)

    def save_image(self, job: Job, index: int, data: bytes) -> SavedImage:
        cfg = self._config
        expected = (
            expected_pixels(job) if cfg.strict_sizes or job.request.resolution == "1k" else None
        )
        saved = save_image(
            cfg.out, job, index, data, expected_size=expected, pattern=cfg.name_pattern
        )
        self._pending[(job.key, index)] = saved
        return SavedImage(path=saved.name, bytes=saved.info.bytes)

    def completed(self, job: Job, images: list[SavedImage], completion: Completion) -> None:
        cfg = self._config
        metrics = completion.metrics
        for index in range(len(images)):
            saved = self._pending.pop((job.key, index))
            sidecar = build_sidecar(
                job=job,
                index=index,
                image=saved.info,
                file_name=saved.name,
                backend=cfg.backend,
                base_url=cfg.base_url,
                request_id=completion.request_id,
                estimated_usd=completion.estimate,
                charged_usd=metrics.cost,
                submitted_at=completion.submitted_wall,
                completed_at=completion.completed_wall,
                queue_s=metrics.queue_time,
                inference_s=metrics.inference_time,
                wall_s=completion.wall_s,
                manifest_path=cfg.manifest_path,
                manifest_sha256=cfg.manifest_sha256,
                seed=completion.seed,
            )
            write_sidecar(sidecar_path(saved.path), sidecar, forbid=cfg.secrets)
        self._ledger.completed(
            job.key, completion.charged, [i.path for i in images], completion.completed_wall
        )

    def failed(self, job: Job, reason: str, *, request_id: str | None = None) -> None:
        for index in range(job.request.n):
            self._pending.pop((job.key, index), None)
        if self._ledger.get(job.key) is None:
            self._ledger.plan(job.key, job.index, job.prompt_id, 0.0)
        self._ledger.failed(job.key, reason)

    def expired(self, job: Job) -> None:
        self._ledger.expired(job.key)

    def ambiguous(self, job: Job) -> None:
        self._ledger.ambiguous(job.key)

    def unsent(self, job: Job) -> None:
        row = self._ledger.get(job.key)
        if row is not None and row.state == "submitting":
            self._ledger.reset(job.key)
