"""manifests/manifest.schema.json says what `runner validate` says, wherever JSON Schema can.

Editors and CI outside the repo check a manifest with the schema alone, so
every rule of `validate` that JSON Schema can state is in it (patterns,
minItems, uniqueItems, propertyNames). Each manifest of tests/manifests_bad
fails `validate` (tests/test_manifest.py); here the schema must reject it
too, unless its rule is listed below with why the schema cannot say it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import jsonschema
import pytest

from runner.errors import ManifestError
from runner.manifest import load_manifest
from runner.manifest.schema import manifest_json_schema
from runner.manifest.source import read_source

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "manifests_bad"
SCHEMA_FILE = ROOT / "manifests" / "manifest.schema.json"

NOT_A_DOCUMENT: Final = frozenset(
    {"bad-indent", "bad-yaml", "duplicate-key", "empty", "multiple-documents", "not-a-mapping",
     "python-tag", "alias-bomb", "prompt-too-long", "var-value-too-long"}
)  # fmt: skip
"""Refused while reading the YAML (its syntax, or its size and text caps, checked before the
document is built): there is no document for a schema to check."""

SCHEMA_CANNOT: Final = {
    "axis-in-sweep-and-zip": "an axis in both sweep and zip: a rule across two keys",
    "params-vs-sweep": "a param set on the prompt and swept: a rule across two keys",
    "duplicate-ids": "ids unique across prompts: uniqueItems compares whole items, not one key",
    "undefined-var": "a {field} of the text must be a key of vars: text against keys",
    "unused-var": "a var must appear in the text as {name}: keys against text",
    "exclude-matches-nothing": "an exclude must match some combination: needs the product",
    "exclude-unknown-key": "an entry's keys must be axes or the targeted prompts' vars",
    "include-unknown-prompt": "`prompt:` must name a prompt id: a reference across keys",
    "zip-unequal": "zipped lists of equal length: no keyword compares two lists' lengths",
    "name-clash": "no two jobs may share a file name: needs the expansion",
    "n-five": "n's cap is the provider's (--provider may override api.provider): the schema "
    "allows the largest, xai's 10",
    "image-not-an-image": "the file's bytes must be an image: the disk",
    "image-outside": "the path must resolve inside the manifest's folder: the disk",
    "missing-image": "the file must exist: the disk",
}
"""The rules of `validate` JSON Schema cannot state, by the bad manifest that shows each."""


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema == manifest_json_schema()  # the committed file is what `runner schema` says
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


CASES = sorted(BAD.glob("*.yaml"))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_the_schema_refuses_what_validate_refuses_where_it_can_say_so(
    case: Path, validator: Any
) -> None:
    with pytest.raises(ManifestError):
        load_manifest(case)
    try:
        data = read_source(case, display=str(case)).data
    except ManifestError:
        assert case.stem in NOT_A_DOCUMENT
        return
    assert case.stem not in NOT_A_DOCUMENT
    errors = list(validator.iter_errors(data))
    if case.stem in SCHEMA_CANNOT:
        # Kept honest: a rule the schema learns to state leaves the list.
        assert errors == [], f"the schema now refuses {case.name}: remove it from SCHEMA_CANNOT"
    else:
        assert errors, f"the schema accepts {case.name}, which validate refuses"


def test_every_listed_case_exists() -> None:
    stems = {case.stem for case in CASES}
    assert set(SCHEMA_CANNOT) <= stems and stems >= NOT_A_DOCUMENT


@pytest.mark.parametrize("good", sorted((ROOT / "manifests").glob("*.yaml")), ids=str)
def test_the_schema_accepts_what_validate_accepts(good: Path, validator: Any) -> None:
    load_manifest(good)
    assert list(validator.iter_errors(read_source(good, display=str(good)).data)) == []


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("inputs/beach.jpg", True),
        ("https://example.com/a.png", True),
        ("C:/pictures/a.png", True),
        ("data:image/png;base64,iVBORw0KGgo=", True),
        ("ftp://example.com/a.png", False),
        ("data:image/png;base64,@@@", False),
        ("data:text/plain;base64,aGk=", False),
    ],
)
def test_the_image_pattern_follows_the_loaders_kinds(value: str, ok: bool, validator: Any) -> None:
    doc = {"name": "m", "prompts": [{"id": "p", "prompt": "x", "image": value}]}
    assert validator.is_valid(doc) is ok


@pytest.mark.parametrize(
    ("doc", "ok"),
    [
        ({"prompt": "a {color} cat {{literal}}", "vars": {"color": ["red"]}}, True),
        ({"prompt": "a {color!r} cat", "vars": {"color": ["red"]}}, False),
        ({"prompt": "a } cat"}, False),
        ({"prompt": "a {color} cat", "vars": {"color": []}}, False),
        ({"prompt": "a {color} cat", "vars": {"color": ["red", "red"]}}, False),
        ({"prompt": "a {prompt} cat", "vars": {"prompt": ["red"]}}, False),
        ({"id": "a..b", "prompt": "x"}, False),
    ],
)
def test_prompt_rules_in_the_schema(doc: dict[str, Any], ok: bool, validator: Any) -> None:
    manifest = {"name": "m", "prompts": [{"id": "p", **doc}]}
    assert validator.is_valid(manifest) is ok


@pytest.mark.parametrize(
    ("output", "ok"),
    [
        ({"name": "{prompt}/{color}-{i}"}, True),
        ({"pattern": "{prompt_id}-{key8}-{i}"}, True),
        ({"name": "{prompt}/{key8}"}, False),
        ({"name": "/abs/{i}"}, False),
        ({"name": "a\\\\{i}"}, False),
    ],
)
def test_name_templates_in_the_schema(output: dict[str, str], ok: bool, validator: Any) -> None:
    manifest = {"name": "m", "prompts": [{"id": "p", "prompt": "x"}], "output": output}
    assert validator.is_valid(manifest) is ok
