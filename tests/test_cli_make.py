"""The Makefile's install levels: `make run` the runtime only, `make test` the dev extras."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def planned(target: str, venv: Path) -> list[str]:
    """The commands `make -n TARGET` would run for a venv at `venv` (nothing is run)."""
    # Not a sub-make of the `make test` running this suite (CI): MAKELEVEL > 0
    # would add "make[1]: Entering directory" lines and MAKEFLAGS the outer flags.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def test_run_installs_the_runtime_only_and_test_the_dev_extras(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run = planned("run", venv)
    assert any(line.endswith("pip install -q -e .") for line in run), run
    assert not any("[dev]" in line for line in run)
    assert run[-1].startswith(f"{venv}/bin/runner run manifests/example.yaml")
    for target in ("test", "lint", "bench"):
        assert any("pip install -q -e '.[dev]'" in line for line in planned(target, venv))


def test_one_stamp_per_level(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    # After `make run`: `make run` installs nothing more, `make test` adds the extras.
    (venv / ".install-runtime").touch()
    assert not any("pip install" in line for line in planned("run", venv))
    assert any("[dev]" in line for line in planned("test", venv))
    # After `make test`: neither installs anything.
    (venv / ".install-dev").touch()
    assert not any("pip install" in line for line in planned("run", venv))
    assert not any("pip install" in line for line in planned("test", venv))
