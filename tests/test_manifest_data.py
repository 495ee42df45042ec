"""Data sources of a manifest: `vars_from` rows and `prompts_from` prompts, read lazily."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from runner.errors import ManifestError
from runner.manifest import Manifest, load_manifest
from runner.plan import make_plan
from runner.sweep import count_jobs, expand

ROOT = Path(__file__).resolve().parent.parent

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

INLINE = """\
name: t
prompts:
  - id: ad
    prompt: "a {product} on a {color} table, {light}"
    vars:
      product: [mug, lamp]
      color: [red, "2.5"]
      light: [soft, hard]
sweep:
  mode: [standard, quality]
"""

FROM_FILE = """\
name: t
prompts:
  - id: ad
    prompt: "a {product} on a {color} table, {light}"
    vars_from: data/products.%s
    vars:
      light: [soft, hard]
sweep:
  mode: [standard, quality]
"""

ROWS = [("mug", "red"), ("mug", "2.5"), ("lamp", "red"), ("lamp", "2.5")]


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _data(folder: Path, fmt: str) -> None:
    if fmt == "csv":
        text = "product,color\n" + "".join(f"{p},{c}\n" for p, c in ROWS)
    elif fmt == "jsonl":
        # A number in JSON becomes text as in the manifest's vars: 2.5 -> "2.5".
        text = "".join(
            json.dumps({"product": p, "color": 2.5 if c == "2.5" else c}) + "\n" for p, c in ROWS
        )
    else:
        text = "".join(f"- {{product: {p}, color: {c}}}\n" for p, c in ROWS)
    _write(folder, f"data/products.{fmt}", text)


def _keys(manifest: Manifest) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    return [(j.key, j.request.prompt, j.vars) for j in expand(manifest)]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "yaml"])
def test_vars_from_makes_the_same_jobs_and_keys_as_inline_vars(tmp_path: Path, fmt: str) -> None:
    inline = load_manifest(_write(tmp_path, "inline.yaml", INLINE))
    _data(tmp_path, fmt)
    from_file = load_manifest(_write(tmp_path, "file.yaml", FROM_FILE % fmt))
    # The rows are one zipped unit, outermost: same order as the product of the inline lists.
    assert _keys(from_file) == _keys(inline)
    assert count_jobs(from_file) == 4 * 2 * 2 == len(_keys(from_file))
    plan = make_plan(from_file)
    assert (plan.jobs, plan.credits) == (16, pytest.approx(make_plan(inline).credits))


def test_prompts_from_makes_the_same_keys_as_inline_prompts(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "p.png").write_bytes(PNG)
    inline = """\
name: t
defaults: {resolution: 2k}
prompts:
  - id: first
    prompt: "literal {{braces}} stay"
  - id: second
    prompt: an edit
    image: in/p.png
    params: {n: 2, aspect_ratio: "16:9"}
sweep:
  output_format: [png, jpeg]
"""
    lines = [
        {"id": "first", "prompt": "literal {braces} stay"},
        {
            "id": "second",
            "prompt": "an edit",
            "image": "in/p.png",
            "params": {"n": 2, "aspect_ratio": "16:9"},
        },
    ]
    _write(tmp_path, "prompts.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    from_file = load_manifest(
        _write(
            tmp_path,
            "file.yaml",
            "name: t\ndefaults: {resolution: 2k}\nprompts_from: prompts.jsonl\n"
            "sweep:\n  output_format: [png, jpeg]\n",
        )
    )
    expected = load_manifest(_write(tmp_path, "inline.yaml", inline))
    assert _keys(from_file) == _keys(expected)
    jobs = list(expand(from_file))
    assert jobs[0].request.prompt == "literal {braces} stay"
    assert jobs[2].request.image is not None and jobs[2].request.n == 2
    assert make_plan(from_file).images == make_plan(expected).images == 2 + 4


def test_inline_and_file_prompts_together(tmp_path: Path) -> None:
    _write(tmp_path, "p.jsonl", '{"id": "b", "prompt": "two"}\n\n{"id": "c", "prompt": "three"}\n')
    m = load_manifest(
        _write(
            tmp_path,
            "m.yaml",
            "name: t\nprompts:\n  - {id: a, prompt: one}\nprompts_from: p.jsonl\n"
            "exclude:\n  - {mode: quality}\nsweep:\n  mode: [standard, quality]\n",
        )
    )
    assert [(j.prompt_id, j.request.mode) for j in expand(m)] == [
        ("a", "standard"),
        ("b", "standard"),
        ("c", "standard"),
    ]
    assert count_jobs(m) == 3


def test_an_exclude_may_name_a_data_column(tmp_path: Path) -> None:
    _data(tmp_path, "csv")
    text = FROM_FILE % "csv" + "exclude:\n  - {product: lamp, mode: quality}\n"
    m = load_manifest(_write(tmp_path, "m.yaml", text))
    jobs = list(expand(m))
    assert len(jobs) == count_jobs(m) == 16 - 4
    assert not any(dict(j.vars)["product"] == "lamp" and j.request.mode == "quality" for j in jobs)


def _error(tmp_path: Path, manifest: str, files: dict[str, str]) -> str:
    for name, text in files.items():
        _write(tmp_path, name, text)
    with pytest.raises(ManifestError) as info:
        load_manifest(_write(tmp_path, "m.yaml", manifest))
    return str(info.value)


VARS = 'name: t\nprompts:\n  - id: a\n    prompt: "{x} {y}"\n    vars_from: %s\n'
PROMPTS = "name: t\nprompts_from: p.jsonl\n"
LONG = "y" * 10_001  # one past the prompt cap (runner.manifest.source.MAX_PROMPT_CHARS)


@pytest.mark.parametrize(
    ("manifest", "files", "fragments"),
    [
        (
            VARS % "d.csv",
            {"d.csv": "x,y\n1,2\n3\n"},
            ["d.csv:3:", "1 values but the header names 2"],
        ),
        (VARS % "d.csv", {"d.csv": "x,y\n1,2\n1,2\n"}, ["d.csv:3:", "repeats line 2"]),
        (VARS % "d.csv", {"d.csv": "x,mode\n1,2\n"}, ["d.csv:1:", "`mode` is a request param"]),
        (VARS % "d.csv", {"d.csv": "x,y\n"}, ["d.csv:1:", "no rows"]),
        (VARS % "d.csv", {"d.csv": "x,z\n1,2\n"}, ["m.yaml:", "declares no var `y`"]),
        (VARS % "d.jsonl", {"d.jsonl": '{"x": 1, "y": 2}\n{"x": 1\n'}, ["d.jsonl:2:", "JSON"]),
        (
            VARS % "d.jsonl",
            {"d.jsonl": '{"x": 1, "y": 2}\n{"x": 1}\n'},
            ["d.jsonl:2:", "missing y"],
        ),
        (VARS % "d.jsonl", {"d.jsonl": '{"x": 1, "y": null}\n'}, ["d.jsonl:1:", "`y` is nothing"]),
        (VARS % "d.yaml", {"d.yaml": "- {x: 1, y: 2}\n- {x: 1, y: [2]}\n"}, ["d.yaml:2:", "flat"]),
        (
            VARS % "d.yaml",
            {"d.yaml": "- {x: 1, y: 2}\n- {x: 1, y: '2'}\n"},
            ["d.yaml:2:", "repeats"],
        ),
        (VARS % "d.txt", {"d.txt": "x"}, ["m.yaml:5:", "vars_from", "not a .csv / .jsonl"]),
        (VARS % "nope.csv", {}, ["m.yaml:5:", "does not exist"]),
        (VARS % "../d.csv", {}, ["m.yaml:5:", "leads outside the manifest's folder"]),
        (
            PROMPTS,
            {"p.jsonl": '{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n'},
            ["p.jsonl:2:", "duplicate prompt id (line 1"],
        ),
        (PROMPTS, {"p.jsonl": '{"id": "../a", "prompt": "x"}\n'}, ["p.jsonl:1:", "not a safe id"]),
        (
            PROMPTS,
            {"p.jsonl": '{"id": "a", "prompt": "x", "seed": 1}\n'},
            ["p.jsonl:1:", "unknown key `seed`"],
        ),
        (
            PROMPTS,
            {"p.jsonl": '{"id": "a", "prompt": "x", "params": {"n": 9}}\n'},
            ["p.jsonl:1:", "params.n", "out of range"],
        ),
        (
            PROMPTS,
            {"p.jsonl": '{"id": "a", "prompt": "x", "image": "gone.png"}\n'},
            ["p.jsonl:1:", "does not exist"],
        ),
        (
            PROMPTS + "sweep: {mode: [standard, quality]}\n",
            {"p.jsonl": '{"id": "a", "prompt": "x", "params": {"mode": "quality"}}\n'},
            ["p.jsonl:1:", "also swept"],
        ),
        (
            PROMPTS + "prompts:\n  - {id: a, prompt: x}\n",
            {"p.jsonl": '{"id": "a", "prompt": "y"}\n'},
            ["p.jsonl:1:", "also an id under the manifest's `prompts`"],
        ),
        (PROMPTS, {"p.jsonl": ""}, ["p.jsonl:1:", "no prompts"]),
        (
            PROMPTS,
            {"p.jsonl": '{"id": "b", "prompt": "x"}\n{"id": "a", "prompt": "' + LONG + '"}\n'},
            ["p.jsonl:2:", "prompt", "at most 10000 characters"],
        ),
        ("name: t\n", {}, ["m.yaml:1:1:", "`prompts` is required", "prompts_from"]),
        (
            VARS % "d.csv" + "include:\n  - {x: 9, y: 9}\n",
            {"d.csv": "x,y\n1,2\n"},
            ["m.yaml:7:", "cannot concern a prompt whose vars come from a file"],
        ),
    ],
)
def test_bad_data_names_the_file_and_line(
    tmp_path: Path, manifest: str, files: dict[str, str], fragments: list[str]
) -> None:
    message = _error(tmp_path, manifest, files)
    for fragment in fragments:
        assert fragment in message, message


def _million_csv(folder: Path, rows: int) -> Path:
    with (folder / "products.csv").open("w") as handle:
        handle.write("product,color\n")
        for i in range(rows):
            handle.write(f"product-{i},{'red' if i % 2 else 'blue'}\n")
    return _write(
        folder,
        "m.yaml",
        'name: t\nprompts:\n  - id: a\n    prompt: "{product} in {color}"\n'
        "    vars_from: products.csv\nsweep:\n  mode: [standard, quality]\n"
        "budget: {max_credits: 100}\n",
    )


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


def test_a_million_row_file_plans_in_the_memory_of_ten_rows(tmp_path: Path) -> None:
    (tmp_path / "big").mkdir()
    (tmp_path / "small").mkdir()
    big, big_peak = _plan_peak_kib(_million_csv(tmp_path / "big", 1_000_000))
    small, small_peak = _plan_peak_kib(_million_csv(tmp_path / "small", 10))
    total = big["total"]
    assert isinstance(total, dict) and total["jobs"] == 2_000_000
    budget = big["budget"]
    assert isinstance(budget, dict) and budget["fits"] is False
    assert isinstance(budget["jobs_within"], int) and 0 < budget["jobs_within"] < 2_000_000
    assert isinstance(small["total"], dict) and small["total"]["jobs"] == 20
    assert big_peak < small_peak + 20_000  # KiB


def test_file_prompts_stream(tmp_path: Path) -> None:
    with (tmp_path / "p.jsonl").open("w") as handle:
        for i in range(20_000):
            handle.write(json.dumps({"id": f"p{i}", "prompt": f"prompt {i}"}) + "\n")
    m = load_manifest(_write(tmp_path, "m.yaml", PROMPTS))
    tracemalloc.start()
    try:
        assert count_jobs(m) == 20_000
        last = None
        for last in expand(m):  # noqa: B007 - walking the stream is the test
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert last is not None and last.prompt_id == "p19999" and last.index == 19_999
    assert peak < 2_000_000  # bytes: a few prompts' worth, not the file's 20,000


def test_the_plan_of_a_prompts_file_has_one_row_for_the_file(tmp_path: Path) -> None:
    lines = [{"id": f"p{i}", "prompt": f"prompt {i}"} for i in range(5)]
    _write(tmp_path, "p.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    sweep = "sweep:\n  mode: [standard, quality]\nbudget: {max_credits: 0.2}\n"
    m = load_manifest(
        _write(
            tmp_path,
            "m.yaml",
            "name: t\nprompts:\n  - {id: a, prompt: x}\nprompts_from: p.jsonl\n" + sweep,
        )
    )
    inline = "".join(f"  - {{id: p{i}, prompt: prompt {i}}}\n" for i in range(5))
    same = load_manifest(
        _write(
            tmp_path, "same.yaml", "name: t\nprompts:\n  - {id: a, prompt: x}\n" + inline + sweep
        )
    )
    plan, expected = make_plan(m), make_plan(same)
    assert [(p.prompt_id, p.jobs) for p in plan.prompts] == [
        ("a", 2),
        (str(tmp_path / "p.jsonl"), 10),
    ]
    assert (plan.jobs, plan.images) == (expected.jobs, expected.images) == (12, 12)
    assert plan.credits == pytest.approx(expected.credits)
    # The cap falls inside the file: counted in order, as the credit guard reserves.
    assert plan.fits is expected.fits is False
    assert plan.jobs_within_budget == expected.jobs_within_budget
    assert plan.credits_within_budget == pytest.approx(expected.credits_within_budget)


def _prompts_file(folder: Path, lines: int) -> Path:
    with (folder / "p.jsonl").open("w") as handle:
        for i in range(lines):
            handle.write(json.dumps({"id": f"p{i}", "prompt": f"a picture, number {i}"}) + "\n")
    return _write(folder, "m.yaml", PROMPTS + "budget: {max_credits: 10}\n")


def test_a_large_prompts_file_plans_in_flat_memory(tmp_path: Path) -> None:
    (tmp_path / "big").mkdir()
    (tmp_path / "small").mkdir()
    big, big_peak = _plan_peak_kib(_prompts_file(tmp_path / "big", 100_000))
    _, small_peak = _plan_peak_kib(_prompts_file(tmp_path / "small", 10))
    total = big["total"]
    assert isinstance(total, dict) and total["jobs"] == 100_000
    prompts = big["prompts"]
    assert isinstance(prompts, list) and len(prompts) == 1  # one row for the file
    budget = big["budget"]
    assert isinstance(budget, dict) and budget["jobs_within"] == 500  # $10 at $0.02 (standard, 1k)
    assert big_peak < small_peak + 20_000  # KiB
