"""Where outputs go: paths inside the output folder. Pure, no I/O but `resolve`.

Default layout (see docs/store.md)::

    OUT/<prompt id>/<slug>-<key8>-<i>.<ext>     the image
    OUT/<prompt id>/<slug>-<key8>-<i>.json      its sidecar

The names themselves (safe components, slugs, patterns, stems) follow
runner.naming, which the manifest shares; every final path is then resolved
and checked to stay inside OUT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PureWindowsPath
from typing import Final

from runner.errors import UsageError
from runner.jobs import Job
from runner.naming import relative_stem, show

EXTENSIONS: Final[Mapping[str, str]] = {"jpeg": "jpg", "png": "png", "webp": "webp"}
"""File extension per API `output_format`."""

SIDECAR_SUFFIX: Final = ".json"


def contained(root: Path, relative: str | Path, *, what: str) -> Path:
    """`root / relative`, resolved, refusing anything that lands outside `root`.

    Raises UsageError naming `what` and the offending value (``../x``,
    an absolute path, a symlink that points away).
    """
    rel = Path(relative)
    # Checked as a Windows path too: "C:evil" is drive-relative there.
    if rel.anchor or PureWindowsPath(relative).anchor:
        raise UsageError(f"{what}: {show(str(relative))} must be a relative path")
    base = root.resolve()
    final = (base / rel).resolve()
    if not final.is_relative_to(base):
        raise UsageError(
            f"{what}: {show(str(relative))} leads outside {root} ({final}); "
            "use a path inside the folder"
        )
    return final


def image_path(out: Path, job: Job, i: int, pattern: str | None = None) -> Path:
    """The absolute path of image `i` (0..n-1) of `job` under `out`.

    `pattern` is the manifest's `output.pattern` (default DEFAULT_PATTERN); every
    substituted value is made safe first and the result must stay inside
    `out`. Raises UsageError for a bad pattern or prompt id: call it while
    planning, before anything is paid for.
    """
    ext = EXTENSIONS[job.request.output_format]
    return contained(out, f"{relative_stem(job, i, pattern)}.{ext}", what="output path")


def sidecar_path(image: Path) -> Path:
    """The sidecar beside an image: the same stem with ``.json``."""
    return image.with_suffix(SIDECAR_SUFFIX)


def relative_name(out: Path, path: Path) -> str:
    """`path` relative to `out`, ``/``-separated, as stored in sidecars and the ledger."""
    return path.resolve().relative_to(out.resolve()).as_posix()


def input_image_path(source: str, *, base: Path, roots: Sequence[Path] = ()) -> Path:
    """Resolve a manifest's local input image path, read only from allowed folders.

    `base` is the manifest's folder; relative `source` paths resolve against
    it. The result must lie under `base` or one of `roots` (roots the manifest
    allows explicitly), else UsageError names the value and the fix.
    """
    candidate = (base / source).resolve()
    allowed = [base.resolve(), *(root.resolve() for root in roots)]
    if any(candidate.is_relative_to(root) for root in allowed):
        return candidate
    raise UsageError(
        f"image: {show(source)} resolves to {candidate}, outside the manifest's folder "
        f"{allowed[0]}; move the image there or allow its folder explicitly in the manifest"
    )
