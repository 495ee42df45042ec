"""Whole runs on the in-process emulator: the manifest of N one-image jobs, runs paced
against the emulator's rate windows (issue #12), and `python -m runner` as a subprocess.

`jobs_manifest` is the manifest of the scheduler, resume and quota tests. The
paced part runs on the virtual clock with the runner's minute scaled to the
server's 6 s window, and counts what the server's request log holds: 429s,
and accepted billed calls per window. Shared by tests/scheduling/
test_quota_run.py (Segmind, both limiters) and tests/test_run_providers.py
(each provider's billed route). `runner_cli` is the command line's tests' way to run
the CLI (tests/test_cli_run.py and the resume and cache tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from provider_cases import ProviderCase

from runner.emulator import InProcess
from runner.emulator.config import EndpointKind, LimiterKind
from runner.emulator.log import most_in_window
from runner.manifest import Manifest, parse_manifest
from runner.run import RunOptions, RunReport, run_manifest

# A 6 s server window: the runner's minute is scaled by 0.1 to match it.
WINDOW = 6.0
SCALE = WINDOW / 60.0
REAL = 20  # the server's quota per WINDOW in these tests
ROOT = Path(__file__).resolve().parents[1]


def jobs_manifest(
    tmp_path: Path,
    jobs: int,
    *,
    rpm: int | str = 10,
    max_credits: float | None = None,
    rate_scope: str = "submit",
    rate_model: str = "window",
    max_in_flight: int | str | None = None,
    max_submits_in_flight: int | None = None,
    extra_prompts: str = "",
    provider: ProviderCase | None = None,
    prefix: str = "thing",
    n: int | None = None,
    output_format: str = "jpeg",
    sweep: str | None = None,
    name: str = "jobs",
    write: bool = False,
) -> Manifest:
    """`jobs` jobs of prompt "a picture of {prefix}N" at `rpm` (a cap of `max_credits`
    USD; `max_in_flight` and `max_submits_in_flight` when given), `n` images each (the
    default: one), writing `output_format` images to tmp_path/out; Segmind unless
    `provider` says otherwise. `extra_prompts`: more YAML items of the prompts list;
    `sweep`: the YAML flow mapping of a sweep. `name`: the manifest's (the reports'
    headings). `write`: tmp_path/m.yaml holds the text too (for `python -m runner`)."""
    things = ", ".join(f"{prefix}{i}" for i in range(jobs))
    images = f", n: {n}" if n is not None else ""
    given = {
        "max_credits": max_credits,
        "max_in_flight": max_in_flight,
        "max_submits_in_flight": max_submits_in_flight,
    }
    limits = "".join(f"\n  {name}: {value}" for name, value in given.items() if value is not None)
    api = provider.api_line if provider is not None else ""
    text = f"""
name: {name}
{api}
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: {output_format}{images}}}
prompts:
  - id: p
    prompt: "a picture of {{thing}}"
    vars: {{thing: [{things}]}}
{extra_prompts}
{f"sweep: {sweep}" if sweep is not None else ""}
budget:
  requests_per_minute: {rpm}
  rate_scope: {rate_scope}
  rate_model: {rate_model}{limits}
output: {{dir: {tmp_path / "out"}}}
"""
    path = tmp_path / "m.yaml"
    if write:
        path.write_text(text, encoding="utf-8")
    return parse_manifest(text, path=str(path), base_dir=tmp_path)


async def run(m: Manifest, emu: InProcess, tmp_path: Path, **options: Any) -> RunReport:
    """A local run of `m` against `emu` with the minute scaled to WINDOW (`options`: RunOptions)."""
    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=SCALE, seed=1, **options)
    return await run_manifest(m, opts, env={}, emulator=emu.emulator)


def refusals(emu: InProcess, kind: EndpointKind = "submit") -> list[float]:
    """Server times (s) of the 429s on the billed route `kind`."""
    return [c.time for c in emu.emulator.calls(kind) if c.status == 429]


def most_in_a_span(times: list[float], span: float) -> int:
    """Most of the sorted `times` in any half-open `span` seconds."""
    return most_in_window(times, span)


def most_accepted_in_a_window(
    emu: InProcess,
    window: float = WINDOW,
    limiter: LimiterKind = "sliding",
    kind: EndpointKind = "submit",
) -> int:
    """Most accepted calls of `kind` in one server window: any half-open `window`
    seconds (sliding), or each `window` from clock zero (fixed: the test UTC is whole
    minutes)."""
    times = sorted(c.time for c in emu.emulator.calls(kind) if c.status == 200)
    if limiter == "fixed":
        buckets: dict[int, int] = {}
        for at in times:
            buckets[int(at // window)] = buckets.get(int(at // window), 0) + 1
        return max(buckets.values(), default=0)
    return most_in_a_span(times, window)


def split_first_window(times: list[float]) -> tuple[int, int]:
    """429s in the server window from the first one, and after it."""
    if not times:
        return 0, 0
    first = [t for t in times if t < times[0] + WINDOW]
    return len(first), len(times) - len(first)


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any provider's key or API root, or a cache
    folder (a user's $RUNNER_CACHE would serve the jobs a test means to run), plus `env`."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SEGMIND_", "XAI_", "RUNNER_CACHE"))
    }
    full_env.update(env or {})
    return full_env


def runner_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m runner ARGS` run to its end (`timeout` seconds at most) from the repo root."""
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env),
        cwd=ROOT,
        check=False,
    )


MERGE_HEAD = """
name: merge
api: {provider: xai}
defaults: {resolution: 1k, aspect_ratio: "1:1", output_format: jpeg, n: 1}
prompts:
  - id: merge
    prompt: "<IMAGE_0> and <IMAGE_1> and <IMAGE_2> on a bench"
"""
"""An xAI manifest up to its prompt `merge`, which names the three images of
`source_images` (its `image:` / `images:` line and what follows are the test's)."""


def source_images(folder: Path) -> list[bytes]:
    """Three 16 px PNGs, in/a.png (red), in/b.png (green), in/c.png (blue); their bytes."""
    import io

    from PIL import Image

    (folder / "in").mkdir(parents=True, exist_ok=True)
    written = []
    for name, color in (("a", "red"), ("b", "green"), ("c", "blue")):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), color).save(buffer, format="PNG")
        (folder / "in" / f"{name}.png").write_bytes(buffer.getvalue())
        written.append(buffer.getvalue())
    return written
