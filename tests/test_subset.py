"""Subsets: --filter and --limit over the lazy job stream, the plan of a subset, plan --jobs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from runner.cli import main
from runner.errors import UsageError
from runner.manifest import load_manifest
from runner.money import micros
from runner.params import price
from runner.plan import make_plan
from runner.subset import Condition, Subset, parse_condition, parse_subset
from runner.sweep import count_jobs, expand, restrict

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "manifests" / "sweep-demo.yaml"


def _subset(*filters: str, limit: int | None = None) -> Subset:
    subset = parse_subset(filters, limit)
    assert subset is not None
    return subset


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mug", Condition(None, "mug")),
        ("light*", Condition(None, "light*")),
        ("mode=quality", Condition("mode", "quality")),
        (" color = r* ", Condition("color", "r*")),
        ("aspect_ratio=16:9", Condition("aspect_ratio", "16:9")),
    ],
)
def test_parse_condition(text: str, expected: Condition) -> None:
    assert parse_condition(text) == expected


@pytest.mark.parametrize("text", ["", "1x=2", "a b=c"])
def test_bad_conditions_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--filter"):
        parse_condition(text)


def test_no_flags_is_no_subset() -> None:
    assert parse_subset(None, None) is None
    with pytest.raises(UsageError, match="--limit"):
        parse_subset(None, -1)


def test_the_filter_is_an_and_of_conditions_over_the_stream() -> None:
    manifest = load_manifest(DEMO)
    every = list(expand(manifest))
    restricted = restrict(manifest, _subset("mug", "color=red", "aspect_ratio=16:9"))
    jobs = list(expand(restricted))
    expected = [
        j
        for j in every
        if j.prompt_id == "mug"
        and dict(j.vars)["color"] == "red"
        and j.request.aspect_ratio == "16:9"
    ]
    assert jobs == expected and len(jobs) == 2 * 2  # surfaces x repeat
    # Keys and indexes are those of the whole expansion: a subset runs the same jobs.
    assert {j.index for j in jobs} <= {j.index for j in every}
    assert count_jobs(restricted) == len(jobs)


def test_globs_and_limit_take_the_first_jobs_in_order() -> None:
    manifest = load_manifest(DEMO)
    every = list(expand(manifest))
    jobs = list(expand(restrict(manifest, _subset("l*thouse", "time=d*", limit=3))))
    assert jobs == [j for j in every if j.prompt_id == "lighthouse"][:3]
    assert list(expand(restrict(manifest, _subset(limit=0)))) == []
    # A var a prompt does not have: that prompt's jobs do not match.
    assert {j.prompt_id for j in expand(restrict(manifest, _subset("time=dusk")))} == {"lighthouse"}


def test_a_filter_naming_nothing_known_says_what_it_might_mean() -> None:
    with pytest.raises(UsageError, match="did you mean `color`"):
        restrict(load_manifest(DEMO), _subset("colour=red"))


def test_the_plan_of_a_subset_counts_its_jobs_and_its_budget() -> None:
    manifest = load_manifest(DEMO)
    restricted = restrict(manifest, _subset("mode=quality"))
    jobs = list(expand(restricted))
    plan = make_plan(restricted)
    assert plan.jobs == len(jobs) == 2 and plan.images == 2
    assert [(p.prompt_id, p.jobs) for p in plan.prompts] == [("lighthouse", 2)]
    whole = make_plan(manifest)
    assert plan.credits_usd == pytest.approx(
        sum(price(j.request.mode, j.request.resolution, j.request.n) for j in jobs)
    )
    # Under a cap, the jobs that fit are counted in order, as the credit guard reserves them.
    capped = make_plan(restrict(manifest, _subset("mug")), max_credits=0.05)
    assert capped.fits is False and capped.jobs_within_budget == 2
    assert capped.credits_within_budget == micros(0.04)
    assert whole.jobs == 24


def test_plan_jobs_lists_every_job_as_csv_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    manifest = load_manifest(DEMO)
    every = list(expand(manifest))
    assert main(["plan", str(DEMO), "--jobs", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["key"] for r in rows] == [j.key for j in every]
    first = rows[0]
    assert first["prompt_id"] == "mug" and json.loads(first["vars"]) == dict(every[0].vars)
    assert json.loads(first["params"])["mode"] == "standard" and first["price_usd"] == "0.02"
    assert (
        first["outputs"].startswith("outputs/sweep-demo/mug/") and every[0].key8 in first["outputs"]
    )

    assert main(["plan", str(DEMO), "--jobs", "--json", "--filter", "mode=quality"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["prompt_id"] for line in lines] == ["lighthouse", "lighthouse"]
    assert all(line["params"]["mode"] == "quality" for line in lines)

    assert main(["plan", str(DEMO), "--jobs", "--limit", "2"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert len(text) == 2 and every[1].key8 in text[1]


def test_plan_with_a_filter_prints_the_subsets_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(DEMO), "--json", "--filter", "lighthouse", "--limit", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"]["jobs"] == 3
    assert main(["plan", str(DEMO), "--filter", "nosuch=1"]) == 2


def test_run_with_a_limit_runs_only_those_jobs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(DEMO),
            "--backend",
            "local",
            "--out",
            str(out),
            "--no-progress",
            "--filter",
            "lighthouse",
            "--limit",
            "2",
        ]
    )
    assert code == 0
    wanted = list(expand(restrict(load_manifest(DEMO), _subset("lighthouse", limit=2))))
    sidecars = sorted(p for p in out.glob("*/*.json") if p.parent.name != ".runner")
    keys = {json.loads(p.read_text())["key"] for p in sidecars}
    assert keys == {j.key for j in wanted}
