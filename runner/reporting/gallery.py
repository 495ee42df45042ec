"""``OUT/gallery.html``: a contact sheet of a folder's images, made from what is on disk.

Written after every run and by `runner gallery OUT`. The images come from
their sidecars (a sidecar on disk means its image is whole); failed,
expired and not-run jobs from the ledger, with their reasons, placed in
their cells by the facts `jobinfo.JobCatalog` finds for them.

The grid shows only thumbnails (thumbnails.py: at most 256 pixels, in
``OUT/.gallery/thumbs/``); the full image opens on click.

The page itself (HTML, CSS, script) is gallery_page.py; this module builds
its data: the axes a user may lay out along rows and columns (prompt id,
each template var, each request param and the repeat index that take two
or more values) and one item per image or unfinished job.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from runner.clock import wall_time
from runner.errors import StoreError, UsageError
from runner.money import format_usd
from runner.params import DEFAULT_PRICES, PARAM_NAMES
from runner.reporting.gallery_page import render_page
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
    utc_stamp,
    write_atomic,
)
from runner.subset import Subset

GALLERY_NAME: Final = "gallery.html"
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


@dataclass(frozen=True, slots=True)
class GalleryResult:
    """What `write_gallery` wrote: the page, and how many images and other jobs it shows."""

    path: Path
    images: int
    unfinished: int
    thumbs_made: int


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


def collect_items(
    out: Path, *, jobs: RunJobs | None = None, prices: Prices = DEFAULT_PRICES
) -> list[GalleryItem]:
    """Every image under `out` and every job without one, in expansion order.

    The jobs without images are the ledger's, or with `jobs` (the run's, see
    jobinfo.RunJobs) exactly those of the run not done, estimated with
    `prices`. Also refreshes ``OUT/.gallery/jobs.json`` (see jobinfo).
    Raises UsageError when the ledger exists but cannot be read.
    """
    items: list[GalleryItem] = []
    seen_keys: set[str] = set()
    seen_files: set[str] = set()
    for name, sidecar in folder_sidecars(out):
        seen_keys.add(sidecar.key)
        seen_files.add(name)
        facts = facts_of_sidecar(sidecar)
        items.append(
            GalleryItem(
                key=sidecar.key,
                state="completed",
                order=sidecar.job_index,
                prompt_id=sidecar.prompt_id,
                facts=facts,
                image_index=sidecar.index,
                image=name,
                sha256=sidecar.file.sha256,
                details=_image_details(sidecar),
            )
        )
    if ledger_path(out).is_file():
        with Ledger.open_readonly(out) as ledger:
            rows = run_rows(ledger.rows(), jobs, prices=prices)
        catalog = JobCatalog(out, jobs)
        items += _unfinished(rows, catalog, seen_keys, seen_files)
        catalog.remember(rows)
    items.sort(key=lambda item: (item.order, item.key, item.image_index))
    return items


def item_values(item: GalleryItem) -> dict[str, str]:
    """An entry's params, input image and vars as text, as a `--filter` compares them."""
    facts = item.facts
    if facts is None:
        return {}
    values = {name: str(value) for name, value in facts.params}
    if facts.image is not None:
        values["image"] = facts.image
    values.update(facts.vars)
    return values


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


def _unfinished(
    rows: Iterable[JobRow], catalog: JobCatalog, seen_keys: set[str], seen_files: set[str]
) -> Iterator[GalleryItem]:
    for row in rows:
        if row.state == "completed":
            gone = [name for name in row.files if name not in seen_files]
            if not gone:
                continue
            state = "missing"
            reason = (
                f"the ledger says completed, but {gone[0]} or its sidecar is gone or invalid; "
                "run `runner verify` on the folder"
            )
        elif row.key in seen_keys:
            continue  # images of an earlier success are still there: show those
        else:
            state = row.state
            if row.state == "failed":
                reason = row.reason or "failed (no reason recorded)"
            elif row.state == "expired":
                reason = row.reason or _EXPIRED
            else:
                reason = _NOT_RUN[row.state]
        facts = catalog.get(row)
        yield GalleryItem(
            key=row.key,
            state=state,
            order=row.idx,
            prompt_id=row.prompt_id,
            facts=facts,
            reason=reason,
            details=_row_details(row, facts, reason),
        )


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


def page_data(items: list[GalleryItem], *, title: str, meta: list[tuple[str, str]]) -> Any:
    """The JSON the page reads: axes with two or more values, and the items."""
    values = [axis_values(item) for item in items]
    axes: list[dict[str, Any]] = []
    for axis in _axis_order(items):
        seen = dict.fromkeys(v.get(axis, "") for v in values)
        if len(seen) >= 2:
            label = axis.removeprefix("var:")
            if axis.startswith("var:") and label in (*PARAM_NAMES, "prompt", "repeat"):
                label = f"var {label}"
            axes.append({"id": axis, "label": label, "values": list(seen)})
    index = [{value: i for i, value in enumerate(axis["values"])} for axis in axes]
    swept = {name for item in items if item.facts for name, _ in item.facts.sweep}
    ids = [axis["id"] for axis in axes]
    cols = next((a for a in ids if a in swept), None) or next(
        (a for a in ids if a.startswith("var:")), None
    )
    rest = [a for a in ids if a not in (cols, "repeat")]
    rows = "prompt" if "prompt" in rest else (rest[0] if rest else None)
    if cols is None and rows is not None:
        cols = next((a for a in ids if a not in (rows, "repeat")), None)
    out_items = []
    for item, item_values in zip(items, values, strict=True):
        label = item.facts.label() if item.facts else f"job {item.order} [{key8(item.key)}]"
        if item.facts is not None and dict(item.facts.params).get("n", 1) != 1:
            label += f" image {item.image_index + 1}"
        out_items.append(
            {
                "k": item.key,
                "s": item.state,
                "i": item.image_index,
                "a": [index[a][item_values.get(axis["id"], "")] for a, axis in enumerate(axes)],
                "t": _url(item.thumb.name) if item.thumb else None,
                "tw": item.thumb.width if item.thumb else None,
                "th": item.thumb.height if item.thumb else None,
                "f": _url(item.image) if item.image else None,
                "r": item.reason,
                "l": label,
                "p": item.facts.prompt if item.facts else "",
                "d": [list(pair) for pair in item.details],
            }
        )
    return {
        "title": title,
        "meta": meta,
        "axes": axes,
        "rows": rows or "",
        "cols": cols or "",
        "items": out_items,
    }


def _title(out: Path, items: list[GalleryItem]) -> str:
    for item in items:
        for name, value in item.details:
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
) -> GalleryResult:
    """Write ``OUT/gallery.html`` (and thumbnails) for the folder `out`.

    `jobs` are the run's jobs (see jobinfo.RunJobs), so failed and unrun
    jobs land in their cells (without them, the ledger's jobs, placed by
    facts an earlier run remembered); `prices` estimate unrun jobs (USD);
    `title` defaults to the manifest's name; `thumb_px` is the thumbnails'
    longest side in pixels; `now` wall-clock epoch seconds for the page's
    stamp; `subset` (--filter/--limit) keeps only those jobs' entries.
    Raises UsageError (`out` is not a folder, or its ledger is unreadable)
    or StoreError (cannot write).
    """
    if not out.is_dir():
        raise UsageError(f"{out} is not a folder; pass the output folder of a run (its --out)")
    items = select_items(collect_items(out, jobs=jobs, prices=prices), subset)
    items, made = add_thumbnails(out, items, px=thumb_px)
    images = sum(1 for item in items if item.state == "completed")
    failed = sum(1 for item in items if item.state in ("failed", "expired", "missing"))
    waiting = len(items) - images - failed
    meta = [(f"{images:,}", "images"), (f"{failed:,}", "failed"), (f"{waiting:,}", "not run")]
    meta.append(("made", utc_stamp(wall_time() if now is None else now)))
    page_title = title or _title(out, items)
    data = page_data(items, title=page_title, meta=meta)
    path = out / GALLERY_NAME
    write_atomic(path, render_page(f"{page_title} · runner gallery", data).encode("utf-8"))
    return GalleryResult(path=path, images=images, unfinished=len(items) - images, thumbs_made=made)
