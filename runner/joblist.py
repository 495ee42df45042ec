"""`runner plan --jobs`: every job of a manifest (or a subset) as a row, streamed.

One row per job: its key, prompt id, request params (the rendered prompt
text included), vars, estimated price (USD) and the output path of each of
its images (under `output.dir`, by the manifest's `output.pattern`). Rows go
out as they are made (`--json` is JSON Lines, `--csv` has a header row;
otherwise aligned text), so listing a million jobs holds one in memory.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal, TextIO

from runner.jobs import Job
from runner.manifest import Manifest
from runner.naming import relative_stem
from runner.params import price
from runner.store.layout import EXTENSIONS
from runner.sweep import expand

ListFormat = Literal["text", "json", "csv"]

CSV_COLUMNS = ("key", "index", "prompt_id", "prompt", "params", "vars", "price_usd", "outputs")
"""The columns of `--csv`: params and vars as compact JSON, outputs space-separated."""


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job as `plan --jobs` lists it. `price_usd` is the estimate; paths are ``/``-joined."""

    key: str
    index: int
    prompt_id: str
    prompt: str
    params: dict[str, str | int]
    vars: dict[str, str]
    price_usd: float
    outputs: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """The row as a JSON-ready dict (one `--json` line)."""
        return {
            "key": self.key,
            "index": self.index,
            "prompt_id": self.prompt_id,
            "prompt": self.prompt,
            "params": self.params,
            "vars": self.vars,
            "price_usd": round(self.price_usd, 6),
            "outputs": list(self.outputs),
        }


def job_row(manifest: Manifest, job: Job) -> JobRow:
    """The listing row of one job of `manifest`."""
    request = job.request
    params: dict[str, str | int] = {k: v for k, v in request.params().items() if k != "prompt"}
    if request.image is not None:
        params["image"] = request.image.describe()
    out = PurePosixPath(manifest.output.dir)
    ext = EXTENSIONS[request.output_format]
    pattern = manifest.output.pattern
    return JobRow(
        key=job.key,
        index=job.index,
        prompt_id=job.prompt_id,
        prompt=request.prompt,
        params=params,
        vars=dict(job.vars),
        price_usd=price(request.mode, request.resolution, request.billed_images, manifest.prices),
        outputs=tuple(
            str(out / f"{relative_stem(job, i, pattern)}.{ext}") for i in range(request.n)
        ),
    )


def job_rows(manifest: Manifest) -> Iterator[JobRow]:
    """The rows of every job `expand(manifest)` yields (a subset's, if restricted), lazily."""
    for job in expand(manifest):
        yield job_row(manifest, job)


def write_jobs(manifest: Manifest, stream: TextIO, fmt: ListFormat = "text") -> int:
    """Write the job list to `stream` in `fmt`; the number of jobs written."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
    for row in job_rows(manifest):
        count += 1
        if fmt == "json":
            stream.write(json.dumps(row.as_json(), ensure_ascii=False) + "\n")
        elif fmt == "csv":
            writer.writerow(_csv_cells(row))
        else:
            stream.write(_text_line(row) + "\n")
    return count


def _csv_cells(row: JobRow) -> list[str]:
    return [
        row.key,
        str(row.index),
        row.prompt_id,
        row.prompt,
        json.dumps(row.params, ensure_ascii=False, separators=(",", ":")),
        json.dumps(row.vars, ensure_ascii=False, separators=(",", ":")),
        f"{row.price_usd:.6f}".rstrip("0").rstrip("."),
        " ".join(row.outputs),
    ]


def _text_line(row: JobRow) -> str:
    # key8 keeps a line readable; the full key is in --json and --csv.
    params = " ".join(f"{k}={v}" for k, v in row.params.items())
    values = " ".join(f"{k}={v}" for k, v in row.vars.items())
    key8 = row.key.split(":", 1)[-1][:8]
    parts = [f"{row.index:>6}", key8, row.prompt_id, f"${row.price_usd:.4f}", params]
    if values:
        parts.append(values)
    parts.append(row.outputs[0] + (f" (+{len(row.outputs) - 1})" if len(row.outputs) > 1 else ""))
    return "  ".join(parts)
