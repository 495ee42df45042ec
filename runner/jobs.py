"""Jobs and their identity. Pure values, no I/O.

A `Job` is one billable request: a prompt with every request param resolved,
plus where it came from in the manifest (prompt id, template vars, sweep
values, repeat index). Its `key` identifies it across runs, so a re-run can
skip what is done and re-attach to what is in flight.

Key scheme `k1` (tests pin known values; a change of scheme gets a new tag):
``"k1:" + sha256(canonical JSON)`` of ``{"endpoint", "model", "params",
"prompt_id", "repeat"}``, where params hold the final prompt text and every
request param, and the input image is represented by its sha256 (of the
bytes for a file or data URI, of the URL text for a URL), never its bytes.
A multi-image edit (`images:` in the manifest) puts the list of its images'
sha256s, in order, where a single image's sha256 goes; a job with one input
image keeps the key it always had.
The prompt id is part of the key because it is part of the output path: the
same request under two ids is two jobs with two files.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

KEY_SCHEME = "k1"

ImageKind = Literal["path", "url", "data"]
Endpoint = Literal["v2", "v1"]


@dataclass(frozen=True, slots=True)
class ImageInput:
    """An input image that turns a job into an edit.

    `source` is what the manifest wrote (a path relative to the manifest, a
    URL or a data URI); `path` is the resolved local file for kind "path";
    `sha256` is the hex digest that stands for the image in the job key.
    """

    kind: ImageKind
    source: str
    sha256: str
    path: str | None = None

    def describe(self) -> str:
        """A short text for logs and sidecars: never the bytes of a data URI."""
        if self.kind == "data":
            return f"data URI sha256:{self.sha256[:12]}"
        return self.source


@dataclass(frozen=True, slots=True)
class Request:
    """The request params of one API call, every one resolved.

    `image` is the (first) input image of an edit; `more_images` the further
    source images of a multi-image edit, in the order the manifest lists them
    (only providers whose `max_input_images` allows them get such jobs).
    `billed_sources` is how many source images the provider bills like
    output images (xAI: all of an edit's; Segmind: none), set from
    `runner.providers.Provider.billed_images` when the job is built; it is
    a fact of the price, not a param, so it is not in the key.
    """

    prompt: str
    mode: str
    aspect_ratio: str
    resolution: str
    n: int
    output_format: str
    image: ImageInput | None = None
    more_images: tuple[ImageInput, ...] = ()
    billed_sources: int = 0

    @property
    def billed_images(self) -> int:
        """The images the request is billed for: its n outputs and its billed sources."""
        return self.n + self.billed_sources

    @property
    def images(self) -> tuple[ImageInput, ...]:
        """Every input image of the request, in order (empty for a generation)."""
        return () if self.image is None else (self.image, *self.more_images)

    def params(self) -> dict[str, str | int]:
        """The JSON params without the image (the backend adds it in its wire form)."""
        return {
            "prompt": self.prompt,
            "mode": self.mode,
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
            "n": self.n,
            "output_format": self.output_format,
        }


@dataclass(frozen=True, slots=True)
class Job:
    """One billable request and where it came from.

    `index` is the position in the manifest's deterministic expansion order;
    `vars` are the template values substituted into the prompt; `sweep` the
    axis values that vary between this prompt's jobs (for the gallery's axes);
    `repeat` the index among identical requests.
    """

    key: str
    index: int
    prompt_id: str
    request: Request
    model: str
    endpoint: Endpoint = "v2"
    vars: tuple[tuple[str, str], ...] = ()
    sweep: tuple[tuple[str, str | int], ...] = ()
    repeat: int = 0

    @property
    def key8(self) -> str:
        """The first 8 hex digits of the key, used in file names."""
        return self.key.split(":", 1)[1][:8]


def job_key(
    *,
    model: str,
    endpoint: Endpoint,
    prompt_id: str,
    request: Request,
    repeat: int,
) -> str:
    """The versioned identity of a job (scheme `k1`, see the module docstring)."""
    canonical = _canonical(model, endpoint, prompt_id, request, repeat)
    return f"{KEY_SCHEME}:{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"


# json.dumps(ensure_ascii=False)'s own string encoder (its C version where built).
_text: Callable[[str], str] = json.encoder.encode_basestring


def _canonical(
    model: str, endpoint: Endpoint, prompt_id: str, request: Request, repeat: int
) -> str:
    """``json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``.

    Written out in the keys' sorted order, each value through json's own
    encoder, because every job of a resume walk computes its key and the
    general encoder costs about three times this (tests/test_jobs.py checks
    the text against json.dumps of the document, request.params() included).
    """
    shas = [image.sha256 for image in request.images]
    image = (
        "null"
        if not shas
        else _text(shas[0])
        if len(shas) == 1
        else "[" + ",".join(_text(sha) for sha in shas) + "]"
    )
    return (
        f'{{"endpoint":{_text(endpoint)},"model":{_text(model)},"params":{{'
        f'"aspect_ratio":{_text(request.aspect_ratio)},"image":{image},'
        f'"mode":{_text(request.mode)},"n":{_number(request.n)},'
        f'"output_format":{_text(request.output_format)},"prompt":{_text(request.prompt)},'
        f'"resolution":{_text(request.resolution)}}},'
        f'"prompt_id":{_text(prompt_id)},"repeat":{_number(repeat)}}}'
    )


def _number(value: int) -> str:
    # An int is its decimal text; anything else (a bool) as json writes it.
    return str(value) if type(value) is int else json.dumps(value)


def make_job(
    *,
    index: int,
    prompt_id: str,
    request: Request,
    model: str,
    endpoint: Endpoint = "v2",
    vars: tuple[tuple[str, str], ...] = (),
    sweep: tuple[tuple[str, str | int], ...] = (),
    repeat: int = 0,
) -> Job:
    """Build a Job with its key computed from the identity fields."""
    key = job_key(
        model=model, endpoint=endpoint, prompt_id=prompt_id, request=request, repeat=repeat
    )
    return Job(
        key=key,
        index=index,
        prompt_id=prompt_id,
        request=request,
        model=model,
        endpoint=endpoint,
        vars=vars,
        sweep=sweep,
        repeat=repeat,
    )
