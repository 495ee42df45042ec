"""The manifest: a YAML file of prompts and sweeps, checked whole, as frozen values.

    manifest = load_manifest("manifests/example.yaml")   # ManifestError on any problem

Loading runs in one direction, a module per step:

    source.py   safe YAML, the file:line:column of every value, size cap
    yaml12.py   the YAML loader with 1.2 core-schema scalars (`16:9` stays text)
    fields.py   the value types: each field's check (message and hint) and JSON Schema
    schema.py   pydantic models of those (extra keys forbidden); the JSON Schema
    messages.py pydantic's errors in plain words with "did you mean"
    build.py    load, validate, check across keys, and the frozen values; the checks
                across keys, a module per section, share checker.py (the problems
                found so far, the input images loaded):
      axes.py     sweep and zip groups: lists, zip lengths, axes set twice
      prompts.py  ids, vars and templates, a prompt's images, vars_from / prompts_from
      entries.py  include and exclude: keys, values, targets
      output.py   output.dir, the name template, no two jobs on one file name
    hosting.py  the provider a manifest is for, and the limits the checks read from it
    images.py   input images: a file next to the manifest, an http(s) URL, a data URI
    rows.py     data files read row by row (CSV, JSON Lines, YAML), with their lines
    data.py     data files (vars_from rows, prompts_from lines): checked in one pass,
                then re-read lazily on each expansion
    model.py    the frozen values that `runner.sweep` and `runner.plan` read

Every failure is a `runner.errors.ManifestError` naming file:line:column, the
field and the fix. docs/manifest.md describes the format.
"""

from runner.manifest.build import build_manifest, load_manifest, parse_manifest
from runner.manifest.model import (
    AXES,
    Api,
    Budget,
    Combination,
    Coordinator,
    Manifest,
    Output,
    Prompt,
    Unit,
    Value,
)
from runner.manifest.schema import manifest_json_schema

__all__ = [
    "AXES",
    "Api",
    "Budget",
    "Combination",
    "Coordinator",
    "Manifest",
    "Output",
    "Prompt",
    "Unit",
    "Value",
    "build_manifest",
    "load_manifest",
    "manifest_json_schema",
    "parse_manifest",
]
