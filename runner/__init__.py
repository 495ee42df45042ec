"""runner: a batch job runner for text-to-image APIs.

A YAML manifest of prompts and parameter sweeps in; a folder of images, each
with a JSON sidecar, out; under a requests-per-minute and a credit budget.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
