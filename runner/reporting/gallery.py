"""``OUT/gallery.html``: a contact sheet of a folder's images, made from what is on disk.

Written after every run and by `runner gallery OUT`. The images come from
their sidecars (a sidecar on disk means its image is whole); failed,
expired and not-run jobs from the ledger, with their reasons, placed in
their cells by the facts `jobinfo.JobCatalog` finds for them.

The grid shows only thumbnails (thumbnails.py: at most 256 pixels, in
``OUT/.gallery/thumbs/``); the full image opens on click.

A page shows at most `GALLERY_MAX_ITEMS` entries, chosen as the sidecars and
ledger rows stream past: memory follows the cap, not the folder, and each
sidecar is read once (with `--limit`, twice when its jobs have more than the
cap's worth of entries). This module builds the page from its parts::

    gallery_items.py    an entry (image or job without one) and its detail rows
    gallery_select.py   the cap, and the bounded selection (a heap, digest sets)
    gallery_collect.py  the walk of the folder and the ledger: the entries shown, the counts
    gallery_data.py     the page's data: the axes and each entry on them
    gallery_page.py     the page itself (HTML, CSS, script, the CSP)
    thumbnails.py       the thumbnails
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from runner.clock import wall_time
from runner.errors import UsageError
from runner.params import DEFAULT_PRICES
from runner.reporting.gallery_collect import (
    Collection,
    SidecarReader,
    collect,
    collect_items,
    folder_sidecars,
    select_items,
)
from runner.reporting.gallery_data import axis_values, page_chunks, page_data, page_json
from runner.reporting.gallery_items import GalleryItem, facts_values, item_values
from runner.reporting.gallery_page import page_frame
from runner.reporting.gallery_select import GALLERY_MAX_ITEMS
from runner.reporting.jobinfo import Prices, RunJobs
from runner.reporting.thumbnails import THUMB_PX, Thumb, make_thumbnails
from runner.store import read_sidecar, utc_stamp
from runner.store.atomic import open_atomic
from runner.subset import Subset

__all__ = [
    "GALLERY_MAX_ITEMS",
    "GALLERY_NAME",
    "Collection",
    "GalleryItem",
    "GalleryResult",
    "SidecarReader",
    "add_thumbnails",
    "axis_values",
    "collect",
    "collect_items",
    "facts_values",
    "folder_sidecars",
    "item_values",
    "page_chunks",
    "page_data",
    "page_json",
    "select_items",
    "write_gallery",
]

GALLERY_NAME: Final = "gallery.html"


@dataclass(frozen=True, slots=True)
class GalleryResult:
    """What `write_gallery` wrote: the page, how many images and other jobs it shows, and
    `total`: the entries of the folder (or subset), shown or not (more than shown: capped).
    """

    path: Path
    images: int
    unfinished: int
    thumbs_made: int
    total: int = 0


def add_thumbnails(
    out: Path, items: list[GalleryItem], *, px: int = THUMB_PX
) -> tuple[list[GalleryItem], int]:
    """Give every image item its thumbnail (see thumbnails.py); returns the items and how
    many thumbnails were made now. An unreadable image gets a reason instead.

    The items are replaced in `items` itself (the list returned), each old one
    dropped as its new one is made: a page's entries are never held twice.
    """
    images = [(item.image, item.sha256) for item in items if item.image and item.sha256]
    made, count = make_thumbnails(out, images, px=px)
    del images
    thumbs = iter(made)  # one per image item, in the items' order
    for at, item in enumerate(items):
        thumb = next(thumbs) if item.image and item.sha256 else None
        if isinstance(thumb, Thumb):
            items[at] = replace(item, thumb=thumb)
        elif isinstance(thumb, str):
            reason = f"no thumbnail: the image cannot be read ({thumb})"
            items[at] = replace(item, reason=reason)
    return items, count


def _meta(out: Path, totals: tuple[int, int, int], shown: int) -> list[tuple[str, str]]:
    """The page header's counts (of every entry, shown or not) and, when the cap left some
    out, how many are shown and the command that shows another part.
    """
    images, failed, waiting = totals
    meta = [(f"{images:,}", "images"), (f"{failed:,}", "failed"), (f"{waiting:,}", "not run")]
    total = images + failed + waiting
    if shown < total:
        command = shlex.join(["runner", "gallery", str(out)])
        meta.append(
            (
                f"showing {shown:,} of {total:,}",
                "entries (those that need attention first, then images in job order); "
                f"`{command} --filter EXPR` (a prompt id glob or NAME=GLOB) shows another part",
            )
        )
    return meta


def _title(out: Path, items: list[GalleryItem]) -> str:
    """The manifest's name as an entry's details state it (of images, the first's only:
    their details are held as text, decoded once, not per image), else the folder's name.
    """
    decoded_one = False
    for item in items:
        if item.details_json is not None:
            if decoded_one:
                continue
            decoded_one = True
            details = tuple(json.loads(item.details_json))
        else:
            details = item.details
        for name, value in details:
            if name == "manifest":
                return Path(value).stem
    return out.resolve().name


def write_gallery(
    out: Path,
    *,
    jobs: RunJobs | None = None,
    prices: Prices = DEFAULT_PRICES,
    title: str | None = None,
    thumb_px: int = THUMB_PX,
    now: float | None = None,
    subset: Subset | None = None,
    cap: int = GALLERY_MAX_ITEMS,
    read: SidecarReader = read_sidecar,
) -> GalleryResult:
    """Write ``OUT/gallery.html`` (and thumbnails) for the folder `out`.

    `jobs` are the run's jobs (see jobinfo.RunJobs), so failed and unrun
    jobs land in their cells (without them, the ledger's jobs, placed by
    facts an earlier run remembered); `prices` estimate unrun jobs (USD);
    `title` defaults to the manifest's name; `thumb_px` is the thumbnails'
    longest side in pixels; `now` wall-clock epoch seconds for the page's
    stamp; `subset` (--filter/--limit) keeps only those jobs' entries;
    `cap` is the most entries shown (see GALLERY_MAX_ITEMS; the header
    counts the others); `read` reads one sidecar (gallery_collect.SidecarReader).
    Raises UsageError (`out` is not a folder, or its ledger is unreadable)
    or StoreError (cannot write).
    """
    if not out.is_dir():
        raise UsageError(f"{out} is not a folder; pass the output folder of a run (its --out)")
    found = collect(out, jobs=jobs, prices=prices, subset=subset, cap=cap, read=read)
    totals = (found.images, found.failed, found.waiting)
    items, made = add_thumbnails(out, found.items, px=thumb_px)
    del found  # its items are `items` now
    images = sum(1 for item in items if item.state == "completed")
    meta = _meta(out, totals, len(items))
    meta.append(("made", utc_stamp(wall_time() if now is None else now)))
    page_title = title or _title(out, items)
    shown = len(items)
    path = out / GALLERY_NAME
    before, after = page_frame(f"{page_title} · runner gallery")
    # Written entry by entry: the page (~1 KB an entry) is never whole in memory,
    # and each entry is dropped as its text is written (page_chunks empties `items`).
    with open_atomic(path) as file:
        file.write(before.encode("utf-8"))
        for chunk in page_chunks(items, title=page_title, meta=meta):
            file.write(chunk.encode("utf-8"))
        file.write(after.encode("utf-8"))
    return GalleryResult(
        path=path, images=images, unfinished=shown - images, thumbs_made=made,
        total=totals[0] + totals[1] + totals[2],
    )  # fmt: skip
