"""Hostile manifests (issue 13 item 8): size caps that hold before anything is built.

A 5.3 MB manifest whose one 4 MiB prompt is aliased 40,000 times, and 50,000
var values under a 4 MiB prompt, are refused at load time with the limit
named, in the memory of the file (tracemalloc), not of its expansion.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from runner.errors import ManifestError
from runner.manifest import load_manifest
from runner.manifest.source import MAX_MANIFEST_BYTES, MAX_PROMPT_CHARS

BIG = "a" * (4 * 1024 * 1024)  # a 4 MiB prompt


def _load_peak(path: Path) -> tuple[str, int]:
    """The load's error message and its tracemalloc peak in bytes."""
    tracemalloc.start()
    try:
        with pytest.raises(ManifestError) as caught:
            load_manifest(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return str(caught.value), peak


def test_a_prompt_aliased_40000_times_is_refused_for_its_expanded_size(tmp_path: Path) -> None:
    # The 4 MiB text is written once and aliased: a valid prompt length is not the point
    # here (it is kept under the cap), the expanded size is.
    text = "a " * (MAX_PROMPT_CHARS // 2 - 1)
    lines = ["name: aliases", "prompts:", f"  - {{id: p0, prompt: &p '{text}'}}"]
    lines += [f"  - {{id: p{i}, prompt: *p}}" for i in range(1, 40_000)]
    lines.append("bulk: &bulk '" + BIG + "'")
    path = tmp_path / "aliases.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert 5_000_000 < path.stat().st_size < MAX_MANIFEST_BYTES
    message, peak = _load_peak(path)
    assert "with its YAML aliases expanded" in message
    assert f"over the limit of {MAX_MANIFEST_BYTES:,}" in message
    assert peak < 200 * 1024 * 1024  # bytes: the file's nodes, never 40,000 copies


def test_a_4_mib_prompt_is_refused_with_its_place(tmp_path: Path) -> None:
    values = ", ".join(f"v{i}" for i in range(50_000))
    path = tmp_path / "vars.yaml"
    path.write_text(
        "name: vars\nprompts:\n  - id: p\n"
        f"    prompt: '{{x}} {BIG}'\n    vars: {{x: [{values}]}}\n",
        encoding="utf-8",
    )
    message, peak = _load_peak(path)
    assert "vars.yaml:4:13: prompts[0].prompt: a prompt of 4,194,308 characters" in message
    assert f"limit of {MAX_PROMPT_CHARS:,}" in message
    assert peak < 200 * 1024 * 1024  # bytes: not 50,000 rendered prompts
