"""Helpers of the coordination tests: manifests, and workers joined in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from runner.coordination import Coordination, CoordinatorSpec, join_run
from runner.manifest import Manifest, load_manifest
from runner.money import maybe_micros
from runner.scheduling.scheduler import SchedulerConfig
from runner.sweep import expand

BASE_URL = "http://127.0.0.1:9"


def write_manifest(
    folder: Path,
    jobs: int,
    *,
    rpm: int | str = 10,  # or "auto"
    max_credits: float | None = None,
    lease: float | None = None,
    extra_prompts: str = "",
) -> Path:
    """A manifest of `jobs` jobs (one prompt, one var), written to folder/m.yaml."""
    things = ", ".join(f"thing{i}" for i in range(jobs))
    credits = f"max_credits: {max_credits}" if max_credits is not None else ""
    coordinator = f"coordinator: {{lease: {lease}}}" if lease is not None else ""
    path = folder / "m.yaml"
    path.write_text(
        f"""
name: coord
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: jpeg}}
prompts:
  - id: p
    prompt: "a picture of {{thing}}"
    vars: {{thing: [{things}]}}
{extra_prompts}
budget:
  requests_per_minute: {rpm}
  {credits}
output: {{dir: {folder / "out"}}}
{coordinator}
""",
        encoding="utf-8",
    )
    return path


def manifest_of(folder: Path, jobs: int, **kwargs: object) -> Manifest:
    """`write_manifest` then load it."""
    return load_manifest(write_manifest(folder, jobs, **kwargs))  # type: ignore[arg-type]


@asynccontextmanager
async def workers(
    url: str,
    manifest: Manifest,
    count: int,
    tmp: Path,
    *,
    budget: float | None = None,  # USD, as a manifest states it
    config: SchedulerConfig | None = None,
    lease: float = 15.0,
    run_id: str | None = None,
) -> AsyncIterator[list[Coordination]]:
    """`count` workers of one run, joined in this process (each its own connection)."""
    jobs = list(expand(manifest))
    async with AsyncExitStack() as stack:
        joined = [
            await stack.enter_async_context(
                join_run(
                    CoordinatorSpec(url, run_id, lease),
                    manifest=manifest,
                    jobs=jobs,
                    budget=maybe_micros(budget),
                    config=config or SchedulerConfig(rpm=None),
                    base_url=BASE_URL,
                    api_key="sk-test",
                    out=tmp / f"w{i}",
                    prices=manifest.prices,
                )
            )
            for i in range(count)
        ]
        yield joined
