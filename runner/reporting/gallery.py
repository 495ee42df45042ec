"""``OUT/gallery.html``: a contact sheet of a folder's images, made from what is on disk.

Written after every run and by `runner gallery OUT`. The images come from
their sidecars (a sidecar on disk means its image is whole); failed,
expired and not-run jobs from the ledger, with their reasons, placed in
their cells by the facts `jobinfo.JobCatalog` finds for them.

The grid shows only thumbnails (thumbnails.py: at most 256 pixels, in
``OUT/.gallery/thumbs/``); the full image opens on click.

A page shows at most `GALLERY_MAX_ITEMS` entries, chosen as the sidecars and
ledger rows stream past (`collect`): memory follows the cap, not the folder.

The page itself (HTML, CSS, script) is gallery_page.py; this module builds
its data: the axes a user may lay out along rows and columns (prompt id,
each template var, each request param and the repeat index that take two
or more values) and one item per image or unfinished job.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from runner.clock import wall_time
from runner.errors import StoreError, UsageError
from runner.money import format_usd
from runner.params import DEFAULT_PRICES, PARAM_NAMES
from runner.reporting.gallery_page import embed_json, render_embedded
from runner.reporting.gallery_select import DigestSet, Smallest
from runner.reporting.jobinfo import (
    JobCatalog,
    JobFacts,
    Prices,
    RunJobs,
    facts_of_sidecar,
    key8,
    run_rows,
)
from runner.reporting.summary import money
from runner.reporting.thumbnails import THUMB_PX, Thumb, make_thumbnails
from runner.store import (
    EXTENSIONS,
    JobRow,
    Ledger,
    Sidecar,
    ledger_path,
    read_sidecar,
    relative_name,
    sidecar_path,
    utc_stamp,
    write_atomic,
)
from runner.subset import Subset

GALLERY_NAME: Final = "gallery.html"
GALLERY_MAX_ITEMS: Final = 10_000
"""At most this many entries on one page (images and jobs without one).

A contact sheet of 100,000 images helps nobody and no browser lays it out;
above the cap the page shows the entries that need attention first, then
images in job order, and its header says how to see another part
(`runner gallery OUT --filter ...`). Only entries shown get thumbnails,
and writing the page holds memory for the cap's entries, not the folder's.
"""
_NOT_RUN: Final = {
    "planned": "not run yet (the run stopped before it, or it was never reached)",
    "submitting": "its submit was not confirmed; the next run retries it",
    "submitted": "in flight on the server; run again within the hour to fetch it",
}
_EXPIRED: Final = "the result expired on the server (kept 1 hour) before it was fetched"


@dataclass(frozen=True, slots=True)
class GalleryItem:
    """One entry of the sheet: an image, or a job that has none (with the reason).

    `state` is the ledger's (``completed`` for images) or ``missing`` (the
    ledger says completed but the files are gone); `image` is the image's
    path relative to OUT; `sha256` its digest (names the thumbnail).
    """

    key: str
    state: str
    order: int
    prompt_id: str
    facts: JobFacts | None
    image_index: int = 0
    image: str | None = None
    sha256: str | None = None
    thumb: Thumb | None = None
    reason: str | None = None
    details: tuple[tuple[str, str], ...] = ()
    lazy: bool = False  # details come from the image's sidecar when the page is written


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


# -- collecting ---------------------------------------------------------------------------------


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f} s"


def _image_details(sidecar: Sidecar) -> tuple[tuple[str, str], ...]:
    p, t, c, f = sidecar.params, sidecar.timings, sidecar.credits, sidecar.file
    rows: list[tuple[str, str | None]] = [
        ("prompt", sidecar.prompt),
        ("prompt id", sidecar.prompt_id),
        ("image", f"{sidecar.index + 1} of {sidecar.n}"),
        ("mode", p.mode),
        ("aspect ratio", p.aspect_ratio),
        ("resolution", p.resolution),
        ("output format", p.output_format),
        ("input image", p.image.source or f"sha256 {p.image.sha256}" if p.image else None),
        *((f"var {name}", value) for name, value in sidecar.vars.items()),
        ("repeat", str(sidecar.repeat)),
        ("request id", sidecar.request_id),
        ("submitted", t.submitted_at),
        ("completed", t.completed_at),
        ("queue", _seconds(t.queue_s)),
        ("inference", _seconds(t.inference_s)),
        ("wall", _seconds(t.wall_s)),
        ("credits est.", money(c.estimated_usd)),
        ("credits charged", money(c.charged_usd) if c.charged_usd is not None else "not reported"),
        ("file", f.name),
        ("size", f"{f.width} x {f.height} px, {f.bytes:,} bytes, {f.format}"),
        ("sha256", f.sha256),
        ("seed", str(sidecar.seed) if sidecar.seed is not None else None),
        ("backend", f"{sidecar.backend.name} {sidecar.backend.base_url}"),
        ("model", f"{sidecar.model} ({sidecar.endpoint})"),
        ("manifest", sidecar.manifest.path if sidecar.manifest else None),
        ("job key", sidecar.key),
        ("runner", sidecar.runner_version),
    ]
    return tuple((name, value) for name, value in rows if value is not None)


def _row_details(row: JobRow, facts: JobFacts | None, reason: str) -> tuple[tuple[str, str], ...]:
    rows: list[tuple[str, str | None]] = [
        ("state", row.state),
        ("reason", reason),
        ("prompt", facts.prompt if facts else None),
        ("prompt id", row.prompt_id),
        *((name.replace("_", " "), str(value)) for name, value in (facts.params if facts else ())),
        ("input image", facts.image if facts else None),
        *((f"var {name}", value) for name, value in (facts.vars if facts else ())),
        ("repeat", str(facts.repeat) if facts else None),
        ("request id", row.request_id),
        ("submitted", utc_stamp(row.submitted_at) if row.submitted_at else None),
        ("attempts", str(row.attempts)),
        ("ambiguous submits", str(row.ambiguous) if row.ambiguous else None),
        ("credits est.", format_usd(row.estimate)),
        ("updated", utc_stamp(row.updated_at) if row.updated_at else None),
        ("job key", row.key),
    ]
    return tuple((name, value) for name, value in rows if value is not None)


def folder_sidecars(out: Path) -> Iterator[tuple[str, Sidecar]]:
    """(image name relative to OUT, its sidecar) for every valid pair, skipping hidden folders."""
    for folder, dirs, files in os.walk(out):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = set(files)
        for name in sorted(files):
            if name.startswith(".") or not name.endswith(".json"):
                continue
            path = Path(folder) / name
            try:
                sidecar = read_sidecar(path)
            except (ValueError, StoreError):
                continue  # summary.json, or a broken sidecar: `runner verify` reports those
            # The image is the sidecar's sibling: a path in the JSON is not trusted.
            image = f"{name[: -len('.json')]}.{EXTENSIONS[sidecar.file.format]}"
            if image in names:
                yield relative_name(out, Path(folder) / image), sidecar


@dataclass(frozen=True, slots=True, order=True)
class _Pick:
    """An entry as the selection holds it: its rank and where to read it again (~200 bytes).

    `rank` is (0 needs attention / 1 an image, job order, key, image index):
    unique per entry, so the smallest ranks are the entries a capped page shows.
    """

    rank: tuple[int, int, str, int]
    image: str | None = field(default=None, compare=False)  # name relative to OUT
    row: JobRow | None = field(default=None, compare=False)
    gone: str | None = field(default=None, compare=False)  # a completed row's missing file


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


def facts_values(facts: JobFacts | None) -> dict[str, str]:
    """A job's params, input image and vars as text, as a `--filter` compares them."""
    if facts is None:
        return {}
    values = {name: str(value) for name, value in facts.params}
    if facts.image is not None:
        values["image"] = facts.image
    values.update(facts.vars)
    return values


def item_values(item: GalleryItem) -> dict[str, str]:
    """An entry's params, input image and vars as text, as a `--filter` compares them."""
    return facts_values(item.facts)


def _ledger_rows(out: Path, jobs: RunJobs | None, prices: Prices) -> Iterator[JobRow]:
    """The rows a report covers (jobinfo.run_rows), read afresh; none without a ledger."""
    if not ledger_path(out).is_file():
        return
    with Ledger.open_readonly(out) as ledger:
        yield from run_rows(ledger.stream_rows(), jobs, prices=prices)


def _entries(
    out: Path, catalog: JobCatalog, jobs: RunJobs | None, prices: Prices
) -> Iterator[tuple[_Pick, str, JobFacts | None]]:
    """Every entry of the folder, streamed: (pick, prompt id, facts) per image, then per
    ledger job without one. Holds 16 bytes per image (DigestSets), nothing else per entry.
    """
    files, keys = DigestSet(), DigestSet()
    for name, sidecar in folder_sidecars(out):
        files.add(name)
        keys.add(sidecar.key)
        rank = (1, sidecar.job_index, sidecar.key, sidecar.index)
        yield _Pick(rank, image=name), sidecar.prompt_id, facts_of_sidecar(sidecar)
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
        yield _Pick((0, row.idx, row.key, 0), row=row, gone=gone), row.prompt_id, catalog.get(row)


def _row_item(row: JobRow, gone: str | None, catalog: JobCatalog) -> GalleryItem:
    """The entry of a ledger job without its images: its state and why."""
    if gone is not None:
        state = "missing"
        reason = (
            f"the ledger says completed, but {gone} or its sidecar is gone or invalid; "
            "run `runner verify` on the folder"
        )
    else:
        state = row.state
        if row.state == "failed":
            reason = row.reason or "failed (no reason recorded)"
        elif row.state == "expired":
            reason = row.reason or _EXPIRED
        else:
            reason = _NOT_RUN[row.state]
    facts = catalog.get(row)
    return GalleryItem(
        key=row.key,
        state=state,
        order=row.idx,
        prompt_id=row.prompt_id,
        facts=facts,
        reason=reason,
        details=_row_details(row, facts, reason),
    )


def _image_item(out: Path, name: str) -> GalleryItem | None:
    """The entry of an image, from its sidecar read again (None if it is gone since)."""
    try:
        sidecar = read_sidecar(sidecar_path(out / name))
    except (ValueError, StoreError):
        return None
    return GalleryItem(
        key=sidecar.key,
        state="completed",
        order=sidecar.job_index,
        prompt_id=sidecar.prompt_id,
        facts=facts_of_sidecar(sidecar),
        image_index=sidecar.index,
        image=name,
        sha256=sidecar.file.sha256,
        # Details are read again as the page is written (`_details`): they are most of an
        # entry's memory (~3.5 KB of 5), and the page holds them as text instead.
        lazy=True,
    )


def _details(out: Path | None, item: GalleryItem) -> tuple[tuple[str, str], ...]:
    """An entry's detail rows: its own, or for a `lazy` image its sidecar's, read now."""
    if not item.lazy or out is None or item.image is None:
        return item.details
    try:
        return _image_details(read_sidecar(sidecar_path(out / item.image)))
    except (ValueError, StoreError):
        return item.details  # gone since it was collected: the page shows the rest


def _group(pick: _Pick) -> str:
    """Which header count an entry adds to: images, failed (or expired, missing), waiting."""
    if pick.row is None:
        return "images"
    if pick.gone is not None or pick.row.state in ("failed", "expired"):
        return "failed"
    return "waiting"


def _first_jobs(
    out: Path, catalog: JobCatalog, jobs: RunJobs | None, prices: Prices, subset: Subset | None
) -> Smallest[tuple[int, str]] | None:
    """With a `--limit N`, the (order, key) of the first N jobs with entries in the subset
    (one pass over the entries, holding N of them); else None.
    """
    if subset is None or subset.limit is None:
        return None
    first: Smallest[tuple[int, str]] = Smallest(subset.limit, distinct=True)
    for pick, prompt_id, facts in _entries(out, catalog, jobs, prices):
        if subset.matches(prompt_id, facts_values(facts)):
            first.offer((pick.rank[1], pick.rank[2]))
    return first


def collect(
    out: Path,
    *,
    jobs: RunJobs | None = None,
    prices: Prices = DEFAULT_PRICES,
    subset: Subset | None = None,
    cap: int | None = GALLERY_MAX_ITEMS,
) -> Collection:
    """The entries of `out` a page shows, in expansion order: at most `cap` (None: all),
    chosen as those that need attention (failed, expired, missing, not run) first, then
    images in job order.

    Streams the sidecars and ledger rows (see `_entries`), keeping only the
    `cap` best (gallery_select.Smallest) and counting the rest; `subset`
    (--filter/--limit) keeps only its jobs' entries (a `--limit` takes one
    more pass to find its first jobs). The jobs without images are the
    ledger's, or with `jobs` (jobinfo.RunJobs) exactly those of the run not
    done, estimated with `prices`. Also refreshes ``OUT/.gallery/jobs.json``.
    Raises UsageError when the ledger exists but cannot be read.
    """
    catalog = JobCatalog(out, jobs)
    allowed = _first_jobs(out, catalog, jobs, prices, subset)
    kept: Smallest[_Pick] = Smallest(cap)
    counts = {"images": 0, "failed": 0, "waiting": 0}
    for pick, prompt_id, facts in _entries(out, catalog, jobs, prices):
        if subset is not None and not subset.matches(prompt_id, facts_values(facts)):
            continue
        if allowed is not None and (pick.rank[1], pick.rank[2]) not in allowed:
            continue
        kept.offer(pick)
        counts[_group(pick)] += 1
    items: list[GalleryItem] = []
    # Shown in expansion order, so the sheet reads like the manifest; the rank chose them.
    for pick in sorted(kept.sorted(), key=lambda pick: pick.rank[1:]):
        if pick.row is not None:
            items.append(_row_item(pick.row, pick.gone, catalog))
        elif pick.image is not None and (item := _image_item(out, pick.image)) is not None:
            items.append(item)
    if ledger_path(out).is_file():
        catalog.remember(_ledger_rows(out, jobs, prices))
    return Collection(items=items, **counts)


def collect_items(
    out: Path, *, jobs: RunJobs | None = None, prices: Prices = DEFAULT_PRICES
) -> list[GalleryItem]:
    """Every image under `out` and every job without one, in expansion order (uncapped:
    `runner grid` draws what it is asked for). See `collect`.
    """
    items = collect(out, jobs=jobs, prices=prices, cap=None).items
    items.sort(key=lambda item: (item.order, item.key, item.image_index))
    return items


def select_items(items: list[GalleryItem], subset: Subset | None) -> list[GalleryItem]:
    """The entries of the jobs in `subset` (the first `limit` jobs by key, in order)."""
    if subset is None:
        return items
    kept = [item for item in items if subset.matches(item.prompt_id, item_values(item))]
    if subset.limit is None:
        return kept
    keys: dict[str, None] = {}
    for item in kept:
        if item.key not in keys and len(keys) == subset.limit:
            continue
        keys.setdefault(item.key, None)
    return [item for item in kept if item.key in keys]


def add_thumbnails(
    out: Path, items: list[GalleryItem], *, px: int = THUMB_PX
) -> tuple[list[GalleryItem], int]:
    """Give every image item its thumbnail (see thumbnails.py); returns the items and how
    many thumbnails were made now. An unreadable image gets a reason instead.
    """
    images = [(item.image, item.sha256) for item in items if item.image and item.sha256]
    made, count = make_thumbnails(out, images, px=px)
    done = dict(zip(images, made, strict=True))
    result = []
    for item in items:
        thumb = done.get((item.image, item.sha256)) if item.image and item.sha256 else None
        if isinstance(thumb, Thumb):
            result.append(replace(item, thumb=thumb))
        elif isinstance(thumb, str):
            reason = f"no thumbnail: the image cannot be read ({thumb})"
            result.append(replace(item, reason=reason))
        else:
            result.append(item)
    return result, count


# -- the page's data ----------------------------------------------------------------------------


def axis_values(item: GalleryItem) -> dict[str, str]:
    """The axis ids of an entry and its value on each: prompt, var:NAME, params, repeat."""
    facts = item.facts
    values = {"prompt": item.prompt_id}
    if facts is None:
        return values
    values.update((f"var:{name}", value) for name, value in facts.vars)
    values.update((name, str(value)) for name, value in facts.params)
    values["repeat"] = str(facts.repeat)
    return values


def _axis_order(items: list[GalleryItem]) -> list[str]:
    """Axis ids: prompt, vars (first seen), swept params (first seen), other params, repeat."""
    order: dict[str, None] = {"prompt": None}
    for item in items:
        if item.facts is not None:
            order.update((f"var:{name}", None) for name, _ in item.facts.vars)
    for item in items:
        if item.facts is not None:
            order.update((name, None) for name, _ in item.facts.sweep if name in PARAM_NAMES)
    order.update((name, None) for name in PARAM_NAMES)
    order["repeat"] = None
    return list(order)


def _url(name: str) -> str:
    return quote(name, safe="/")


def _layout(items: list[GalleryItem], *, title: str, meta: list[tuple[str, str]]) -> Any:
    """The page's data but its items: title, meta, axes with two or more values, the
    default rows and columns.
    """
    values = [axis_values(item) for item in items]
    axes: list[dict[str, Any]] = []
    for axis in _axis_order(items):
        seen = dict.fromkeys(v.get(axis, "") for v in values)
        if len(seen) >= 2:
            label = axis.removeprefix("var:")
            if axis.startswith("var:") and label in (*PARAM_NAMES, "prompt", "repeat"):
                label = f"var {label}"
            axes.append({"id": axis, "label": label, "values": list(seen)})
    swept = {name for item in items if item.facts for name, _ in item.facts.sweep}
    ids = [axis["id"] for axis in axes]
    cols = next((a for a in ids if a in swept), None) or next(
        (a for a in ids if a.startswith("var:")), None
    )
    rest = [a for a in ids if a not in (cols, "repeat")]
    rows = "prompt" if "prompt" in rest else (rest[0] if rest else None)
    if cols is None and rows is not None:
        cols = next((a for a in ids if a not in (rows, "repeat")), None)
    return {"title": title, "meta": meta, "axes": axes, "rows": rows or "", "cols": cols or ""}


def _page_item(
    item: GalleryItem,
    axes: list[dict[str, Any]],
    index: list[dict[str, int]],
    out: Path | None = None,
) -> Any:
    """One entry as the page reads it (`a`: its value's index on each axis); `out` is the
    folder a `lazy` entry's sidecar is read from.
    """
    values = axis_values(item)
    label = item.facts.label() if item.facts else f"job {item.order} [{key8(item.key)}]"
    if item.facts is not None and dict(item.facts.params).get("n", 1) != 1:
        label += f" image {item.image_index + 1}"
    return {
        "k": item.key,
        "s": item.state,
        "i": item.image_index,
        "a": [index[a][values.get(axis["id"], "")] for a, axis in enumerate(axes)],
        "t": _url(item.thumb.name) if item.thumb else None,
        "tw": item.thumb.width if item.thumb else None,
        "th": item.thumb.height if item.thumb else None,
        "f": _url(item.image) if item.image else None,
        "r": item.reason,
        "l": label,
        "p": item.facts.prompt if item.facts else "",
        "d": _details(out, item),  # pairs: JSON arrays, without a copy as lists
    }


def _indexes(axes: list[dict[str, Any]]) -> list[dict[str, int]]:
    return [{value: i for i, value in enumerate(axis["values"])} for axis in axes]


def page_data(
    items: list[GalleryItem],
    *,
    title: str,
    meta: list[tuple[str, str]],
    out: Path | None = None,
) -> Any:
    """The JSON the page reads: axes with two or more values, and the items (`out`: the
    folder `lazy` entries' details are read from).
    """
    data = _layout(items, title=title, meta=meta)
    index = _indexes(data["axes"])
    data["items"] = [_page_item(item, data["axes"], index, out) for item in items]
    return data


def page_json(
    items: list[GalleryItem], *, title: str, meta: list[tuple[str, str]], out: Path
) -> str:
    """`page_data` as the page embeds it (gallery_page.embed_json), built entry by entry.

    Consumes `items` (the list is empty after): each entry is dropped as its
    JSON is made, so the page's text (~1 KB an entry) replaces the entries
    (~5 KB each) instead of adding to them.
    """
    data = _layout(items, title=title, meta=meta)
    axes, index = data["axes"], _indexes(data["axes"])
    data["items"] = []
    head = embed_json(data)
    empty = '"items":[]}'
    assert head.endswith(empty)  # dict order puts the items last
    items.reverse()
    parts = []
    while items:
        parts.append(embed_json(_page_item(items.pop(), axes, index, out)))
    return f'{head[: -len(empty)]}"items":[{",".join(parts)}]}}'


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
    """The manifest's name as an entry's details state it (of `lazy` ones, the first's
    sidecar only: read once, not per image), else the folder's name.
    """
    read_one = False
    for item in items:
        if item.lazy:
            if read_one:
                continue
            read_one = True
        for name, value in _details(out, item):
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
) -> GalleryResult:
    """Write ``OUT/gallery.html`` (and thumbnails) for the folder `out`.

    `jobs` are the run's jobs (see jobinfo.RunJobs), so failed and unrun
    jobs land in their cells (without them, the ledger's jobs, placed by
    facts an earlier run remembered); `prices` estimate unrun jobs (USD);
    `title` defaults to the manifest's name; `thumb_px` is the thumbnails'
    longest side in pixels; `now` wall-clock epoch seconds for the page's
    stamp; `subset` (--filter/--limit) keeps only those jobs' entries;
    `cap` is the most entries shown (see GALLERY_MAX_ITEMS; the header
    counts the others). Raises UsageError (`out` is not a folder, or its ledger is unreadable)
    or StoreError (cannot write).
    """
    if not out.is_dir():
        raise UsageError(f"{out} is not a folder; pass the output folder of a run (its --out)")
    found = collect(out, jobs=jobs, prices=prices, subset=subset, cap=cap)
    totals = (found.images, found.failed, found.waiting)
    items, made = add_thumbnails(out, found.items, px=thumb_px)
    del found  # the items with thumbnails replace these
    images = sum(1 for item in items if item.state == "completed")
    meta = _meta(out, totals, len(items))
    meta.append(("made", utc_stamp(wall_time() if now is None else now)))
    page_title = title or _title(out, items)
    shown = len(items)
    data = page_json(items, title=page_title, meta=meta, out=out)  # empties `items`
    path = out / GALLERY_NAME
    page = render_embedded(f"{page_title} · runner gallery", data)
    del data
    write_atomic(path, page.encode("utf-8"))
    return GalleryResult(
        path=path, images=images, unfinished=shown - images, thumbs_made=made,
        total=totals[0] + totals[1] + totals[2],
    )  # fmt: skip
