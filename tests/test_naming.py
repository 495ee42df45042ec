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
