"""The hostile corpus: each hostile answer the emulator can give, and the outcome it must end in.

A `Case` scripts one emulator fault (runner.emulator.hostile) on one
endpoint kind for its next `times` calls, runs a one-job manifest through
`run_manifest` against the in-process emulator, and names the ledger state
the job must end in and a text its reason must hold. Shared by the run
tests (virtual clock) and the loopback bomb tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.emulator import Emulator, EmulatorConfig, Latency
from runner.manifest import Manifest, parse_manifest
from runner.run import RunOptions, RunReport, run_manifest
from runner.store import JobRow, Ledger

UTC_AT_ZERO = 1_800_000_000.0
ESCAPES = ("\x1b", "\x07", "\x9b", "\x9d", "\u202e")


@dataclass(frozen=True, slots=True)
class Case:
    """One hostile answer and its defined outcome.

    `states` are the ledger states the job may end in; `reason` a text its
    reason must hold (failed jobs); `images` the files a completed job keeps.
    """

    name: str
    kind: str
    fault: str
    times: int = 1
    n: int = 1
    endpoint: str = "v2"
    knobs: dict[str, Any] = field(default_factory=dict)
    states: tuple[str, ...] = ("completed",)
    reason: str = ""
    images: int | None = None


def emulator_config(**knobs: Any) -> EmulatorConfig:
    """Jobs of a fixed 10 s, a fixed UTC, and the case's knobs."""
    settings: dict[str, Any] = {
        "latency": Latency("fixed", 10.0, 0.0),
        "utc_offset": UTC_AT_ZERO,
        "workers": 8,
        "seed": 5,
        # The cases script the status endpoint too: a result endpoint that
        # answers only finished jobs makes the runner poll by status.
        "result_in_progress": False,
    }
    settings.update(knobs)
    return EmulatorConfig(**settings)


def one_job_manifest(tmp_path: Path, *, n: int = 1, endpoint: str = "v2") -> Manifest:
    """One 1k PNG job of `n` images on `endpoint`."""
    text = f"""name: hostile
api: {{endpoint: {endpoint}}}
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: png, n: {n}}}
prompts:
  - id: fox
    prompt: "a picture of a fox"
budget: {{requests_per_minute: 50}}
output: {{dir: {tmp_path / "out"}}}
"""
    return parse_manifest(text, path=str(tmp_path / "m.yaml"), base_dir=tmp_path)


async def run_case(
    emulator: Emulator, tmp_path: Path, manifest: Manifest, **options: Any
) -> tuple[RunReport, JobRow]:
    """Run `manifest` (one job) on the in-process `emulator`; the report and the job's row."""
    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1, **options)
    report = await run_manifest(manifest, opts, emulator=emulator, env={})
    with Ledger.open_readonly(tmp_path / "out") as ledger:
        (row,) = list(ledger.rows())
    return report, row


def image_files(out: Path) -> list[Path]:
    """The image files under `out` (sidecars, the ledger and temp files excluded)."""
    return sorted(p for p in out.rglob("*") if p.suffix in (".png", ".jpg", ".webp"))
