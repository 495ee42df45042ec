"""runner: a batch job runner for text-to-image APIs.

A YAML manifest of prompts and parameter sweeps in; a folder of images, each
with a JSON sidecar, out; under a requests-per-minute and a credit budget.
The Python API (documented in `runner.api`, which holds it):

    import runner

    manifest = runner.load_manifest("manifests/example.yaml")  # ManifestError: file:line, fix
    plan = runner.plan(manifest, filter=["mode=quality"])      # no request: jobs, credits (USD)
    report = runner.run(manifest, out="outputs/try", backend="local", limit=2)  # blocks
    folder = runner.open_output(report.out)                    # images(), status(), verify()
    for job in runner.expand(manifest): ...                    # the lazy job stream

- `load_manifest(path) -> Manifest`
- `plan(manifest, *, filter=(), limit=None, rpm=None, max_credits=None) -> Plan`
- `run(manifest, *, out=None, backend="auto", filter=(), limit=None, max_credits=None,
  rpm=None, retry_failed=False, env=None) -> RunReport`
- `open_output(path) -> OutputFolder`

The public names load on first use, so `import runner.errors` (or the
emulator, or `runner --version`) does not pay for pydantic and YAML.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "OutputFolder",
    "__version__",
    "expand",
    "load_manifest",
    "make_plan",
    "open_output",
    "plan",
    "run",
]

if TYPE_CHECKING:
    from runner.api import OutputFolder, load_manifest, open_output, plan, run
    from runner.plan import make_plan
    from runner.sweep import expand

_LAZY = {
    "OutputFolder": "runner.api",
    "load_manifest": "runner.api",
    "open_output": "runner.api",
    "plan": "runner.api",
    "run": "runner.api",
    "make_plan": "runner.plan",
    "expand": "runner.sweep",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module), name)


class _Package(types.ModuleType):
    """This package, keeping `runner.run` / `runner.plan` the API's functions.

    Importing the submodules `runner.run` and `runner.plan` makes Python set
    them as attributes of the package, which would hide the functions of the
    same names. Those attributes are dropped here, so `runner.run(...)` stays
    the function; the modules are still imported as usual (`from runner.run
    import ...` reads sys.modules, not this attribute).
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("run", "plan") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
