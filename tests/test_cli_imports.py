"""`runner plan` and `runner validate` start lean: the emulator's stack is never imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "example.yaml"
# The emulator package and what it stands on (ASGI app, loopback server, image codecs).
HEAVY = ("runner.emulator", "uvicorn", "starlette", "PIL")

_PROBE = f"""
import json, sys
from runner.cli import main
code = main(sys.argv[1:])
heavy = {HEAVY!r}
loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
print(json.dumps({{"code": code, "loaded": loaded}}))
"""


def _run(*argv: str) -> dict[str, object]:
    # A fresh interpreter: this test process has long imported everything.
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    last = result.stdout.strip().splitlines()[-1]
    doc: dict[str, object] = json.loads(last)
    return doc


@pytest.mark.parametrize("argv", [("plan", str(MANIFEST)), ("validate", str(MANIFEST))])
def test_plan_and_validate_import_no_emulator_nor_its_stack(argv: tuple[str, ...]) -> None:
    doc = _run(*argv)
    assert doc["code"] == 0
    assert doc["loaded"] == [], f"{argv[0]} imported {doc['loaded']}"


def test_the_emulator_command_still_gets_its_options() -> None:
    # Its options are added only when `runner emulator` is parsed: --help lists them.
    result = subprocess.run(
        [sys.executable, "-m", "runner", "emulator", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "--port" in result.stdout
    assert "--time-scale" in result.stdout
