"""The sidecar: one JSON file beside each image saying what it is and how it was made.

Versioned (`schema_version`), published as docs/sidecar.schema.json
(`sidecar_schema_json()`; a test keeps the file equal to it). It is built by
`build_sidecar` from explicit arguments, an allow-list: nothing is copied
from a client object or a dict dump, so the API key cannot get in, and an
input image appears only as its source (a path or URL) and sha256, never its
bytes (a data URI only as its sha256).

Written after the image (`write_sidecar`, atomic): a sidecar on disk means
its image is complete.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from runner.errors import StoreError
from runner.jobs import ImageInput, Job
from runner.money import Micros, to_usd
from runner.redact import holds_secret
from runner.store.atomic import store_error, write_atomic
from runner.store.media import ImageInfo

SCHEMA_VERSION: Final = 1

_SHA256 = r"^[0-9a-f]{64}$"
_UTC_STAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputImageRef(_Model):
    """The input image of an edit: where it came from and its sha256, never its bytes."""

    kind: Literal["path", "url", "data"]
    source: str | None = Field(
        description="As the manifest wrote it (path or URL); null for a data URI."
    )
    path: str | None = Field(description="The resolved local file, for kind 'path'.")
    sha256: str = Field(pattern=_SHA256, description="Hex sha256 of the image bytes.")


class RequestParams(_Model):
    """The request params sent to the API (the prompt is the sidecar's `prompt`)."""

    mode: str
    aspect_ratio: str
    resolution: str
    n: int = Field(ge=1, description="Images asked for in this request.")
    output_format: Literal["jpeg", "png", "webp"]
    image: InputImageRef | None = None
    more_images: list[InputImageRef] = Field(
        default_factory=list,
        description="The further source images of a multi-image edit, in order (after image).",
    )


class BackendRef(_Model):
    """The API that made the image."""

    name: str = Field(description="'segmind' or 'local' (the emulator).")
    base_url: str = Field(description="The API root, without credentials or query.")


class Timings(_Model):
    """When and how long. Stamps are ISO-8601 UTC wall-clock; durations in seconds."""

    submitted_at: str | None = Field(default=None, pattern=_UTC_STAMP)
    completed_at: str | None = Field(default=None, pattern=_UTC_STAMP)
    queue_s: float | None = Field(default=None, ge=0, description="Server-reported queue time.")
    inference_s: float | None = Field(
        default=None, ge=0, description="Server-reported inference time."
    )
    wall_s: float | None = Field(default=None, ge=0, description="Submit to result, as seen here.")


class Credits(_Model):
    """USD for the whole request (all n images): the same figures in each of its sidecars."""

    estimated_usd: float = Field(ge=0, description="From the price table, before submitting.")
    charged_usd: float | None = Field(
        default=None, ge=0, description="As the API reported it, when it did."
    )


class FileRef(_Model):
    """The image file this sidecar describes."""

    name: str = Field(description="Path relative to the output folder, '/'-separated.")
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=_SHA256)
    width: int = Field(gt=0, description="Pixels.")
    height: int = Field(gt=0, description="Pixels.")
    format: Literal["jpeg", "png", "webp"]
    converted_from: str | None = Field(
        default=None,
        description="The format the API delivered when the runner re-encoded the image to "
        "params.output_format (xAI answers JPEG); null when the bytes are the API's own.",
    )


class ManifestRef(_Model):
    """The manifest the job came from."""

    path: str
    sha256: str = Field(pattern=_SHA256)


class Sidecar(_Model):
    """What one generated image is and how it was made. Never holds the API key."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="runner image sidecar")

    schema_version: Literal[1] = SCHEMA_VERSION
    key: str = Field(description="The job key (scheme-tagged, e.g. 'k1:<sha256>').")
    prompt_id: str
    index: int = Field(ge=0, description="This image's index i among the job's n images.")
    n: int = Field(ge=1, description="Images the job asked for.")
    job_index: int = Field(ge=0, description="The job's position in the manifest's expansion.")
    repeat: int = Field(ge=0, description="Index among identical requests.")
    prompt: str = Field(description="The final prompt text sent.")
    vars: dict[str, str] = Field(description="Template values substituted into the prompt.")
    sweep: dict[str, str | int] = Field(description="Axis values that vary between jobs.")
    params: RequestParams
    backend: BackendRef
    model: str
    endpoint: Literal["v2", "v1"]
    request_id: str | None = Field(description="The API's request id; null if v1 gave none.")
    status: Literal["COMPLETED"] = "COMPLETED"
    timings: Timings
    credits: Credits
    file: FileRef
    manifest: ManifestRef | None = None
    runner_version: str
    seed: int | None = None


def utc_stamp(epoch: float) -> str:
    """ISO-8601 UTC text (millisecond precision, ``Z``) for wall-clock epoch seconds."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def public_url(url: str, *, keep_query: bool = True) -> str:
    """`url` without user:password (and without query and fragment unless `keep_query`)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query, fragment = (parts.query, parts.fragment) if keep_query else ("", "")
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _image_ref(image: ImageInput) -> InputImageRef:
    if image.kind == "data":
        return InputImageRef(kind="data", source=None, path=None, sha256=image.sha256)
    source = public_url(image.source) if image.kind == "url" else image.source
    return InputImageRef(kind=image.kind, source=source, path=image.path, sha256=image.sha256)


def build_sidecar(
    *,
    job: Job,
    index: int,
    image: ImageInfo,
    file_name: str,
    backend: str,
    base_url: str,
    request_id: str | None,
    estimate: Micros,
    charged: Micros | None = None,
    submitted_at: float | None = None,
    completed_at: float | None = None,
    queue_s: float | None = None,
    inference_s: float | None = None,
    wall_s: float | None = None,
    manifest_path: str | None = None,
    manifest_sha256: str | None = None,
    seed: int | None = None,
    runner_version: str | None = None,
    delivered_type: str | None = None,
) -> Sidecar:
    """The sidecar of image `index` of `job`, from an allow-list of values.

    `image` is what media.check_image returned; `file_name` the image's path
    relative to OUT (layout.relative_name). `submitted_at` / `completed_at`
    are wall-clock epoch seconds; durations are seconds; `estimate` and
    `charged` are µ$ for the whole request (the sidecar states them in
    USD). `manifest_path` and `manifest_sha256` go together.
    `delivered_type` is the image type the API said it sent (``image/jpeg``);
    when it is not the saved file's format, the file was converted locally.
    """
    if runner_version is None:
        from runner import __version__ as runner_version
    request = job.request
    manifest = (
        ManifestRef(path=manifest_path, sha256=manifest_sha256)
        if manifest_path is not None and manifest_sha256 is not None
        else None
    )
    return Sidecar(
        key=job.key,
        prompt_id=job.prompt_id,
        index=index,
        n=request.n,
        job_index=job.index,
        repeat=job.repeat,
        prompt=request.prompt,
        vars=dict(job.vars),
        sweep=dict(job.sweep),
        params=RequestParams(
            mode=request.mode,
            aspect_ratio=request.aspect_ratio,
            resolution=request.resolution,
            n=request.n,
            output_format=request.output_format,
            image=_image_ref(request.image) if request.image else None,
            more_images=[_image_ref(image) for image in request.more_images],
        ),
        backend=BackendRef(name=backend, base_url=public_url(base_url, keep_query=False)),
        model=job.model,
        endpoint=job.endpoint,
        request_id=request_id,
        timings=Timings(
            submitted_at=utc_stamp(submitted_at) if submitted_at is not None else None,
            completed_at=utc_stamp(completed_at) if completed_at is not None else None,
            queue_s=queue_s,
            inference_s=inference_s,
            wall_s=wall_s,
        ),
        credits=Credits(
            estimated_usd=to_usd(estimate),
            charged_usd=None if charged is None else to_usd(charged),
        ),
        file=FileRef(
            name=file_name,
            bytes=image.bytes,
            sha256=image.sha256,
            width=image.width,
            height=image.height,
            format=image.format,
            converted_from=_converted_from(delivered_type, image.format),
        ),
        manifest=manifest,
        runner_version=runner_version,
        seed=seed,
    )


def _converted_from(delivered_type: str | None, saved: str) -> str | None:
    """The delivered format (``jpeg``) when it differs from the saved one, else None."""
    if not delivered_type or not delivered_type.lower().startswith("image/"):
        return None
    delivered = delivered_type.lower().removeprefix("image/").replace("jpg", "jpeg")
    return delivered if delivered != saved else None


def sidecar_json(sidecar: Sidecar) -> str:
    """The sidecar as the JSON text written to disk (2-space indent, UTF-8, final newline)."""
    return json.dumps(sidecar.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"


def write_sidecar(path: Path, sidecar: Sidecar, *, forbid: Iterable[str] = ()) -> None:
    """Write `sidecar` to `path` atomically, after its image. Raises StoreError.

    `forbid` are secrets (the API key) that must not appear: a last guard on
    top of the allow-list; the message never repeats them.
    """
    text = sidecar_json(sidecar)
    if holds_secret(text, forbid):
        raise StoreError(f"refused to write {path}: it would contain a secret (the API key)")
    write_atomic(path, text.encode("utf-8"))


def read_sidecar(path: Path) -> Sidecar:
    """Load and validate a sidecar. Raises StoreError if unreadable, ValueError if invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise store_error(err, path, action="read") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason})") from None
    try:
        return Sidecar.model_validate_json(text)
    except ValueError as err:
        first = str(err).splitlines()
        raise ValueError(f"{path}: not a valid sidecar ({'; '.join(first[:3])})") from None


def sidecar_schema() -> dict[str, Any]:
    """The JSON Schema of the sidecar (pydantic's, as published in docs/)."""
    return Sidecar.model_json_schema()


def sidecar_schema_json() -> str:
    """docs/sidecar.schema.json's exact text."""
    return json.dumps(sidecar_schema(), indent=2, ensure_ascii=False) + "\n"
