"""The sidecar: built from an allow-list, round-trips through disk, published schema."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from store_helpers import SMALL, encode, job

from runner.errors import StoreError
from runner.jobs import ImageInput
from runner.money import micros
from runner.store.media import check_image
from runner.store.sidecar import (
    Sidecar,
    Timings,
    build_sidecar,
    read_sidecar,
    sidecar_json,
    sidecar_schema,
    sidecar_schema_json,
    utc_stamp,
    write_sidecar,
)

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "sidecar.schema.json"
FAKE_KEY = "sk-FAKEKEY-store-0123456789"


def make(**overrides: object) -> Sidecar:
    the_job = overrides.pop("job", None) or job(
        n=2,
        vars=(("animal", "fox"),),
        sweep=(("mode", "standard"), ("n", 2)),
    )
    info = check_image(encode("png"), expected_format="png", expected_size=SMALL)
    args: dict[str, object] = {
        "job": the_job,
        "index": 1,
        "image": info,
        "file_name": "fox/x-12345678-1.png",
        "backend": "segmind",
        "base_url": "https://api.segmind.com",
        "request_id": "3f1c0000-0000-4000-8000-000000000000",
        "estimate": micros(0.04),
        "charged": micros(0.04),
        "submitted_at": 1_800_000_000.0,
        "completed_at": 1_800_000_013.25,
        "inference_s": 13.06,
        "wall_s": 13.25,
        "manifest_path": "manifests/example.yaml",
        "manifest_sha256": "ab" * 32,
        "seed": 42,
        "runner_version": "0.1.0",
    }
    args.update(overrides)
    return build_sidecar(**args)  # type: ignore[arg-type]


def test_fields_come_from_the_job_and_the_image() -> None:
    sidecar = make()
    assert sidecar.schema_version == 1
    assert sidecar.key.startswith("k1:")
    assert (sidecar.index, sidecar.n, sidecar.prompt_id) == (1, 2, "fox")
    assert sidecar.vars == {"animal": "fox"}
    assert sidecar.sweep == {"mode": "standard", "n": 2}
    assert sidecar.params.output_format == "png"
    assert sidecar.params.image is None
    assert (sidecar.file.width, sidecar.file.height, sidecar.file.format) == (*SMALL, "png")
    assert sidecar.timings.submitted_at == "2027-01-15T08:00:00.000Z"
    assert sidecar.timings.completed_at == "2027-01-15T08:00:13.250Z"
    assert sidecar.status == "COMPLETED"


def test_round_trip_through_disk(tmp_path: Path) -> None:
    sidecar = make()
    path = tmp_path / "fox" / "x-12345678-1.json"
    write_sidecar(path, sidecar)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert json.loads(text)["file"]["sha256"] == sidecar.file.sha256
    assert read_sidecar(path) == sidecar
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_data_uri_input_is_only_its_sha256() -> None:
    payload = base64.b64encode(encode("jpeg")).decode("ascii")
    uri = f"data:image/jpeg;base64,{payload}"
    image = ImageInput(kind="data", source=uri, sha256="cd" * 32)
    text = sidecar_json(make(job=job(image=image, n=2)))
    assert payload[:40] not in text
    assert "base64" not in text
    ref = json.loads(text)["params"]["image"]
    assert ref == {"kind": "data", "source": None, "path": None, "sha256": "cd" * 32}


def test_a_local_input_is_its_source_path_and_sha256() -> None:
    image = ImageInput(kind="path", source="inputs/beach.jpg", sha256="ef" * 32, path="/m/b.jpg")
    sidecar = make(job=job(image=image, n=2))
    assert sidecar.params.image is not None
    assert sidecar.params.image.source == "inputs/beach.jpg"
    assert sidecar.params.image.path == "/m/b.jpg"


def test_credentials_in_urls_never_reach_the_sidecar() -> None:
    image = ImageInput(
        kind="url", source="https://u:pw-secret@cdn.example/a.png?v=1", sha256="1" * 64
    )
    sidecar = make(
        job=job(image=image, n=2), base_url=f"https://user:{FAKE_KEY}@api.example.com/?key=z"
    )
    text = sidecar_json(sidecar)
    assert FAKE_KEY not in text
    assert "pw-secret" not in text
    assert sidecar.backend.base_url == "https://api.example.com/"
    assert sidecar.params.image is not None
    assert sidecar.params.image.source == "https://cdn.example/a.png?v=1"


def test_write_refuses_a_secret_and_does_not_repeat_it(tmp_path: Path) -> None:
    sidecar = make(job=job(prompt=f"oops {FAKE_KEY}", n=2))
    path = tmp_path / "x.json"
    with pytest.raises(StoreError) as caught:
        write_sidecar(path, sidecar, forbid=[FAKE_KEY, ""])
    assert FAKE_KEY not in str(caught.value)
    assert not path.exists()


def test_the_model_is_closed_and_frozen(tmp_path: Path) -> None:
    sidecar = make()
    with pytest.raises(ValidationError):
        sidecar.prompt = "changed"  # type: ignore[misc]
    doc = json.loads(sidecar_json(sidecar))
    doc["api_key"] = FAKE_KEY
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError, match="not a valid sidecar"):
        read_sidecar(path)
    doc.pop("api_key")
    doc["schema_version"] = 2
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError, match="schema_version"):
        read_sidecar(path)


def test_stamps_are_utc_iso() -> None:
    assert utc_stamp(0) == "1970-01-01T00:00:00.000Z"
    with pytest.raises(ValidationError):
        Timings.model_validate({"submitted_at": "yesterday"})


def test_the_published_schema_is_the_models() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == sidecar_schema_json(), (
        "docs/sidecar.schema.json is stale; regenerate it with: .venv/bin/python -c "
        '"from runner.store.sidecar import sidecar_schema_json as s; '
        "open('docs/sidecar.schema.json', 'w').write(s())\""
    )
    schema = sidecar_schema()
    assert schema["additionalProperties"] is False
    assert schema["properties"]["schema_version"]["const"] == 1
    names = set(schema["properties"])
    assert not names & {"api_key", "key_header", "headers", "client", "image_bytes"}
