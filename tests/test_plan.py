"""The plan: counts, credits, the duration estimate, the budget, and how it prints."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.manifest import Manifest, load_manifest, parse_manifest
from runner.money import micros
from runner.params import price
from runner.plan import make_plan, plan_json, render_text, shortest_duration, usd
from runner.subset import parse_subset
from runner.sweep import MAX_WALKED_JOBS, expand, restrict

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "manifests" / "sweep-demo.yaml"


def _m(text: str) -> Manifest:
    return parse_manifest(text, path="t.yaml")


HEAD = "name: t\nprompts:\n  - id: a\n    prompt: a cat\n"


def test_sweep_demo_numbers() -> None:
    plan = make_plan(load_manifest(DEMO))
    assert [(p.prompt_id, p.jobs, p.images) for p in plan.prompts] == [
        ("mug", 14, 14),
        ("lighthouse", 10, 10),
    ]
    assert (plan.jobs, plan.images) == (24, 24)
    assert plan.credits == micros(0.54)
    assert plan.requests_per_minute == 10 and plan.rate_calls == 24
    assert plan.min_duration_s == (math.ceil(24 / 10) - 1) * 60 + 10
    assert plan.fits is True and plan.jobs_within_budget == 24


@pytest.mark.parametrize("name", ["example.yaml", "sweep-demo.yaml"])
def test_arithmetic_equals_iteration(name: str) -> None:
    manifest = load_manifest(ROOT / "manifests" / name)
    plan = make_plan(manifest)
    jobs = list(expand(manifest))
    for p in plan.prompts:
        mine = [j for j in jobs if j.prompt_id == p.prompt_id]
        assert p.jobs == len(mine)
        assert p.images == sum(j.request.n for j in mine)
        assert p.credits == sum(
            micros(price(j.request.mode, j.request.resolution, j.request.n)) for j in mine
        )


@pytest.mark.parametrize(
    ("calls", "rpm", "seconds"),
    [(0, 5, 0.0), (1, 5, 10.0), (5, 5, 10.0), (6, 5, 70.0), (24, 10, 130.0), (100, 50, 70.0)],
)
def test_shortest_duration(calls: int, rpm: int, seconds: float) -> None:
    assert shortest_duration(calls, rpm) == seconds


def test_rate_scope_all_counts_polls_and_results() -> None:
    text = HEAD + "repeat: 4\nbudget: {rate_scope: all, requests_per_minute: 5}\n"
    plan = make_plan(_m(text))
    assert plan.rate_calls == 12
    assert plan.min_duration_s == 2 * 60 + 10
    sync = make_plan(_m(text + "api: {endpoint: v1}\n"))
    assert sync.rate_calls == 4


def test_flags_override_the_budget() -> None:
    plan = make_plan(_m(HEAD + "repeat: 30\n"), rpm=10, max_credits=0.5)
    assert plan.requests_per_minute == 10
    assert plan.min_duration_s == 2 * 60 + 10
    assert plan.max_credits == micros(0.5)
    assert plan.fits is False
    assert plan.jobs_within_budget == 25  # 0.02 each at 2k standard


def test_budget_cut_falls_inside_a_prompt_in_expansion_order() -> None:
    text = (
        "name: t\nprompts:\n  - id: a\n    prompt: a\n  - id: b\n    prompt: b\n"
        "sweep:\n  mode: [quality, standard]\nrepeat: 2\nbudget: {max_credits: 0.17}\n"
    )
    plan = make_plan(_m(text))
    # a: q q s s = 0.05 0.05 0.02 0.02 (0.14); b: q (0.19) would pass 0.17
    assert plan.jobs_within_budget == 4
    assert plan.credits_within_budget == micros(0.14)
    assert plan.credits == micros(0.28)


def test_an_exact_budget_fits_despite_float_sums() -> None:
    text = HEAD + "repeat: 3\nprices:\n  standard: {2k: 0.1}\nbudget: {max_credits: 0.3}\n"
    plan = make_plan(_m(text))
    assert plan.fits is True and plan.jobs_within_budget == 3


def test_text_output() -> None:
    text = render_text(make_plan(load_manifest(DEMO), max_credits=0.3))
    lines = text.splitlines()
    assert lines[0].startswith("plan for ") and "sweep-demo" in lines[0]
    assert lines[2].split() == ["prompt", "jobs", "images", "est.", "credits"]
    assert lines[3].split() == ["mug", "14", "14", "$0.28"]
    assert lines[4].split() == ["lighthouse", "10", "10", "$0.26"]
    assert lines[5].split() == ["total", "24", "24", "$0.54"]
    assert "10 requests/minute counting submits: 24 calls" in text
    assert "at least ~2 min 10 s" in text
    assert "(ceil(24 / 10) - 1) x 60 s + ~10 s latency" in text
    assert "does NOT fit under $0.30" in text and "the first 15 jobs fit ($0.30)" in text


def test_text_without_a_cap_says_so() -> None:
    text = render_text(make_plan(_m(HEAD)))
    assert "no max_credits" in text and "$0.02" in text


def test_json_output() -> None:
    data = json.loads(json.dumps(plan_json(make_plan(load_manifest(DEMO)))))
    assert data["total"] == {"jobs": 24, "images": 24, "credits": 0.54}
    assert data["prompts"][0] == {"id": "mug", "jobs": 14, "images": 14, "credits": 0.28}
    assert data["rate"]["min_duration_s"] == 130.0
    assert data["rate"]["scope"] == "submit"
    assert data["budget"] == {
        "max_credits": 1.0,
        "fits": True,
        "jobs_within": 24,
        "credits_within": 0.54,
    }


def test_usd_keeps_fractions_of_cents() -> None:
    assert usd(micros(0.5)) == "$0.50"
    assert usd(micros(0.0125)) == "$0.0125"
    assert usd(micros(12345.0)) == "$12,345.00"


def test_a_million_cheap_jobs_fit_a_cap_of_exactly_their_sum() -> None:
    # 0.000001 x 1,000,000 in floats is 0.9999999999998 or 1.0000000000007;
    # in µ$ it is exactly the cap, and every job fits.
    text = (
        "name: t\nprompts:\n  - id: a\n    prompt: a\nrepeat: 1000000\n"
        "prices:\n  standard: {2k: 0.000001}\nbudget: {max_credits: 1.0}\n"
    )
    plan = make_plan(_m(text))
    assert plan.credits == micros(1.0)
    assert plan.fits is True and plan.jobs_within_budget == 1_000_000


MILLION = """\
name: million
defaults: {resolution: 1k}
prompts:
  - id: grid
    prompt: "{a} {b} {c}"
    vars:
      a: [%s]
      b: [%s]
      c: [%s]
sweep:
  mode: [standard, quality]
  resolution: [1k, 2k]
budget: {max_credits: 100}
"""


def million_manifest(folder: Path) -> Path:
    """A manifest of 100 x 100 x 25 x 2 x 2 = 1,000,000 jobs."""
    path = folder / "million.yaml"
    values = [", ".join(f"v{i}" for i in range(k)) for k in (100, 100, 25)]
    path.write_text(MILLION % tuple(values))
    return path


_PEAK = (
    "import resource, sys\n"
    "from runner.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "raise SystemExit(code)\n"
)


def _plan_peak_kib(path: Path) -> tuple[dict[str, object], int]:
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, "plan", str(path), "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(done.stdout), int(done.stderr.strip().splitlines()[-1])


def test_plan_of_a_million_jobs_keeps_memory_flat(tmp_path: Path) -> None:
    big, big_peak = _plan_peak_kib(million_manifest(tmp_path))
    small_path = tmp_path / "small.yaml"
    small_path.write_text(HEAD)
    _, small_peak = _plan_peak_kib(small_path)
    total = big["total"]
    assert isinstance(total, dict) and total["jobs"] == 1_000_000
    assert total["images"] == 1_000_000
    budget = big["budget"]
    assert isinstance(budget, dict) and budget["fits"] is False
    # 100 USD at 0.02 and 0.05 a job, in expansion order: found by walking one prompt.
    assert isinstance(budget["jobs_within"], int) and 0 < budget["jobs_within"] < 1_000_000
    # Counting is arithmetic: a million jobs cost no more memory than one (KiB).
    assert big_peak < small_peak + 20_000


def _trillion(extra: str = "") -> Manifest:
    values = "[" + ", ".join(f"v{i}" for i in range(100)) + "]"
    names = [f"x{i}" for i in range(6)]
    text = (
        "name: huge\nprompts:\n  - id: a\n    prompt: '"
        + " ".join("{" + n + "}" for n in names)
        + "'\n    vars:\n"
        + "".join(f"      {n}: {values}\n" for n in names)
        + "sweep:\n  mode: [standard, quality]\n"
        + "exclude:\n  - {x0: v3}\n  - {mode: quality, x5: v1}\n"
        + extra
    )
    return parse_manifest(text, path="huge.yaml")


def test_a_trillion_jobs_with_excludes_and_a_cap_plan_in_bounded_memory() -> None:
    manifest = _trillion("budget: {max_credits: 1000000000}\n")
    tracemalloc.start()
    try:
        plan = make_plan(manifest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 99 x0 values x 100^4 x (100 standard + 99 quality) jobs.
    assert plan.jobs == 99 * 100**4 * 199
    assert plan.fits is False
    assert plan.credits_within_budget is not None
    assert plan.credits_within_budget <= micros(1e9)
    assert plan.jobs_within_budget is not None and plan.jobs_within_budget > 28 * 10**9
    assert peak < 5_000_000  # bytes


def test_a_filter_over_a_trillion_jobs_is_refused_naming_the_limit() -> None:
    manifest = restrict(_trillion(), parse_subset(["x5=v1"], None))
    with pytest.raises(UsageError, match=f"more than {MAX_WALKED_JOBS:,} jobs"):
        make_plan(manifest)
    # With a --limit the walk ends when the limit is met.
    limited = make_plan(restrict(_trillion(), parse_subset(["x5=v1"], 3)))
    assert limited.jobs == 3
