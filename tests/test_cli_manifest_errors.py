"""`runner validate` of a manifest with many problems: all at once, each at its place, capped."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_cli_run import runner

PLACE = re.compile(r"^(error: )?(?P<path>\S+\.yaml):(?P<line>\d+):(?P<col>\d+): ")


def test_every_problem_at_once_each_at_file_line_col_capped_at_20(tmp_path: Path) -> None:
    prompts = "".join(f"  - id: p{i}\n    prompt: a cat\n    params: {{n: 0}}\n" for i in range(25))
    path = tmp_path / "many.yaml"
    path.write_text(f"name: many\nprompts:\n{prompts}")
    done = runner("validate", str(path))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.rstrip("\n").splitlines()
    assert len(lines) == 21, done.stderr
    places = [PLACE.match(line) for line in lines[:20]]
    assert all(m is not None and m["path"] == str(path) for m in places), lines
    # In file order: prompt i's `n` is on line 5 + 3 i.
    assert [int(m["line"]) for m in places if m] == [5 + 3 * i for i in range(20)]
    assert all(f"prompts[{i}].params.n" in lines[i] for i in range(20))
    assert lines[20] == "[and 5 more problems]"


def test_problems_across_sections_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: m\n"
        "sweep: {resolution: [1k, 1k]}\n"
        "prompts:\n"
        "  - id: a\n    prompt: a {x} cat\n"
        "  - id: a\n    prompt: a dog\n"
        "  - id: b\n    prompt: a bird\n"
        "output: {pattern: '{prompt_id}/{nope}'}\n"
    )
    done = runner("validate", str(path))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 4, done.stderr
    assert [PLACE.match(line) is not None for line in lines] == [True] * 4
    text = done.stderr
    assert "sweep.resolution[1]" in text
    assert "declares no var `x`" in text
    assert "duplicate prompt id `a`" in text
    assert "output.pattern" in text
