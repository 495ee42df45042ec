"""The write path of one image, in the order that keeps paid results safe.

`save_image` checks the bytes (media.check_image), picks the path
(layout.image_path) and writes atomically; the caller then writes the
sidecar (sidecar.write_sidecar, the "done" marker) and only then records the
job completed in the ledger. A crash between any two steps leaves either
nothing, an image without a sidecar (rewritten on resume), or a complete
pair the ledger does not know yet (`verify.finished_files` finds it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.jobs import Job
from runner.params import pixel_size
from runner.store.atomic import write_atomic
from runner.store.layout import image_path, relative_name
from runner.store.media import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageInfo, check_image


@dataclass(frozen=True, slots=True)
class SavedFile:
    """An image written under OUT: `name` relative to OUT (``/``), `path` absolute."""

    name: str
    path: Path
    info: ImageInfo


def expected_pixels(job: Job) -> tuple[int, int] | None:
    """The (width, height) in pixels the job should get, or None when it cannot be known.

    None for aspect_ratio ``auto`` and for edits (the output keeps the input's
    ratio). Note that the 2k sizes in runner.params are a guess.
    """
    request = job.request
    if request.image is not None:
        return None
    return pixel_size(request.aspect_ratio, request.resolution)


def save_image(
    out_dir: Path,
    job: Job,
    index: int,
    data: bytes,
    *,
    expected_size: tuple[int, int] | None,
    pattern: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> SavedFile:
    """Check downloaded image `index` of `job` and write it atomically under `out_dir`.

    `expected_size` is (width, height) in pixels or None (see `expected_pixels`);
    `pattern` is the manifest's output pattern. Raises DownloadError (bad
    bytes; `retryable` says whether a re-download may help), UsageError (a
    path that cannot be made safe) or StoreError (a disk fault).
    """
    info = check_image(
        data,
        expected_format=job.request.output_format,
        expected_size=expected_size,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
    )
    path = image_path(out_dir, job, index, pattern)
    write_atomic(path, data)
    return SavedFile(name=relative_name(out_dir, path), path=path, info=info)
