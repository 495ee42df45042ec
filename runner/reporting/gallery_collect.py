"""The gallery's entries, collected as a folder's sidecars and ledger rows stream past.

`collect` walks the folder once (`folder_sidecars`: each sidecar read once,
beside its image), then the ledger's rows (the jobs without images), and
keeps only the entries the page shows: at most its cap (gallery_select.py),
those that need attention first, then images in job order. An entry is made
(gallery_items.py) from what the walk read, and only when the selection
admits it: nothing is read again to show it. A `--limit` finds its first
jobs in the same pass, holding their entries up to the cap's worth; only
past that does it take one pass more.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from runner.errors import StoreError
from runner.params import DEFAULT_PRICES
from runner.reporting.gallery_items import GalleryItem, facts_values, image_item, row_item
from runner.reporting.gallery_select import GALLERY_MAX_ITEMS, DigestSet, Smallest
from runner.reporting.jobinfo import (
    JobCatalog,
    JobFacts,
    Prices,
    RunJobs,
    facts_of_sidecar,
    run_rows,
)
from runner.store import (
    EXTENSIONS,
    JobRow,
    Ledger,
    Sidecar,
    ledger_path,
    read_sidecar,
    relative_name,
)
from runner.subset import Subset

SidecarReader = Callable[[Path], Sidecar]
"""Reads one sidecar file (runner.store.read_sidecar; ValueError or StoreError if it is
not a valid one). Passed in so that a caller can count or share the reads."""


def folder_sidecars(out: Path, read: SidecarReader = read_sidecar) -> Iterator[tuple[str, Sidecar]]:
    """(image name relative to OUT, its sidecar) for every valid pair, skipping hidden folders.

    Each sidecar is read once, with `read`. Folders come in sorted order (the
    top first), the sidecars of one folder in the file system's order: a
    folder's listing is streamed twice (`_folder_pairs`), never held, so a
    folder of 100,000 images costs 8 bytes per file name, not a list and a set
    of them.
    """
    pending = [out]
    while pending:
        folder = pending.pop()
        subfolders = yield from _folder_pairs(out, folder, read)
        # Depth first, in sorted order, as os.walk(topdown=True) with sorted dirs walks.
        pending.extend(folder / name for name in sorted(subfolders, reverse=True))


def _folder_pairs(
    out: Path, folder: Path, read: SidecarReader
) -> Generator[tuple[str, Sidecar], None, list[str]]:
    """The valid pairs of one folder (see `folder_sidecars`); returns its subfolders to walk
    (not hidden, not links). An unreadable folder has none.
    """
    names, subfolders = DigestSet(), []
    for entry in _listing(folder):
        if not _is_dir(entry):
            names.add(entry.name)
        elif not entry.name.startswith(".") and not entry.is_symlink():
            subfolders.append(entry.name)
    names.freeze()
    for entry in _listing(folder):
        name = entry.name
        if name.startswith(".") or not name.endswith(".json") or _is_dir(entry):
            continue
        try:
            sidecar = read(Path(entry.path))
        except (ValueError, StoreError):
            continue  # summary.json, or a broken sidecar: `runner verify` reports those
        # The image is the sidecar's sibling: a path in the JSON is not trusted.
        image = f"{name[: -len('.json')]}.{EXTENSIONS[sidecar.file.format]}"
        if image in names:
            yield relative_name(out, folder / image), sidecar
    return subfolders


def _listing(folder: Path) -> Iterator[os.DirEntry[str]]:
    """The entries of `folder`, streamed; none when it cannot be listed (gone, no
    permission), as os.walk skips such a folder.
    """
    try:
        with os.scandir(folder) as listing:
            yield from listing
    except OSError:
        return


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """Whether `entry` is a folder (a link to one too), as os.walk sorts entries."""
    try:
        return entry.is_dir()
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class _Entry:
    """One entry as the walk meets it: its rank, what a `--filter` reads, and what its
    `GalleryItem` is made from (the sidecar just read, or the ledger's row). Passing.

    `rank` is (0 needs attention / 1 an image, job order, key, image index, image
    name): unique per entry (the name tells apart copies of one sidecar, whatever
    order the walk met them in), so the smallest ranks are the entries a capped page shows.
    """

    rank: tuple[int, int, str, int, str]
    prompt_id: str
    facts: JobFacts | None
    image: str | None = None  # name relative to OUT
    sidecar: Sidecar | None = None
    row: JobRow | None = None
    gone: str | None = None  # a completed row's missing file
    made: GalleryItem | None = None  # its item, made already (the sidecar then dropped)

    def item(self, *, details: bool) -> GalleryItem:
        """The entry's `GalleryItem`; `details` False leaves an image's detail rows out."""
        if self.made is not None:
            return self.made
        if self.row is not None:
            return row_item(self.row, self.gone, self.facts)
        assert self.image is not None and self.sidecar is not None and self.facts is not None
        return image_item(self.image, self.sidecar, self.facts, details=details)

    @property
    def group(self) -> str:
        """Which header count it adds to: images, failed (or expired, missing), waiting."""
        if self.row is None:
            return "images"
        if self.gone is not None or self.row.state in ("failed", "expired"):
            return "failed"
        return "waiting"


@dataclass(frozen=True, slots=True, order=True)
class _Pick:
    """An entry as the selection holds it: its rank (the order) and its item."""

    rank: tuple[int, int, str, int, str]
    item: GalleryItem | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Collection:
    """The entries a page shows (at most its cap, in expansion order) and the totals of all.

    `images`, `failed` (failed, expired, missing) and `waiting` (not run)
    count every entry of the folder (or of the subset), shown or not.
    """

    items: list[GalleryItem]
    images: int
    failed: int
    waiting: int

    @property
    def total(self) -> int:
        """Entries of the folder (or subset), shown or not."""
        return self.images + self.failed + self.waiting


def _ledger_rows(out: Path, jobs: RunJobs | None, prices: Prices) -> Iterator[JobRow]:
    """The rows a report covers (jobinfo.run_rows), read afresh; none without a ledger."""
    if not ledger_path(out).is_file():
        return
    with Ledger.open_readonly(out) as ledger:
        yield from run_rows(ledger.stream_rows(), jobs, prices=prices)


def _entries(
    out: Path, catalog: JobCatalog, jobs: RunJobs | None, prices: Prices, read: SidecarReader
) -> Iterator[_Entry]:
    """Every entry of the folder, streamed: per image, then per ledger job without one.
    Holds 16 bytes per image (DigestSets), nothing else per entry.
    """
    files, keys = DigestSet(), DigestSet()
    for name, sidecar in folder_sidecars(out, read):
        files.add(name)
        keys.add(sidecar.key)
        rank = (1, sidecar.job_index, sidecar.key, sidecar.index, name)
        facts = facts_of_sidecar(sidecar)
        yield _Entry(rank, sidecar.prompt_id, facts, image=name, sidecar=sidecar)
    files.freeze()
    keys.freeze()
    for row in _ledger_rows(out, jobs, prices):
        gone = None
        if row.state == "completed":
            gone = next((name for name in row.files if name not in files), None)
            if gone is None:
                continue
        elif row.key in keys:
            continue  # images of an earlier success are still there: show those
        rank = (0, row.idx, row.key, 0, "")
        yield _Entry(rank, row.prompt_id, catalog.get(row), row=row, gone=gone)


def _first_jobs(
    entries: Iterable[_Entry], limit: int, held_max: int | None, *, details: bool
) -> tuple[Smallest[tuple[int, str]], list[_Entry] | None]:
    """The (order, key) of the first `limit` jobs among `entries` (holding `limit` of
    them), and those jobs' entries with their items made, in walk order: or None when
    they passed `held_max` (None: no bound), for another pass to collect them.

    A job pushed out of the first is never let in again (gallery_select.Smallest), so
    a job that stays has every entry held since its first.
    """
    first: Smallest[tuple[int, str]] = Smallest(limit, distinct=True)
    held: dict[tuple[int, str], list[tuple[int, _Entry]]] | None = {}
    count = 0
    for seq, entry in enumerate(entries):
        job = (entry.rank[1], entry.rank[2])
        dropped = first.offer(job)
        if held is None:
            continue
        if dropped is not None:
            count -= len(held.pop(dropped, ()))
        if job in first:
            made = replace(entry, sidecar=None, made=entry.item(details=details))
            held.setdefault(job, []).append((seq, made))
            count += 1
            if held_max is not None and count > held_max:
                held = None  # more than the cap's worth to hold: the next pass collects them
    if held is None:
        return first, None
    return first, [entry for _, entry in sorted(pair for job in held.values() for pair in job)]


def _choose(
    entries: Iterable[_Entry], cap: int | None, *, details: bool
) -> tuple[list[GalleryItem], dict[str, int]]:
    """The items of the `cap` best of `entries` (gallery_select.Smallest) in expansion
    order, and the counts of all of them by header group.
    """
    kept: Smallest[_Pick] = Smallest(cap)
    counts = {"images": 0, "failed": 0, "waiting": 0}
    for entry in entries:
        if kept.admits(_Pick(entry.rank)):  # an item is made only for an entry kept (now)
            kept.offer(_Pick(entry.rank, entry.item(details=details)))
        counts[entry.group] += 1
    # Shown in expansion order, so the sheet reads like the manifest; the rank chose them.
    picks = sorted(kept.sorted(), key=lambda pick: pick.rank[1:])
    return [pick.item for pick in picks if pick.item is not None], counts


def collect(
    out: Path,
    *,
    jobs: RunJobs | None = None,
    prices: Prices = DEFAULT_PRICES,
    subset: Subset | None = None,
    cap: int | None = GALLERY_MAX_ITEMS,
    details: bool = True,
    read: SidecarReader = read_sidecar,
) -> Collection:
    """The entries of `out` a page shows, in expansion order: at most `cap` (None: all),
    chosen as those that need attention (failed, expired, missing, not run) first, then
    images in job order.

    Streams the sidecars and ledger rows (see `_entries`), keeping only the
    `cap` best (gallery_select.Smallest) and counting the rest; `subset`
    (--filter/--limit) keeps only its jobs' entries (a `--limit` finds its
    first jobs in the same pass, holding their entries up to the cap's worth;
    past that, one more pass collects them). The jobs without images are the
    ledger's, or with `jobs` (jobinfo.RunJobs) exactly those of the run not
    done, estimated with `prices`. `details` False leaves images' detail rows
    out; `read` reads a sidecar (once per pass). Also refreshes
    ``OUT/.gallery/jobs.json``. Raises UsageError when the ledger exists but
    cannot be read.
    """
    catalog = JobCatalog(out, jobs)

    def matching() -> Iterator[_Entry]:
        for entry in _entries(out, catalog, jobs, prices, read):
            if subset is None or subset.matches(entry.prompt_id, facts_values(entry.facts)):
                yield entry

    chosen: Iterable[_Entry] = matching()
    if subset is not None and subset.limit is not None:
        first, held = _first_jobs(chosen, subset.limit, cap, details=details)
        if held is not None:
            chosen = held
        else:
            chosen = (e for e in matching() if (e.rank[1], e.rank[2]) in first)
    items, counts = _choose(chosen, cap, details=details)
    if ledger_path(out).is_file():
        catalog.remember(_ledger_rows(out, jobs, prices))
    return Collection(items=items, **counts)


def collect_items(
    out: Path, *, jobs: RunJobs | None = None, prices: Prices = DEFAULT_PRICES
) -> list[GalleryItem]:
    """Every image under `out` and every job without one, in expansion order (uncapped:
    `runner grid` draws what it is asked for; without detail rows). See `collect`.
    """
    items = collect(out, jobs=jobs, prices=prices, cap=None, details=False).items
    items.sort(key=lambda item: (item.order, item.key, item.image_index))
    return items


def select_items(items: list[GalleryItem], subset: Subset | None) -> list[GalleryItem]:
    """The entries of the jobs in `subset` (the first `limit` jobs by key, in order)."""
    if subset is None:
        return items
    kept = [item for item in items if subset.matches(item.prompt_id, facts_values(item.facts))]
    if subset.limit is None:
        return kept
    keys: dict[str, None] = {}
    for item in kept:
        if item.key not in keys and len(keys) == subset.limit:
            continue
        keys.setdefault(item.key, None)
    return [item for item in kept if item.key in keys]
