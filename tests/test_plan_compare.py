"""`runner plan --provider segmind,xai`: one manifest planned per provider, no request sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.cli import main
from runner.errors import UsageError
from runner.plan_compare import compare, parse_providers, render_comparison

MANIFEST = """
name: cmp
defaults: {{n: {n}}}
prompts:
  - {{id: a, prompt: a fox}}
budget: {{requests_per_minute: 5, rate_scope: all}}
repeat: 20
"""


def write(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST.format(n=n), encoding="utf-8")
    return path


def test_both_providers_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, 2)
    assert main(["plan", str(path), "--provider", "segmind,xai", "--json"]) == 0
    rows = {r["provider"]: r for r in json.loads(capsys.readouterr().out)["providers"]}
    assert rows["segmind"]["credits"] == rows["xai"]["credits"] == pytest.approx(0.8)
    # rate_scope all: a Segmind v2 job is 3 counted calls, an xAI job one.
    assert (rows["segmind"]["rate_calls"], rows["xai"]["rate_calls"]) == (60, 20)
    assert rows["xai"]["min_duration_s"] < rows["segmind"]["min_duration_s"]
    text = render_comparison(compare(path, ("segmind", "xai")))
    assert "fastest" in text and "cheapest" not in text  # a tie earns no mark


def test_a_provider_that_cannot_run_it_says_why(tmp_path: Path) -> None:
    rows = compare(write(tmp_path, 8), ("segmind", "xai"))
    assert rows[0].plan is None and "n must be 1 to 4" in (rows[0].problem or "")
    assert rows[1].plan is not None and rows[1].plan.images == 160
    assert "cannot run this manifest" in render_comparison(rows)


def test_single_provider_plans_with_its_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, 8)
    assert main(["plan", str(path), "--provider", "xai", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["endpoint"] == "v1"
    assert main(["plan", str(path)]) == 2  # Segmind, the default, allows 4


@pytest.mark.parametrize("text", ["segmind,bogus", "", "xai,,"])
def test_unknown_names_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match="not a provider"):
        parse_providers(text)


def test_repeats_are_dropped() -> None:
    assert parse_providers("xai, segmind,xai") == ("xai", "segmind")
