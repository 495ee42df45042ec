"""Job identity: scheme k1 keys are pinned, so a change of the scheme cannot go unseen."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from runner.jobs import ImageInput, Request, job_key, make_job
from runner.manifest import parse_manifest
from runner.sweep import expand

LEOPARD = Request(
    prompt="A majestic snow leopard",
    mode="standard",
    aspect_ratio="16:9",
    resolution="2k",
    n=1,
    output_format="png",
)
BEACH = ImageInput(
    kind="path",
    source="inputs/beach.jpg",
    sha256="da82a6b671aa8a6b85a6858af9f959b38ba3e6e802c9e442968ad06e2bea19f3",
    path="/x/inputs/beach.jpg",
)
EDIT = Request(
    prompt="Ein Café – ☕ {edit}",  # noqa: RUF001  (non-ASCII on purpose: keys hash UTF-8)
    mode="quality",
    aspect_ratio="1:1",
    resolution="1k",
    n=2,
    output_format="webp",
    image=BEACH,
)

# Computed once with scheme k1 and written down: if one changes, the scheme
# changed, and every ledger written before would stop matching. Change
# KEY_SCHEME (k2) with it, never these values alone.
PINNED = [
    (
        {"endpoint": "v2", "prompt_id": "leopard", "request": LEOPARD, "repeat": 0},
        "k1:a7bd0ffad2cdb7140b5da8868fff1d44607aa4582982fda0421df2fad99954a8",
    ),
    (
        {"endpoint": "v1", "prompt_id": "leopard", "request": LEOPARD, "repeat": 1},
        "k1:3fda648c265748eb293d758f38942782d655e1fbb1d4c99aade13f93be9c31e5",
    ),
    (
        {"endpoint": "v2", "prompt_id": "sky-edit", "request": EDIT, "repeat": 0},
        "k1:d9062ecc457db49cca75710f5afbac1be9faa14d7e5ca4da0c65ab328dd32bb4",
    ),
]


@pytest.mark.parametrize(("fields", "key"), PINNED)
def test_pinned_keys(fields: dict[str, object], key: str) -> None:
    assert job_key(model="grok-imagine-image", **fields) == key  # type: ignore[arg-type]


def test_a_manifest_expands_to_the_pinned_key() -> None:
    text = (
        "name: t\ndefaults: {resolution: 2k}\n"
        "prompts:\n  - id: leopard\n    prompt: A majestic {animal}\n"
        "    vars: {animal: [snow leopard]}\n"
    )
    job = next(expand(parse_manifest(text)))
    assert job.request == LEOPARD
    assert job.key == PINNED[0][1]
    assert job.key8 == "a7bd0ffa"


def test_the_image_counts_by_its_hash_not_its_place() -> None:
    moved = dataclasses.replace(EDIT, image=dataclasses.replace(BEACH, path="/elsewhere/b.jpg"))
    assert (
        job_key(
            model="grok-imagine-image", endpoint="v2", prompt_id="sky-edit", request=moved, repeat=0
        )
        == PINNED[2][1]
    )
    other = dataclasses.replace(EDIT, image=dataclasses.replace(BEACH, sha256="0" * 64))
    assert (
        job_key(
            model="grok-imagine-image", endpoint="v2", prompt_id="sky-edit", request=other, repeat=0
        )
        != PINNED[2][1]
    )


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "A majestic snow leopard."},
        {"mode": "quality"},
        {"aspect_ratio": "1:1"},
        {"resolution": "1k"},
        {"n": 2},
        {"output_format": "jpeg"},
        {"image": BEACH},
    ],
)
def test_every_param_is_part_of_the_key(change: dict[str, object]) -> None:
    changed = dataclasses.replace(LEOPARD, **change)  # type: ignore[arg-type]
    key = job_key(
        model="grok-imagine-image", endpoint="v2", prompt_id="leopard", request=changed, repeat=0
    )
    assert key.startswith("k1:") and key != PINNED[0][1]


def test_model_and_prompt_id_are_part_of_the_key() -> None:
    base = {"endpoint": "v2", "request": LEOPARD, "repeat": 0}
    assert job_key(model="other-model", prompt_id="leopard", **base) != PINNED[0][1]  # type: ignore[arg-type]
    assert job_key(model="grok-imagine-image", prompt_id="cat", **base) != PINNED[0][1]  # type: ignore[arg-type]


def test_make_job_carries_its_origin() -> None:
    job = make_job(
        index=7,
        prompt_id="leopard",
        request=LEOPARD,
        model="grok-imagine-image",
        vars=(("animal", "snow leopard"),),
        sweep=(("mode", "standard"),),
        repeat=0,
    )
    assert job.key == PINNED[0][1]
    assert (job.index, job.vars, job.sweep) == (
        7,
        (("animal", "snow leopard"),),
        (("mode", "standard"),),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.index = 8  # type: ignore[misc]


def _reference_key(model: str, endpoint: str, prompt_id: str, request: Request, repeat: int) -> str:
    """Scheme k1 as the module docstring states it: sha256 of json.dumps's canonical text."""
    params: dict[str, object] = dict(request.params())
    shas = [image.sha256 for image in request.images]
    params["image"] = shas if len(shas) > 1 else shas[0] if shas else None
    doc = {
        "endpoint": endpoint,
        "model": model,
        "params": params,
        "prompt_id": prompt_id,
        "repeat": repeat,
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "k1:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


TWO_IMAGES = dataclasses.replace(EDIT, more_images=(dataclasses.replace(BEACH, sha256="ab" * 32),))
ODD = dataclasses.replace(
    LEOPARD,
    prompt='quotes " and \\ backslash, \n newline, \t tab, \x01 control, \u2028 sep, 🐆',
    n=10,
)


@pytest.mark.parametrize("request_", [LEOPARD, EDIT, TWO_IMAGES, ODD])
@pytest.mark.parametrize(("prompt_id", "repeat"), [("leopard", 0), ('ïd "q"', 12)])
def test_the_key_text_is_json_dumps_of_the_documented_document(
    request_: Request, prompt_id: str, repeat: int
) -> None:
    # job_key writes the canonical text itself (it is on every job's path);
    # it must be byte for byte what json.dumps makes of the documented doc.
    for endpoint in ("v2", "v1"):
        fields = {"model": "grok-imagine-image", "prompt_id": prompt_id, "repeat": repeat}
        assert job_key(endpoint=endpoint, request=request_, **fields) == _reference_key(  # type: ignore[arg-type]
            endpoint=endpoint,
            request=request_,
            **fields,  # type: ignore[arg-type]
        )
