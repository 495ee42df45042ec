"""Hostile inputs at the command line (issue 13's lows): each a clear exit code, no traceback.

`runner` as a user runs it (a subprocess); the emulator on loopback.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.emulator import Served
from tests.test_cli_run import KEY, manifest, runner

ONE_JOB = "name: t\nprompts:\n  - id: a\n    prompt: a cat\n"


@pytest.mark.parametrize(
    ("folder", "says"),
    [
        ("out/a\\0b", "it contains a NUL byte"),
        ("out/" + "d" * 300 + "/x", "is 300 bytes long, above the 255"),
    ],
    ids=["nul-byte", "300-char-component"],
)
def test_an_output_dir_no_file_system_holds_is_exit_2(
    tmp_path: Path, folder: str, says: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(ONE_JOB + f'output: {{dir: "{tmp_path}/{folder}"}}\n')
    for command in (["validate"], ["plan"], ["run", "--no-progress"]):
        done = runner(*command[:1], str(path), *command[1:])
        assert done.returncode == 2, (command, done.stderr)
        assert "Traceback" not in done.stderr
        assert f"{path}:5:15: output.dir: cannot be used as a folder: " in done.stderr
        assert says in done.stderr
    assert not (tmp_path / "out").exists()


def test_an_out_option_no_file_system_holds_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(ONE_JOB)
    done = runner("run", str(path), "--out", str(tmp_path / ("x" * 300)), "--no-progress")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "argument --out: cannot use" in done.stderr and "is 300 bytes long" in done.stderr
    status = runner("status", str(tmp_path / ("x" * 300)))
    assert status.returncode == 2 and "Traceback" not in status.stderr


def test_a_fifo_as_image_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    path = tmp_path / "m.yaml"
    path.write_text(ONE_JOB + "    image: pipe.png\n")
    # No writer ever opens the FIFO: a validate that opened it blocking would hang.
    done = runner("validate", str(path), timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"{path}:5:12: prompts[0].image: the image path `pipe.png` is not a regular file" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


def test_a_refused_key_leaves_summary_and_junit_and_debug_keeps_the_code(
    tmp_path: Path, serve_emulator: Callable[..., Served]
) -> None:
    served = serve_emulator(api_keys=frozenset({KEY}), time_scale=0.01)
    path = str(manifest(tmp_path, 3))
    out, junit = tmp_path / "out", tmp_path / "junit.xml"
    remote = ["--backend", "segmind", "--base-url", served.base_url, "--time-scale", "0.01"]
    remote += ["--no-progress", "--junit", str(junit)]
    wrong = {"SEGMIND_API_KEY": "sk-wrong-key-0123456789"}
    refused = runner("run", path, *remote, env=wrong)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit"]["code"] == 2
    assert "Invalid API key" in summary["exit"]["reason"]
    assert (out / "summary.md").read_text().endswith("\n")
    root = ET.parse(junit).getroot()  # noqa: S314 (our own file)
    assert root.get("tests") == "3" and root.get("skipped") == "3"
    (out / "summary.json").unlink()
    junit.unlink()
    debug = runner("--debug", "run", path, *remote, env=wrong)
    assert debug.returncode == 2  # the same error, the same code, with a traceback
    assert "Traceback (most recent call last)" in debug.stderr
    assert "AuthError" in debug.stderr
    assert json.loads((out / "summary.json").read_text())["exit"]["code"] == 2
    assert junit.is_file()
