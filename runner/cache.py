"""A cache of finished jobs shared by output folders (`runner run --cache DIR`, $RUNNER_CACHE).

A job whose key has a verified image in the cache is served from it: its
images are hard-linked into the output folder (copied where a link cannot
be made: another file system, a Windows share), with their sidecars, and the
ledger records it completed at no charge with the reason ``cached``; nothing
is sent. At the end of a run the folder's finished jobs are added, so a CI
pipeline that restores the cache (docs/store.md: an actions/cache recipe)
pays only for the jobs that changed. The key (runner.jobs, scheme k1) holds
the prompt id, every request param, the input image's sha256 and the repeat
index, so repeats are distinct entries and never served from one another.

Layout, one folder per job key::

    DIR/k1/<first 2 hex>/<64 hex>/<i>.<ext>    image i of the job
    DIR/k1/<first 2 hex>/<64 hex>/<i>.json     its sidecar, as the folder that paid wrote it

Nothing in DIR is trusted (STYLE.md 15): an entry is served only when each
sidecar parses, names this key and index, comes from the same kind of
backend as the folder (an emulated image never lands in a paid folder), and
its image is a regular file (no symlink, checked with ``O_NOFOLLOW``), no
larger than the download cap, whose sha256 and header match the sidecar;
else the job is run as usual. Every path is contained in DIR. Writes are
atomic (a temp file, then a rename; the sidecar after its image), so a
killed run leaves no half entry that could be served.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from runner.errors import DownloadError, UsageError
from runner.jobs import KEY_SCHEME, Job
from runner.money import ZERO
from runner.store import (
    EXTENSIONS,
    JobRow,
    Ledger,
    Sidecar,
    contained,
    ensure_dir,
    image_path,
    inspect_image,
    relative_name,
    sidecar_path,
    write_atomic,
)
from runner.store.atomic import fsync_dir, store_error
from runner.store.media import DEFAULT_MAX_BYTES
from runner.store.sidecar import sidecar_json

ENV: Final = "RUNNER_CACHE"
"""The environment variable that names the cache folder when --cache is not given."""

CACHED: Final = "cached"
"""The ledger reason of a job served from the cache, and what the run's progress says."""

_MAX_SIDECAR_BYTES: Final = 1024 * 1024
_HEX: Final = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Served:
    """A job served from the cache: its image names relative to OUT."""

    files: tuple[str, ...]


def cache_dir(flag: str | None, env: Mapping[str, str]) -> Path | None:
    """The cache folder from ``--cache`` (wins) or $RUNNER_CACHE; None for no cache."""
    value = flag if flag else env.get(ENV) or None
    return Path(value) if value else None


class Cache:
    """The cache folder `root`, for a run whose backend kind is `backend` (segmind, xai, local)."""

    def __init__(self, root: Path, *, backend: str) -> None:
        if root.exists() and not root.is_dir():
            raise UsageError(f"--cache: {root} is not a folder; name a folder (it is created)")
        ensure_dir(root)
        self.root = root.resolve()
        self.backend = backend
        # Keys whose entry failed a check this run: `add` writes them anew.
        self._refused: set[str] = set()

    # -- reading

    def serve(self, job: Job, out: Path, pattern: str | None) -> Served | None:
        """Link (else copy) `job`'s verified images and sidecars into `out`; None if not cached.

        An entry that fails any check is ignored (the job runs as usual) and
        never half-copied: each image and sidecar lands by rename.
        """
        entry = self._entry(job.key)
        if entry is None or not entry.exists():
            return None
        if entry.is_symlink() or not entry.is_dir():
            self._refused.add(job.key)
            return None
        checked: list[tuple[Path, Sidecar]] = []
        ext = EXTENSIONS[job.request.output_format]
        for index in range(job.request.n):
            sidecar = self._sidecar(entry / f"{index}.json", job, index)
            if sidecar is None:
                self._refused.add(job.key)
                return None
            checked.append((entry / f"{index}.{ext}", sidecar))
        files: list[str] = []
        for index, (source, sidecar) in enumerate(checked):
            target = image_path(out, job, index, pattern)
            if not _place(source, target, sidecar):
                self._refused.add(job.key)
                return None
            name = relative_name(out, target)
            moved = sidecar.model_copy(
                update={"file": sidecar.file.model_copy(update={"name": name})}
            )
            write_atomic(sidecar_path(target), sidecar_json(moved).encode("utf-8"))
            files.append(name)
        return Served(tuple(files))

    def _entry(self, key: str) -> Path | None:
        scheme, _, digest = key.partition(":")
        if scheme != KEY_SCHEME or len(digest) != 64 or not set(digest) <= _HEX:
            return None
        return contained(self.root, f"{scheme}/{digest[:2]}/{digest}", what="--cache entry")

    def _sidecar(self, path: Path, job: Job, index: int) -> Sidecar | None:
        data = _read_regular(path, _MAX_SIDECAR_BYTES)
        if data is None:
            return None
        try:
            sidecar = Sidecar.model_validate_json(data)
        except ValueError:
            return None
        if (sidecar.key, sidecar.index, sidecar.n) != (job.key, index, job.request.n):
            return None
        return sidecar if sidecar.backend.name == self.backend else None

    # -- writing

    def add(self, out: Path, rows: Iterable[JobRow]) -> int:
        """Add the finished jobs among `rows` (ledger rows of `out`) not cached yet; how many.

        Each image is verified against its sidecar first (a folder edited by
        hand adds nothing wrong). Raises StoreError when the cache cannot be
        written (full disk, no permission).
        """
        added = 0
        for row in rows:
            if row.state != "completed" or row.reason == CACHED or not row.files:
                continue
            entry = self._entry(row.key)
            if entry is None or entry.is_symlink():
                continue
            if row.key not in self._refused and _complete(entry, len(row.files)):
                continue
            if self._add_one(out, row, entry):
                added += 1
        return added

    def _add_one(self, out: Path, row: JobRow, entry: Path) -> bool:
        pairs: list[tuple[Path, Sidecar]] = []
        for index, name in enumerate(row.files):
            image = contained(out, name, what="ledger file")
            data = _read_regular(sidecar_path(image), _MAX_SIDECAR_BYTES)
            if data is None:
                return False
            try:
                sidecar = Sidecar.model_validate_json(data)
            except ValueError:
                return False
            if (sidecar.key, sidecar.index, sidecar.n) != (row.key, index, len(row.files)):
                return False
            pairs.append((image, sidecar))
        ensure_dir(entry)
        for index, (image, sidecar) in enumerate(pairs):
            ext = image.suffix  # the folder's own extension for the format
            if not _place(image, entry / f"{index}{ext}", sidecar):
                return False
            # The sidecar last: a sidecar in the cache means its image is whole.
            write_atomic(entry / f"{index}.json", sidecar_json(sidecar).encode("utf-8"))
        return True


def record_cached(ledger: Ledger, job: Job, *, known: bool, served: Served, at: float) -> None:
    """Record a job served from the cache: completed, charged nothing, reason ``cached``.

    `known`: the ledger has a row for the job (else one is planned here, with
    a zero estimate: the job never reserved anything); `at` is wall-clock
    epoch seconds.
    """
    if not known:
        ledger.plan(job.key, job.index, job.prompt_id, ZERO)
    ledger.completed(job.key, ZERO, served.files, at, reason=CACHED)


def _complete(entry: Path, n: int) -> bool:
    return all((entry / f"{index}.json").is_file() for index in range(n))


def _read_regular(path: Path, cap: int) -> bytes | None:
    """The bytes of `path` if it is a regular file (never through a symlink) of at most `cap`."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > cap:
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(cap + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) <= cap else None


def _place(source: Path, target: Path, sidecar: Sidecar) -> bool:
    """Put a verified copy of image `source` at `target` (by rename); False if it fails a check.

    A hard link is made to a temp name beside `target` and the *linked* file
    is verified, so what lands is what was checked; where no link can be
    made, the verified bytes are written.
    """
    ensure_dir(target.parent)
    temp = target.with_name(f".{target.name}.{os.urandom(6).hex()}.tmp")
    try:
        os.link(source, temp, follow_symlinks=False)
    except OSError:
        data = _read_regular(source, DEFAULT_MAX_BYTES)
        if data is None or not _matches(data, sidecar):
            return False
        write_atomic(target, data)
        return True
    try:
        data = _read_regular(temp, DEFAULT_MAX_BYTES)
        if data is None or not _matches(data, sidecar):
            return False
        os.replace(temp, target)
        fsync_dir(target.parent)
    except OSError as err:
        raise store_error(err, target) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return True


def _matches(data: bytes, sidecar: Sidecar) -> bool:
    if hashlib.sha256(data).hexdigest() != sidecar.file.sha256:
        return False
    try:
        info = inspect_image(data)
    except DownloadError:
        return False
    return (info.format, info.width, info.height, info.bytes) == (
        sidecar.file.format,
        sidecar.file.width,
        sidecar.file.height,
        sidecar.file.bytes,
    )
