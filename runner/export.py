"""`runner export OUT --csv|--jsonl`: one row per image of an output folder, for pipelines.

The rows are read from the images' JSON sidecars (the same walk the gallery
makes: a sidecar counts only beside its image, hidden folders are skipped),
in expansion order. Each row holds the job key, prompt id and text, params,
vars, the image file (relative to OUT) with its sha256, size and pixels, the
credits, the API's request id and the timings. Credits in a sidecar are the
whole request's (all n images); `credits_usd` is this image's share of the
charged amount (the estimate when none was reported), so a column sum is the
folder's spend. Rows are written as they are read.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal, TextIO

from runner.errors import UsageError
from runner.reporting.gallery import folder_sidecars
from runner.store.sidecar import Sidecar
from runner.subset import Subset

ExportFormat = Literal["csv", "jsonl"]

COLUMNS: Final = (
    "key",
    "job_index",
    "prompt_id",
    "image_index",
    "prompt",
    "params",
    "vars",
    "file",
    "sha256",
    "bytes",
    "width",
    "height",
    "format",
    "credits_usd",
    "job_estimated_usd",
    "job_charged_usd",
    "request_id",
    "submitted_at",
    "completed_at",
    "queue_s",
    "inference_s",
    "wall_s",
)
"""The export's columns, in order (CSV header; JSON Lines keys)."""


def export_rows(out: Path, subset: Subset | None = None) -> Iterator[dict[str, Any]]:
    """One dict per image under `out` (in expansion order), with the `COLUMNS` keys.

    `subset` keeps the images of matching jobs (its `limit` counts jobs).
    Raises UsageError when `out` is not a folder.
    """
    if not out.is_dir():
        raise UsageError(f"{out} is not a folder; pass the output folder of a run (its --out)")
    return _rows(out, subset)


def _rows(out: Path, subset: Subset | None) -> Iterator[dict[str, Any]]:
    found = sorted(folder_sidecars(out), key=lambda p: (p[1].job_index, p[1].key, p[1].index))
    jobs: set[str] = set()
    for name, sidecar in found:
        if subset is not None:
            if not subset.matches(sidecar.prompt_id, _values(sidecar)):
                continue
            if sidecar.key not in jobs and subset.limit is not None and len(jobs) >= subset.limit:
                continue
        jobs.add(sidecar.key)
        yield _image_row(name, sidecar)


def write_export(out: Path, stream: TextIO, fmt: ExportFormat, subset: Subset | None = None) -> int:
    """Write the rows of `out` to `stream` as CSV (with a header) or JSON Lines; the row count."""
    rows = export_rows(out, subset)  # checks `out` before a header is written
    count = 0
    writer = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    for row in rows:
        count += 1
        if writer is None:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            writer.writerow([_cell(row[name]) for name in COLUMNS])
    return count


def _values(sidecar: Sidecar) -> dict[str, str]:
    # The same text values a --filter compares for a job (runner.subset.job_values).
    params = sidecar.params
    values = {
        "mode": params.mode,
        "aspect_ratio": params.aspect_ratio,
        "resolution": params.resolution,
        "n": str(params.n),
        "output_format": params.output_format,
    }
    if params.image is not None and params.image.source is not None:
        values["image"] = params.image.source
    values.update(sidecar.vars)
    return values


def _image_row(name: str, sidecar: Sidecar) -> dict[str, Any]:
    params = sidecar.params.model_dump(exclude_none=True)
    credits = sidecar.credits
    paid = credits.charged_usd if credits.charged_usd is not None else credits.estimated_usd
    timings = sidecar.timings
    return {
        "key": sidecar.key,
        "job_index": sidecar.job_index,
        "prompt_id": sidecar.prompt_id,
        "image_index": sidecar.index,
        "prompt": sidecar.prompt,
        "params": params,
        "vars": dict(sidecar.vars),
        "file": name,
        "sha256": sidecar.file.sha256,
        "bytes": sidecar.file.bytes,
        "width": sidecar.file.width,
        "height": sidecar.file.height,
        "format": sidecar.file.format,
        "credits_usd": round(paid / sidecar.n, 6),
        "job_estimated_usd": credits.estimated_usd,
        "job_charged_usd": credits.charged_usd,
        "request_id": sidecar.request_id,
        "submitted_at": timings.submitted_at,
        "completed_at": timings.completed_at,
        "queue_s": timings.queue_s,
        "inference_s": timings.inference_s,
        "wall_s": timings.wall_s,
    }


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)
