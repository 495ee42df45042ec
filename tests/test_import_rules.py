"""The paid path loads no emulator: checked on the source and in a fresh interpreter.

lint-imports (pyproject's contracts) forbids the paid path to import
runner.emulator, except two edges it ignores: the local backend is built
inside functions of runner.run and runner.backends.select. These tests hold
that exception to its word.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAID_PATH = ("runner.run", "runner.scheduling", "runner.backends.segmind", "runner.store")
PAID_PATH += ("runner.reporting", "runner.backends.select")


def _modules() -> list[str]:
    names: list[str] = []
    for name in PAID_PATH:
        names.append(name)
        folder = ROOT / name.replace(".", "/")
        if folder.is_dir():
            names += [f"{name}.{m.name}" for m in pkgutil.iter_modules([str(folder)])]
    return sorted(names)


def _source(module: str) -> Path:
    path = ROOT / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _module_level_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of every import that runs when the module loads."""
    found: list[tuple[int, str]] = []

    def walk(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.extend((node.lineno, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append((node.lineno, node.module))
            elif isinstance(node, ast.If):
                if ast.unparse(node.test) not in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                    walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try | ast.With):
                walk(node.body)
                for handler in getattr(node, "handlers", []):
                    walk(handler.body)
            # Functions and classes' methods run later; a class body runs now.
            elif isinstance(node, ast.ClassDef):
                walk(node.body)

    walk(tree.body)
    return found


@pytest.mark.parametrize("module", _modules())
def test_no_paid_path_module_imports_the_emulator_when_it_loads(module: str) -> None:
    tree = ast.parse(_source(module).read_text(encoding="utf-8"))
    emulator = [
        (line, name)
        for line, name in _module_level_imports(tree)
        if name == "runner.emulator" or name.startswith("runner.emulator.")
    ]
    assert emulator == [], f"{module} imports the emulator at module level: {emulator}"


def test_the_source_check_sees_a_module_level_import() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from runner.emulator import Emulator\n"
        "import runner.emulator.app\n"
        "def f():\n    from runner.emulator import create_app\n"
    )
    assert _module_level_imports(tree) == [(1, "typing"), (4, "runner.emulator.app")]


def test_loading_the_whole_paid_path_loads_no_emulator() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {_modules()!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('runner.emulator')"
        " or m.split('.')[0] in ('uvicorn', 'starlette'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
