"""The command line: exit codes, output, no tracebacks for user errors, the schema file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli import exit_code, main, schema_text
from runner.errors import (
    AuthError,
    InsufficientCredits,
    JobFailed,
    ManifestError,
    RunnerError,
    UsageError,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "manifests" / "example.yaml"
DEMO = ROOT / "manifests" / "sweep-demo.yaml"
BAD = ROOT / "tests" / "manifests_bad"


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == "ok: 6 jobs, 6 images, est $0.21\n"


def test_validate_bad_manifest_exits_2_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = BAD / "n-five.yaml"
    assert main(["validate", str(case)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {case}:7:17: prompts[0].params.n: 5 is out of range")
    assert "Traceback" not in captured.err
    assert captured.err.count("\n") == 1


def test_missing_manifest_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["plan", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: no such file" in capsys.readouterr().err


def test_debug_shows_the_traceback_and_keeps_the_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", str(BAD / "n-five.yaml")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    for argv in (
        ["--debug", "validate", str(BAD / "n-five.yaml")],
        ["validate", str(BAD / "n-five.yaml"), "--debug"],
    ):
        assert main(argv) == 2  # the same error, the same exit code
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "ManifestError" in err


def test_plan_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "mug" in out and "lighthouse" in out
    assert [line.split() for line in out.splitlines() if line.startswith("total")] == [
        ["total", "24", "24", "$0.54"]
    ]
    assert "fits under $1.00" in out


def test_plan_json_with_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(DEMO), "--json", "--rpm", "5", "--max-credits", "0.1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["jobs"] == 24
    assert data["rate"]["requests_per_minute"] == 5
    assert data["rate"]["min_duration_s"] == (5 - 1) * 60 + 10
    assert data["budget"]["fits"] is False
    assert data["budget"]["jobs_within"] == 5


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["plan"],
        ["plan", "x.yaml", "--rpm", "0"],
        ["plan", "x.yaml", "--max-credits", "lots"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err  # argparse or our own help text says what was wrong


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "plan" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("runner ")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("x"), 2),
        (ManifestError("x"), 2),
        (AuthError("x", status=401), 2),
        (InsufficientCredits("x", status=406), 3),
        (JobFailed("x"), 1),
        (RunnerError("x"), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_exit_codes(error: BaseException, code: int) -> None:
    assert exit_code(error) == code


def test_schema_is_committed_and_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    committed = (ROOT / "manifests" / "manifest.schema.json").read_text()
    assert printed == schema_text() == committed, (
        "manifests/manifest.schema.json is stale: run"
        " `.venv/bin/runner schema > manifests/manifest.schema.json`"
    )
    schema = json.loads(committed)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name"}
    # prompts inline or from a file (prompts_from): one of the two is required.
    assert schema["anyOf"] == [{"required": ["prompts"]}, {"required": ["prompts_from"]}]
    assert "prompts" in schema["properties"] and "sweep" in schema["properties"]


def test_examples_point_at_the_schema() -> None:
    for path in (EXAMPLE, DEMO):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=./manifest.schema.json"


def test_python_m_runner_plan_of_the_demo() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runner", "plan", "manifests/sweep-demo.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "plan for manifests/sweep-demo.yaml" in done.stdout
    assert "$0.54" in done.stdout
    assert done.stderr == ""


def test_python_m_runner_bad_manifest() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runner", "validate", "tests/manifests_bad/python-tag.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: tests/manifests_bad/python-tag.yaml:6:13:")
    assert "Traceback" not in done.stderr


def test_a_job_list_into_a_closed_pipe_is_no_traceback(tmp_path: Path) -> None:
    # `runner plan M --jobs --csv | head`: the reader leaves long before the
    # 2,000 lines (more than a pipe's buffer) are written.
    things = ", ".join(f"thing{i}" for i in range(2000))
    path = tmp_path / "m.yaml"
    path.write_text(
        f"name: m\nprompts:\n  - {{id: p, prompt: 'a {{t}}', vars: {{t: [{things}]}}}}\n"
    )
    for fmt in ([], ["--csv"], ["--json"]):
        with subprocess.Popen(
            [sys.executable, "-m", "runner", "plan", str(path), "--jobs", *fmt],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as child:
            assert child.stdout is not None and child.stderr is not None
            assert child.stdout.read(100)
            child.stdout.close()
            stderr = child.stderr.read().decode()
            code = child.wait(timeout=60)
        assert (code, stderr) == (0, ""), (fmt, stderr)


def test_plan_says_what_a_run_without_a_key_does(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The plan's "2 min 10 s" at the host's pace is ~13 s on the embedded emulator.
    monkeypatch.delenv("SEGMIND_API_KEY", raising=False)
    assert main(["plan", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "duration: at least ~2 min 10 s" in out
    local = "SEGMIND_API_KEY is not set: `run` goes to the embedded emulator at 10x speed"
    assert f"{local}: no credits spent, at least ~13 s\n" in out
    monkeypatch.setenv("SEGMIND_API_KEY", "sk-test-0123456789")
    assert main(["plan", str(DEMO)]) == 0
    assert "embedded emulator" not in capsys.readouterr().out
