"""`runner merge OUT_A OUT_B ... --into OUT`: the workers' folders of a shared run as one.

Each worker of a shared run (docs/distributed.md) writes its own folder.
Merging builds one folder as if one process had run everything: images and
sidecars copied (byte for byte, atomically, at the same relative names),
one ledger, then summary.json / summary.md and gallery.html written anew,
and the result verified.

For each job, across the folders (and OUT itself, when it is already a
runner folder: merging again adds to it):

- a **completed** copy wins over any other state. Two completed copies
  that agree (same request id, same image bytes: a job re-attached by a
  worker that took it over downloads the very same images) are one copy;
  copies that differ (the job was paid twice) are a **conflict**, and the
  merge refuses before writing anything, naming the job and the files;
- a completed copy whose files fail their check (sha256, size, header)
  is not used; with no good copy left the merge refuses and names it;
- otherwise the most recently updated row wins: a request id still within
  the server's retention stays re-attachable by a later `runner run` on OUT;
- its billed failures (each folder's were paid by that folder) add up over
  the folders named, so OUT's budget and reports count every one; a merge
  never lowers what OUT holds, and merging the same folders again adds
  nothing.

Folders must share one backend and base URL (real and emulated images are
never mixed). Reading the sources takes no lock; OUT is locked as a run
would lock it.

Given the manifest's jobs (`jobs`: the CLI passes the manifest the folders
were run from, or `--manifest`), the merge also says which of them OUT still
lacks (`MergeReport.missing`): the shards of a CI matrix merged while one of
them failed or was left out. The reports then cover exactly those jobs, the
missing ones as not run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from runner.clock import WallClock, wall_time
from runner.errors import RunnerError, UsageError
from runner.jobs import Job
from runner.money import Micros
from runner.params import DEFAULT_PRICES
from runner.reporting.jobinfo import Prices, RunJobs, facts_of_job
from runner.store import (
    JobRow,
    Ledger,
    LedgerMeta,
    VerifyReport,
    check_pair,
    contained,
    ledger_path,
    read_sidecar,
    sidecar_path,
    verify,
    write_atomic,
)

_SHOWN: Final = 20

_Billed = tuple[int, Micros]
"""A job's billed failures: how many, and what they cost (µ$)."""


@dataclass(frozen=True, slots=True)
class _Copy:
    """One folder's row of a job, and for a completed one the identity of its images."""

    folder: Path
    row: JobRow
    images: tuple[tuple[str, str], ...] = ()  # (relative name, sha256) per image


@dataclass(frozen=True, slots=True)
class MergeReport:
    """What `merge` did. `copied`: files written into OUT (images and sidecars).

    `sources` are the folders named (OUT itself not counted, also when it
    already held a merge); `expected` the number of jobs of the manifest
    checked against (None: not checked); `missing` the first of them OUT
    has not completed (at most 20, each a readable label) and
    `missing_count` all of them.
    """

    into: Path
    sources: tuple[Path, ...]
    jobs: int
    completed: int
    copied: int
    duplicates: int
    verify: VerifyReport
    expected: int | None = None
    missing: tuple[str, ...] = ()
    missing_count: int = 0

    @property
    def complete(self) -> bool:
        """Every job of the manifest is completed in OUT (True when nothing was checked)."""
        return self.missing_count == 0


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; pass the --out folders of the workers")


def _read_folder(folder: Path) -> tuple[LedgerMeta, list[JobRow]]:
    _check_folder(folder)
    with Ledger.open_readonly(folder) as ledger:
        return ledger.meta, list(ledger.rows())


def _images(folder: Path, row: JobRow) -> tuple[tuple[str, str], ...] | str:
    """(name, sha256) of a completed row's images, or what is wrong with its files."""
    found: list[tuple[str, str]] = []
    for name in row.files:
        try:
            image = contained(folder, name, what=f"{folder} ledger file")
        except UsageError as err:
            return str(err)
        problems = check_pair(folder, image)
        if problems:
            return f"{name}: {'; '.join(problems)}"
        found.append((name, read_sidecar(sidecar_path(image)).file.sha256))
    if not found:
        return "the ledger lists no image"
    return tuple(found)


def recorded_manifest(folders: Iterable[Path]) -> str | None:
    """The manifest path the folders' images were made from (their sidecars say), if any.

    The first completed row with a readable sidecar decides. Raises
    UsageError for a path that is not a folder.
    """
    for folder in folders:
        _check_folder(folder)
        if not ledger_path(folder).is_file():
            continue
        with Ledger.open_readonly(folder) as ledger:
            for row in ledger.rows():
                if row.state != "completed" or not row.files:
                    continue
                try:
                    image = contained(folder, row.files[0], what=f"{folder} ledger file")
                    ref = read_sidecar(sidecar_path(image)).manifest
                except (UsageError, RunnerError, OSError, ValueError):
                    continue
                if ref is not None:
                    return ref.path
    return None


def _identity(copy: _Copy) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    return copy.row.request_id, copy.images


def _plan(
    folders: Sequence[Path], rows_by_folder: Sequence[list[JobRow]]
) -> tuple[dict[str, _Copy], int]:
    """The copy of each job that goes into OUT, and how many duplicates agreed.

    Raises RunnerError listing conflicting and damaged copies.
    """
    completed: dict[str, list[_Copy]] = {}
    others: dict[str, _Copy] = {}
    damaged: dict[str, list[str]] = {}
    for folder, rows in zip(folders, rows_by_folder, strict=True):
        for row in rows:
            if row.state == "completed":
                images = _images(folder, row)
                if isinstance(images, str):
                    damaged.setdefault(row.key, []).append(f"{folder}: {images}")
                    continue
                completed.setdefault(row.key, []).append(_Copy(folder, row, images))
            else:
                best = others.get(row.key)
                if best is None or row.updated_at > best.row.updated_at:
                    others[row.key] = _Copy(folder, row)
    chosen: dict[str, _Copy] = dict(others)
    conflicts: list[str] = []
    duplicates = 0
    for key, copies in completed.items():
        first = copies[0]
        differing = [c for c in copies[1:] if _identity(c) != _identity(first)]
        if differing:
            where = ", ".join(
                f"{c.folder}/{c.images[0][0]} (request {c.row.request_id})"
                for c in [first, *differing]
            )
            conflicts.append(f"job {key}: {where}")
        duplicates += len(copies) - 1 - len(differing)
        chosen[key] = first
    lost = [f"job {key}: {'; '.join(why)}" for key, why in damaged.items() if key not in completed]
    if conflicts or lost:
        lines = []
        if conflicts:
            lines.append(
                f"{len(conflicts)} job(s) have differing completed copies (each was paid for "
                "more than once); keep one: leave a folder out, or delete one copy's image and "
                "sidecar files there and run `runner merge` again:"
            )
            lines += [f"  {c}" for c in conflicts[:_SHOWN]]
        if lost:
            lines.append(
                f"{len(lost)} completed job(s) have no intact copy (`runner verify` the "
                "folder; `runner run` on it fetches them again while the server keeps them):"
            )
            lines += [f"  {d}" for d in lost[:_SHOWN]]
        raise RunnerError("runner merge: nothing written.\n" + "\n".join(lines))
    return chosen, duplicates


def _copy_files(copy: _Copy, into: Path) -> int:
    """Copy a completed job's images and sidecars into OUT unless identical ones are there."""
    written = 0
    for name, _ in copy.images:
        source = contained(copy.folder, name, what=f"{copy.folder} ledger file")
        target = contained(into, name, what="merged file")
        for src, dst in ((source, target), (sidecar_path(source), sidecar_path(target))):
            if src == dst:
                continue
            try:
                data = src.read_bytes()
            except OSError as err:
                raise RunnerError(f"runner merge: cannot read {src}: {err.strerror}") from None
            if dst.is_file() and dst.read_bytes() == data:
                continue
            write_atomic(dst, data)
            written += 1
    return written


def _billed(rows_by_folder: Iterable[list[JobRow]]) -> dict[str, _Billed]:
    """Each job's billed failures over the named folders: paid in each, so they add up."""
    billed: dict[str, _Billed] = {}
    for rows in rows_by_folder:
        for row in rows:
            if row.billed_failures:
                count, amount = billed.get(row.key, (0, Micros(0)))
                billed[row.key] = (
                    count + row.billed_failures,
                    Micros(amount + row.billed_failed),
                )
    return billed


def _record(ledger: Ledger, copy: _Copy, wall: WallClock, billed: _Billed) -> None:
    """Bring OUT's ledger row of the job to `copy`'s state through the ledger's own moves,
    and its billed failures up to `billed` (the sources' sum; OUT may hold them already,
    from an earlier merge of the same folders)."""
    row = copy.row
    current = ledger.get(row.key)
    if current is None or (current.state, current.request_id, current.files) != (
        row.state,
        row.request_id,
        row.files,
    ):
        _move(ledger, copy, current, wall)
    had = (current.billed_failures, current.billed_failed) if current is not None else (0, 0)
    if billed[0] > had[0]:
        ledger.add_billed(row.key, billed[0] - had[0], Micros(max(0, billed[1] - had[1])))


def _move(ledger: Ledger, copy: _Copy, current: JobRow | None, wall: WallClock) -> None:
    row = copy.row
    if current is None:
        ledger.plan(row.key, row.idx, row.prompt_id, row.estimate)
    elif current.state == "submitted":
        ledger.expired(row.key)
        ledger.reset(row.key)
    elif current.state != "planned":
        ledger.reset(row.key)
    if row.state in ("completed", "submitted") and row.request_id and row.submitted_at:
        ledger.submitted(row.key, row.request_id, row.submitted_at)
    if row.state == "completed":
        ledger.completed(row.key, row.charged, row.files, row.completed_at or wall())
    elif row.state == "failed":
        ledger.failed(row.key, row.reason or "failed")
    elif row.state == "expired":
        ledger.submitting(row.key)
        ledger.expired(row.key)
    for _ in range(row.ambiguous - (current.ambiguous if current is not None else 0)):
        ledger.ambiguous(row.key)


def merge(
    sources: Iterable[Path],
    into: Path,
    *,
    argv: Sequence[str] = (),
    title: str | None = None,
    wall: WallClock = wall_time,
    jobs: RunJobs | None = None,
    prices: Prices = DEFAULT_PRICES,
    manifest: str | None = None,
) -> MergeReport:
    """Merge the output folders `sources` into `into` (see the module docstring).

    `argv` is recorded as the ledger's run (no secrets); `title` names the
    gallery (and summary.md); `wall` stamps the run (UTC epoch seconds); `jobs` are the
    manifest's jobs to check OUT against (and to report, estimated with
    `prices`), None to check nothing; `manifest` is that manifest's path as
    given, which summary.md's heading names as a run's does, with how many
    folders (or shards) were merged. Raises UsageError (not runner
    folders, different backends), RunnerError (conflicts, damaged copies:
    nothing is written) and StoreError.
    """
    folders: list[Path] = []
    seen: set[Path] = set()
    target = into.resolve()
    for folder in [*sources, *([into] if ledger_path(into).is_file() else [])]:
        resolved = folder.resolve()
        if resolved not in seen:
            seen.add(resolved)
            folders.append(folder)
    named = tuple(f for f in folders if f.resolve() != target)
    if not named:
        raise UsageError("runner merge: name the workers' folders to merge, e.g. out/w1 out/w2")
    read = [_read_folder(folder) for folder in folders]
    backends = {(meta.backend, meta.base_url) for meta, _ in read}
    if len(backends) > 1:
        made = "; ".join(
            f"{f}: {m.backend} ({m.base_url})" for f, (m, _) in zip(folders, read, strict=True)
        )
        raise UsageError(
            f"runner merge: the folders were made with different backends ({made}); "
            "real and emulated images are never mixed in one folder"
        )
    chosen, duplicates = _plan(folders, [rows for _, rows in read])
    billed = _billed(rows for f, (_, rows) in zip(folders, read, strict=True) if f in named)
    meta = read[0][0]
    copied = 0
    with Ledger.open(into, backend=meta.backend, base_url=meta.base_url, wall=wall) as ledger:
        run = ledger.start_run(argv=["merge", *argv], manifest_sha256=None, at=wall())
        for key in sorted(chosen, key=lambda k: (chosen[k].row.idx, k)):
            copy = chosen[key]
            if copy.row.state == "completed":
                copied += _copy_files(copy, into)
            _record(ledger, copy, wall, billed.get(key, (0, Micros(0))))
        ledger.end_run(run, outcome=f"merged {len(named)} folder(s)", at=wall())
    _reports(into, title, jobs, prices, manifest=manifest, merged=named)
    done_keys = {k for k, c in chosen.items() if c.row.state == "completed"}
    missing = _missing(jobs.values(), done_keys) if jobs is not None else []
    return MergeReport(
        into=into,
        sources=named,
        jobs=len(chosen),
        completed=len(done_keys),
        copied=copied,
        duplicates=duplicates,
        verify=verify(into),
        expected=len(jobs) if jobs is not None else None,
        missing=tuple(missing[:_SHOWN]),
        missing_count=len(missing),
    )


def _missing(jobs: Iterable[Job], done: set[str]) -> list[str]:
    """Labels of the jobs not in `done`, in the manifest's order."""
    return [f"{job.prompt_id}: {facts_of_job(job).label()}" for job in jobs if job.key not in done]


def _reports(
    into: Path,
    title: str | None,
    jobs: RunJobs | None,
    prices: Prices,
    *,
    manifest: str | None,
    merged: Sequence[Path],
) -> None:
    """summary.json / summary.md and gallery.html of the merged folder, from its ledger."""
    from runner.reporting.gallery import write_gallery
    from runner.reporting.summary import summarize_folder, write_summary
    from runner.reporting.summary_model import MergeInfo

    info = MergeInfo(folders=len(merged), shards=_shard_count(merged))
    summary = summarize_folder(into, jobs=jobs, prices=prices, manifest=manifest)
    write_summary(into, summary.model_copy(update={"merged": info}), title=title)
    write_gallery(into, title=title, jobs=jobs, prices=prices)


def _shard_count(folders: Sequence[Path]) -> int | None:
    """N when every folder's summary.json says it is a shard of one --shard K/N run, else None."""
    from runner.reporting.summary import SUMMARY_JSON, read_summary

    counts: set[int] = set()
    for folder in folders:
        try:
            shard = read_summary(folder / SUMMARY_JSON).shard
        except (OSError, ValueError):
            return None  # no summary (a run killed hard), or not ours: nothing to say
        if shard is None:
            return None
        counts.add(shard.count)
    return counts.pop() if len(counts) == 1 else None


def render_merge(report: MergeReport) -> str:
    """A few lines for the terminal."""
    lines = [
        f"merged {len(report.sources)} folder(s) into {report.into}: {report.jobs} job(s), "
        f"{report.completed} completed; {report.copied} file(s) copied, "
        f"{report.duplicates} identical duplicate(s) kept once",
    ]
    if report.expected is not None:
        if report.complete:
            lines.append(f"complete: all {report.expected:,} job(s) of the manifest")
        else:
            lines.append(
                f"incomplete: {report.missing_count:,} of {report.expected:,} job(s) of the "
                f"manifest are not completed in {report.into}:"
            )
            lines += [f"  {label}" for label in report.missing]
            if report.missing_count > len(report.missing):
                lines.append(f"  [and {report.missing_count - len(report.missing):,} more]")
    v = report.verify
    if v.clean:
        lines.append(f"verified: {v.checked} image(s), all good")
    else:
        from runner.store import render_verify

        lines.append(render_verify(v).rstrip("\n"))
    return "\n".join(lines) + "\n"
