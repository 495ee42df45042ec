"""runner.naming: the one rule for names on disk, applied by the manifest at load time too."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ManifestError, UsageError
from runner.manifest import load_manifest
from runner.naming import check_name, name_problem


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("CON", "reserved device name"),
        ("com1.tar.gz", "reserved device name"),
        (".hidden", "starts with a dot"),
        ("trailing.", "ends with a dot"),
        ("a" * 65, "65 characters long"),
        ("snow-leopard_2", None),
    ],
)
def test_name_problem_is_check_names_rule(name: str, problem: str | None) -> None:
    found = name_problem(name)
    if problem is None:
        assert found is None
        assert check_name(name, field="x") == name
    else:
        assert found is not None and problem in found
        with pytest.raises(UsageError, match=problem):
            check_name(name, field="x")


@pytest.mark.parametrize("prompt_id", ["CON", "nul.x", "LPT9"])
def test_a_manifest_refuses_a_device_name_id_at_load_time(tmp_path: Path, prompt_id: str) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"name: m\nprompts:\n  - id: {prompt_id}\n    prompt: a cat\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(manifest)
    text = str(caught.value)
    assert f"{manifest}:3:9: prompts[0].id" in text
    assert "reserved device name on Windows" in text
    tmp_ok = tmp_path / "ok.yaml"
    tmp_ok.write_text("name: m\nprompts:\n  - id: console\n    prompt: a cat\n")
    assert load_manifest(tmp_ok).prompts[0].id == "console"


# -- output.name: checked for clashes across all jobs at load time (issue 15, item 3)


def _manifest(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text("name: m\n" + body)
    return path


def test_the_default_name_holds_the_var_values(tmp_path: Path) -> None:
    from runner.naming import relative_stem
    from runner.sweep import expand

    path = _manifest(
        tmp_path,
        "prompts:\n  - id: mug\n    prompt: a {color} mug on {surface}\n"
        "    vars: {color: [Crème], surface: [an oak table]}\n"
        "sweep: {aspect_ratio: ['16:9', '1:1']}\n",
    )
    job = next(expand(load_manifest(path)))
    assert relative_stem(job, 0) == f"mug/creme-an-oak-table-16x9-{job.key8}-0"


def test_a_long_default_name_is_cut_and_kept_unique_by_key8(tmp_path: Path) -> None:
    from runner.naming import SLUG_CHARS, relative_stem
    from runner.sweep import expand

    long_a, long_b = "x" * 40 + "-a", "x" * 40 + "-b"
    path = _manifest(
        tmp_path,
        f"prompts:\n  - id: p\n    prompt: '{{v}}'\n    vars: {{v: [{long_a}, {long_b}]}}\n"
        "sweep: {mode: [standard, quality]}\n",
    )
    stems = [relative_stem(job, 0) for job in expand(load_manifest(path))]
    assert len(set(stems)) == 4
    assert all(len(stem.split("/")[1]) <= SLUG_CHARS + len("-12345678-0") for stem in stems)


def test_two_jobs_sharing_a_name_is_a_load_error_naming_both(tmp_path: Path) -> None:
    path = _manifest(
        tmp_path,
        "prompts:\n  - id: mug\n    prompt: a {color} mug\n    vars: {color: [red, teal]}\n"
        "sweep: {mode: [standard, quality]}\n"
        "output: {name: '{prompt}/{color}-{i}'}\n",
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    text = str(caught.value)
    assert f"{path}:7:16: output.name" in text
    assert "job 0 (prompt `mug`) (color=red, mode=standard)" in text
    assert "job 1 (prompt `mug`) (color=red, mode=quality)" in text
    assert "would share the name `mug/red-0`" in text
    path.write_text(path.read_text().replace("{color}-{i}", "{color}-{mode}-{i}"))
    assert load_manifest(path).output.pattern == "{prompt}/{color}-{mode}-{i}"


def test_values_that_fold_alike_clash_as_case_insensitive_disks_would(tmp_path: Path) -> None:
    path = _manifest(
        tmp_path,
        "prompts:\n  - id: p\n    prompt: a {color} cat\n    vars: {color: [Red, red]}\n"
        "output: {name: '{color}-{i}'}\n",
    )
    with pytest.raises(ManifestError, match=r"\(color=Red\) and job 1 .*`red-0`"):
        load_manifest(path)


def test_a_huge_sweep_is_decided_by_structure_without_listing_it(tmp_path: Path) -> None:
    values = ", ".join(f"v{i}" for i in range(1000))
    body = (
        "prompts:\n  - id: p\n    prompt: '{a} and {b}'\n"
        f"    vars: {{a: [{values}], b: [{values}]}}\n"
        "sweep: {mode: [standard, quality]}\nrepeat: 500000\n"
    )
    # 10^12 jobs: unique when every varying factor is named...
    ok = _manifest(tmp_path, body + "output: {name: '{prompt}/{a}/{b}-{mode}-{repeat}-{i}'}\n")
    assert load_manifest(ok).output.pattern is not None
    # ...and a clash names two jobs that differ only in the factor left out.
    no_mode = _manifest(tmp_path, body + "output: {name: '{prompt}/{a}/{b}-{repeat}-{i}'}\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(no_mode)
    assert "the jobs of prompt `p` with mode=standard and those with mode=quality" in str(
        caught.value
    )
    assert "add {mode} (or {key8})" in str(caught.value)
    no_repeat = _manifest(tmp_path, body + "output: {name: '{prompt}/{a}/{b}-{mode}-{i}'}\n")
    with pytest.raises(ManifestError, match=r"repeat 0 of a job of prompt `p` and its repeat 1"):
        load_manifest(no_repeat)


def test_a_large_data_file_is_checked_for_clashes_in_bounded_memory(tmp_path: Path) -> None:
    rows = ["sku,color"] + [f"s{i},{'red' if i % 2 else 'teal'}" for i in range(30_000)]
    (tmp_path / "rows.csv").write_text("\n".join(rows) + "\n")
    body = "prompts:\n  - id: p\n    prompt: a {color} {sku}\n    vars_from: rows.csv\n"
    assert load_manifest(_manifest(tmp_path, body + "output: {name: '{sku}-{i}'}\n"))
    with pytest.raises(ManifestError, match=r"sku=s0, color=teal.*sku=s2, color=teal"):
        load_manifest(_manifest(tmp_path, body + "output: {name: '{color}-{i}'}\n"))


def test_name_and_its_older_spelling_pattern_are_one_setting(tmp_path: Path) -> None:
    body = "prompts:\n  - id: p\n    prompt: a cat\n"
    old = load_manifest(_manifest(tmp_path, body + "output: {pattern: '{prompt_id}-{i}'}\n"))
    new = load_manifest(_manifest(tmp_path, body + "output: {name: '{prompt_id}-{i}'}\n"))
    assert old.output.pattern == new.output.pattern == "{prompt_id}-{i}"
    both = _manifest(tmp_path, body + "output: {name: '{i}', pattern: '{i}'}\n")
    with pytest.raises(ManifestError, match="one setting given twice"):
        load_manifest(both)


def test_a_csv_of_3_rows_by_a_sweep_of_2_runs_as_6_jobs_named_from_the_template(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from runner.store import verify

    (tmp_path / "products.csv").write_text("color,surface\nred,oak\nteal,marble\nsand,slate\n")
    out = tmp_path / "out"
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: named\n"
        "defaults: {resolution: 1k, output_format: png}\n"
        "prompts:\n  - id: mug\n    prompt: a {color} mug on {surface}\n"
        "    vars_from: products.csv\n"
        "sweep: {aspect_ratio: ['16:9', '1:1']}\n"
        "budget: {requests_per_minute: 600}\n"
        f"output: {{dir: {out}, name: '{{prompt}}/{{color}}-{{surface}}-{{aspect_ratio}}-{{i}}'}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(path), "--no-progress", "--backend", "local"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    names = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.png"))
    assert names == sorted(
        f"mug/{c}-{s}-{r}-0.png"
        for c, s in (("red", "oak"), ("teal", "marble"), ("sand", "slate"))
        for r in ("16x9", "1x1")
    )
    assert verify(out).clean
