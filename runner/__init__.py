"""runner: a batch job runner for text-to-image APIs.

A YAML manifest of prompts and parameter sweeps in; a folder of images, each
with a JSON sidecar, out; under a requests-per-minute and a credit budget.

    manifest = load_manifest("manifests/example.yaml")
    print(make_plan(manifest).jobs)
    for job in expand(manifest): ...

The public names load on first use, so `import runner.errors` (or the
emulator, or `runner --version`) does not pay for pydantic and YAML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "expand", "load_manifest", "make_plan"]

if TYPE_CHECKING:
    from runner.manifest import load_manifest
    from runner.plan import make_plan
    from runner.sweep import expand

_LAZY = {
    "load_manifest": "runner.manifest",
    "make_plan": "runner.plan",
    "expand": "runner.sweep",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module), name)
