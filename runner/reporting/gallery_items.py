"""The gallery's entries: one per image (from its sidecar) or per job without one (its row).

Values and the pure functions that make them; no file is read here. An
image's entry is made from the one read of its sidecar (gallery_collect.py
hands it over), its detail rows kept as the page's JSON text
(`GalleryItem.details_json`): they are most of an entry's memory as tuples
(~3.5 KB of 5), about a third of that as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from runner.money import format_usd
from runner.reporting.gallery_page import embed_json
from runner.reporting.jobinfo import JobFacts
from runner.reporting.summary import money
from runner.reporting.thumbnails import Thumb
from runner.store import JobRow, Sidecar, utc_stamp

Details = tuple[tuple[str, str], ...]
"""An entry's detail rows: (name, value) pairs, in the order the page lists them."""

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
    `details_json`, when set, holds the detail rows as `embed_json` text
    (an image's, from its sidecar) in place of `details`.
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
    details: Details = ()
    details_json: str | None = None

    def detail_rows(self) -> Details:
        """The detail rows, whichever way they are held."""
        if self.details_json is None:
            return self.details
        return tuple((name, value) for name, value in json.loads(self.details_json))


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


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f} s"


def image_details(sidecar: Sidecar) -> Details:
    """The detail rows of an image, from its sidecar."""
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


def _row_details(row: JobRow, facts: JobFacts | None, reason: str) -> Details:
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


def row_item(row: JobRow, gone: str | None, facts: JobFacts | None) -> GalleryItem:
    """The entry of a ledger job without its images (`gone`: a completed row's missing
    file), with the `facts` known of it: its state and why.
    """
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
    return GalleryItem(
        key=row.key,
        state=state,
        order=row.idx,
        prompt_id=row.prompt_id,
        facts=facts,
        reason=reason,
        details=_row_details(row, facts, reason),
    )


def image_item(
    name: str, sidecar: Sidecar, facts: JobFacts, *, details: bool = True
) -> GalleryItem:
    """The entry of image `name` (relative to OUT) from its sidecar and the `facts` of its
    job (jobinfo.facts_of_sidecar); `details` False leaves its detail rows out (a grid
    draws none).
    """
    return GalleryItem(
        key=sidecar.key,
        state="completed",
        order=sidecar.job_index,
        prompt_id=facts.prompt_id,  # the facts' shared copy
        facts=facts,
        image_index=sidecar.index,
        image=name,
        sha256=sidecar.file.sha256,
        details_json=embed_json(image_details(sidecar)) if details else None,
    )
