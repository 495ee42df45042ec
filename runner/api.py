"""The Python API: what `runner.load_manifest`, `runner.plan`, `runner.run` and
`runner.open_output` are. Thin, over the same library the CLI uses.

    import runner

    manifest = runner.load_manifest("manifests/example.yaml")
    print(runner.plan(manifest, filter=["mode=quality"]).credits_usd)  # USD, estimated
    report = runner.run(manifest, out="outputs/try", backend="local", limit=2)
    folder = runner.open_output(report.out)
    for image in folder.images():
        print(image["file"], image["sha256"], image["credits_usd"])

A manifest argument may be a `Manifest` or a path. `filter` and `limit` are
the CLI's `--filter` / `--limit` (runner.subset). `run` blocks until the run
ends; from async code, await `runner.run.run_manifest` (the module) instead.
Errors are the classes of `runner.errors` (UsageError for a bad manifest or
argument, AuthError, StoreError, ...), never a traceback-only exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from runner.subset import parse_subset

if TYPE_CHECKING:
    from runner.manifest import Manifest
    from runner.plan import Plan
    from runner.reporting.gallery import GalleryResult
    from runner.reporting.grid import GridLayout
    from runner.run import RunReport
    from runner.store import FolderStatus, VerifyReport


def load_manifest(path: str | PathLike[str], *, provider: str | None = None) -> Manifest:
    """Read and check a manifest file (YAML). Raises ManifestError naming file:line and fix.

    `provider` ("segmind", "xai") overrides its api.provider, as `--provider` does.
    """
    from runner.manifest import load_manifest as load

    return load(path, provider=provider)


def plan(
    manifest: Manifest | str | PathLike[str],
    *,
    filter: Iterable[str] = (),
    limit: int | None = None,
    rpm: int | None = None,
    max_credits: float | None = None,
) -> Plan:
    """What a run would do, with no request sent: jobs, images, credits (USD), duration (s).

    `rpm` and `max_credits` (USD) override the manifest's budget, as the CLI
    flags do; `filter` / `limit` plan a subset.
    """
    from runner.plan import make_plan

    return make_plan(_subset(manifest, filter, limit), rpm=rpm, max_credits=max_credits)


def run(
    manifest: Manifest | str | PathLike[str],
    *,
    out: str | PathLike[str] | None = None,
    backend: Literal["auto", "segmind", "xai", "local"] = "auto",
    filter: Iterable[str] = (),
    limit: int | None = None,
    max_credits: float | None = None,
    rpm: int | None = None,
    retry_failed: bool = False,
    cache: str | PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> RunReport:
    """Run the manifest's jobs (or a subset) into `out` and return the report. Blocks.

    `out` defaults to the manifest's output.dir; `backend` "auto" is the
    manifest's provider (api.provider) when its key (SEGMIND_API_KEY,
    XAI_API_KEY) is set in `env` (default: os.environ), else the embedded
    emulator of its API. `max_credits` is USD. `cache` is the CLI's
    `--cache DIR`: jobs whose verified images it holds are copied, not paid
    for, and finished jobs are added ($RUNNER_CACHE is the CLI's, not read
    here). A second call resumes: finished jobs are skipped, jobs in flight
    re-attached. No signal handlers are installed and nothing is printed; the
    report's `counts` and `stats` say what happened.
    """
    import anyio

    from runner.run import RunOptions, run_manifest

    options = RunOptions(
        backend=backend,
        out=None if out is None else Path(out),
        max_credits=max_credits,
        rpm=rpm,
        retry_failed=retry_failed,
        cache=None if cache is None else Path(cache),
    )
    restricted = _subset(manifest, filter, limit)

    async def main() -> RunReport:
        return await run_manifest(restricted, options, env=env)

    return anyio.run(main)


def open_output(path: str | PathLike[str]) -> OutputFolder:
    """An output folder of a run, to read: its images, status, verification, exports.

    Raises UsageError when `path` is not a folder.
    """
    from runner.errors import UsageError

    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; pass the output folder of a run")
    return OutputFolder(folder)


@dataclass(frozen=True, slots=True)
class OutputFolder:
    """A run's output folder (`runner.open_output`). Each method reads the folder anew."""

    path: Path

    def images(
        self,
        *,
        filter: Iterable[str] = (),
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """One dict per image, in expansion order, with `runner.export.COLUMNS` as keys."""
        from runner.export import export_rows

        return export_rows(self.path, parse_subset(filter, limit))

    def export(self, stream: TextIO, fmt: Literal["csv", "jsonl"] = "csv") -> int:
        """Write `runner export`'s rows to `stream`; the number of images."""
        from runner.export import write_export

        return write_export(self.path, stream, fmt)

    def status(self) -> FolderStatus:
        """Counts by state, credits (USD) estimated and charged, oldest in-flight age (s)."""
        from runner.store import folder_status

        return folder_status(self.path)

    def verify(self) -> VerifyReport:
        """Every image against its sidecar (sha256, size, format, pixels); `.clean` if all pass."""
        from runner.store import verify

        return verify(self.path)

    def gallery(self) -> GalleryResult:
        """(Re)write OUT/gallery.html; what it shows."""
        from runner.reporting.gallery import write_gallery

        return write_gallery(self.path)

    def grid(self, target: str | PathLike[str], *, rows: str, cols: str) -> GridLayout:
        """Write a labelled contact sheet (PNG/JPEG/WebP by suffix) by two axes."""
        from runner.reporting.grid import write_grid

        return write_grid(self.path, Path(target), rows=rows, cols=cols)


def _subset(
    manifest: Manifest | str | PathLike[str], filters: Iterable[str], limit: int | None
) -> Manifest:
    from runner.manifest import Manifest
    from runner.sweep import restrict

    loaded = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    return restrict(loaded, parse_subset(list(filters), limit))
