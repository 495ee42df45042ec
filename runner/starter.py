"""`runner init [DIR]` and `runner schema --write PATH`: the files a new project starts from.

    DIR/manifest.yaml                  a small manifest that validates and runs as it is
    DIR/manifest.schema.json           its JSON Schema (editors read the first line's link)
    DIR/.gitignore                     keeps outputs/ out of git
    DIR/.github/workflows/images.yml   an example CI job: validate, plan, run, grid, upload

Files that exist are kept unless `force`, so `init` never destroys work.
Every file is written atomically. The manifest's text is a template with the
run's name only; `tests` validate it through `load_manifest`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from runner.errors import UsageError
from runner.manifest.schema import ID_RULE, manifest_schema_text
from runner.store import write_atomic

MANIFEST_NAME: Final = "manifest.yaml"
SCHEMA_NAME: Final = "manifest.schema.json"
WORKFLOW_PATH: Final = ".github/workflows/images.yml"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

MANIFEST_TEMPLATE: Final = """\
# yaml-language-server: $schema=./manifest.schema.json
#
# A starter manifest: (2 mugs + 1 lighthouse) x 2 modes = 6 jobs at 1k (about $0.21).
#   runner validate manifest.yaml
#   runner plan manifest.yaml --jobs          # every job, with its price and output path
#   runner run manifest.yaml --limit 2        # a cheap first try (the emulator without a key)
# The reference is docs/manifest.md in the runner repository.
name: {name}

defaults:
  resolution: 1k
  aspect_ratio: "1:1"
  output_format: png
  n: 1

prompts:
  - id: mug
    prompt: A {{color}} ceramic mug on a wooden table, soft studio light, product photo
    vars:
      color: [red, teal]
  - id: lighthouse
    prompt: A lighthouse on a cliff at dusk, painted in watercolor
  # More prompts can come from a file, one JSON object a line:
  # prompts_from: prompts.jsonl     # {{"id": "a", "prompt": "...", "params": {{"n": 2}}}}

sweep:
  mode: [standard, quality]

budget:
  max_credits: 1.00          # USD: the run never reserves more
  requests_per_minute: 5     # Segmind's Free tier

output:
  dir: outputs/{name}
"""

GITIGNORE: Final = """\
# runner's images, sidecars and ledgers (see the manifest's output.dir)
outputs/
"""

WORKFLOW: Final = """\
# An example: make the images of manifest.yaml on every pull request that
# changes it, and attach a contact sheet. Set the SEGMIND_API_KEY secret to
# call Segmind; without it the run uses runner's embedded emulator (free).
name: images
on:
  pull_request:
    paths: [manifest.yaml, "*.jsonl", "*.csv"]
jobs:
  images:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {{python-version: "3.11"}}
      # runner itself, from where you keep it (a fork, a tag, a wheel)
      - run: pip install "git+https://github.com/<you>/runner"
      - run: runner validate manifest.yaml
      - run: runner plan manifest.yaml --check   # exit 1 when the budget does not fit
      # Without a terminal the run prints a status line at each change and every 30 s.
      - run: runner run manifest.yaml --yes --max-failures 5% --junit junit.xml
        env:
          SEGMIND_API_KEY: ${{{{ secrets.SEGMIND_API_KEY }}}}
      - run: runner grid outputs/{name} --rows prompt --cols mode -o grid.png
        if: always()
      - run: runner export outputs/{name} --csv -o images.csv
        if: always()
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: images
          path: |
            outputs/{name}
            grid.png
            images.csv
            junit.xml
"""


@dataclass(frozen=True, slots=True)
class StarterResult:
    """The files `write_starter` wrote and those it kept because they existed."""

    written: tuple[Path, ...]
    kept: tuple[Path, ...]


def starter_name(folder: Path) -> str:
    """A safe run name from a folder's name (`My Images!` -> `My-Images`), else `images`."""
    text = _UNSAFE.sub("-", folder.resolve().name).strip("-._")[:64]
    return text if _ID.match(text) and ".." not in text else "images"


def starter_files(name: str) -> dict[str, str]:
    """The starter's files (path relative to DIR -> text) for the run `name`. Pure."""
    if not _ID.match(name) or ".." in name:
        raise UsageError(f"--name {name!r}: a run's name must be {ID_RULE}")
    return {
        MANIFEST_NAME: MANIFEST_TEMPLATE.format(name=name),
        SCHEMA_NAME: manifest_schema_text(),
        ".gitignore": GITIGNORE,
        WORKFLOW_PATH: WORKFLOW.format(name=name),
    }


def write_starter(folder: Path, *, name: str | None = None, force: bool = False) -> StarterResult:
    """Write the starter files into `folder` (created if needed).

    Existing files are kept unless `force`. Raises UsageError for a bad name.
    """
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file; name a folder for the new project")
    files = starter_files(name or starter_name(folder))
    written, kept = [], []
    for relative, text in files.items():
        path = folder / relative
        if path.exists() and not force:
            kept.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode("utf-8"))
        written.append(path)
    return StarterResult(tuple(written), tuple(kept))


def write_schema(path: Path) -> Path:
    """Write the manifest's JSON Schema to `path` atomically (`runner schema --write`)."""
    if path.is_dir():
        path = path / SCHEMA_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, manifest_schema_text().encode("utf-8"))
    return path
