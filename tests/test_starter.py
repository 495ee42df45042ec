"""`runner init` and `runner schema --write`: a starter project that validates and runs."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.cli import main, schema_text
from runner.manifest import load_manifest
from runner.starter import starter_name, write_starter
from runner.sweep import count_jobs

ROOT = Path(__file__).resolve().parent.parent


def test_init_writes_a_manifest_that_validates_with_its_schema_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "My Shots!"
    assert main(["init", str(project)]) == 0
    assert main(["validate", str(project / "manifest.yaml")]) == 0
    assert "ok: 6 jobs" in capsys.readouterr().out
    manifest = load_manifest(project / "manifest.yaml")
    assert manifest.name == "My-Shots" and count_jobs(manifest) == 6
    first = (project / "manifest.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./manifest.schema.json"
    schema = (project / "manifest.schema.json").read_text()
    assert schema == schema_text() == (ROOT / "manifests" / "manifest.schema.json").read_text()
    assert "outputs/" in (project / ".gitignore").read_text().splitlines()
    workflow = yaml.safe_load((project / ".github" / "workflows" / "images.yml").read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["images"]["steps"]]
    assert "runner validate manifest.yaml" in runs
    assert any(r.startswith("runner grid outputs/My-Shots") for r in runs)


def test_the_next_step_is_written_as_the_user_started_runner(tmp_path: Path) -> None:
    project = tmp_path / "my shots"
    done = subprocess.run(
        [sys.executable, "-m", "runner", "init", str(project)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    hint = done.stdout.splitlines()[-1]
    manifest = shlex.quote(str(project / "manifest.yaml"))
    assert hint == (
        f"next: python -m runner validate {manifest} && python -m runner plan {manifest}"
    )
    # The workflow example keeps the CI log talking and gates on the budget.
    workflow = (project / ".github" / "workflows" / "images.yml").read_text()
    assert "--no-progress" not in workflow and "plan manifest.yaml --check" in workflow


def test_init_keeps_existing_files_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "manifest.yaml").write_text("mine\n")
    result = write_starter(tmp_path)
    assert tmp_path / "manifest.yaml" in result.kept and len(result.written) == 3
    assert (tmp_path / "manifest.yaml").read_text() == "mine\n"
    forced = write_starter(tmp_path, force=True, name="shots")
    assert not forced.kept and load_manifest(tmp_path / "manifest.yaml").name == "shots"


def test_init_refuses_a_bad_name_and_a_file(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path), "--name", "../x"]) == 2
    (tmp_path / "f").write_text("")
    assert main(["init", str(tmp_path / "f")]) == 2
    assert starter_name(tmp_path / "...") == "images"


def test_the_starter_runs_on_the_embedded_emulator(tmp_path: Path) -> None:
    write_starter(tmp_path / "p")
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "p" / "manifest.yaml"), "--backend", "local"]
    assert main([*args, "--out", str(out), "--no-progress", "--limit", "1"]) == 0
    assert len(list(out.glob("mug/*.png"))) == 1


def test_schema_write(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "schema.json"
    assert main(["schema", "--write", str(target)]) == 0
    assert target.read_text() == schema_text()
    assert json.loads(target.read_text())["title"] == "runner manifest"
