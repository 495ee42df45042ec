"""The batches the scenarios run: manifests written to disk, and the same jobs for the peers.

A batch is one prompt with one var of N values, so N distinct jobs of
identical params. The peers get the very requests the runner would send
(`Request.params()` of the expanded manifest), as a JSON list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runner.manifest import load_manifest
from runner.sweep import expand

MODEL = "grok-imagine-image"


@dataclass(frozen=True, slots=True)
class Batch:
    """N jobs under a budget of `rpm` counted calls per minute ("auto": learn it)."""

    jobs: int
    rpm: int | Literal["auto"]
    rate_scope: Literal["submit", "all"] = "submit"
    rate_model: Literal["window", "smooth"] = "window"
    max_in_flight: int | None = None
    output_format: str = "jpeg"
    name: str = "bench"


def manifest_text(batch: Batch, out_dir: Path) -> str:
    """The YAML of `batch`, writing to `out_dir`."""
    things = ", ".join(f"t{i}" for i in range(batch.jobs))
    in_flight = f"\n  max_in_flight: {batch.max_in_flight}" if batch.max_in_flight else ""
    return f"""name: {batch.name}
defaults: {{resolution: 2k, aspect_ratio: "1:1", output_format: {batch.output_format}, n: 1}}
prompts:
  - id: p
    prompt: "bench picture {{thing}}"
    vars: {{thing: [{things}]}}
budget:
  requests_per_minute: {batch.rpm}
  rate_scope: {batch.rate_scope}
  rate_model: {batch.rate_model}{in_flight}
output: {{dir: {json.dumps(str(out_dir))}}}
"""


def write_manifest(batch: Batch, folder: Path) -> Path:
    """Write `batch` as folder/manifest.yaml (outputs to folder/out); return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.yaml"
    path.write_text(manifest_text(batch, folder / "out"), encoding="utf-8")
    return path


def write_peer_jobs(manifest: Path, target: Path) -> int:
    """Write the manifest's requests as a JSON list for the peers; return how many."""
    jobs = [job.request.params() for job in expand(load_manifest(str(manifest)))]
    target.write_text(json.dumps({"model": MODEL, "jobs": jobs}), encoding="utf-8")
    return len(jobs)


def million_manifest(folder: Path, side: int = 1000, max_credits: float | None = None) -> Path:
    """One prompt with two vars of `side` values each: side**2 jobs. Returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    values = ", ".join(f"v{i}" for i in range(side))
    cap = f"\n  max_credits: {max_credits}" if max_credits is not None else ""
    path = folder / "million.yaml"
    path.write_text(
        f"""name: million
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: jpeg}}
prompts:
  - id: p
    prompt: "a {{a}} beside a {{b}}"
    vars:
      a: [{values}]
      b: [{values}]
budget:
  requests_per_minute: 50{cap}
output: {{dir: {json.dumps(str(folder / "out"))}}}
""",
        encoding="utf-8",
    )
    return path
