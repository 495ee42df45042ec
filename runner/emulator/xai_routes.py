"""The emulator's xAI side: ``POST /v1/images/generations`` and ``/v1/images/edits``, as
docs/xai-wire.md describes them.

It shares the Segmind side's state (jobs on the same workers, credit
accounts, the request log) and its pipeline (faults and rate limits drawn
for the ``sync`` endpoint kind), but reads the key from ``Authorization:
Bearer`` and speaks xAI's bodies: the model names the mode, the answer holds
the images (base64 or URLs under ``/media``) and the charge in USD ticks
(1 USD = 10^10 ticks), a content refusal is a 400. Images are JPEG, as
xAI's are reported to be, whatever the caller wanted.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runner import params
from runner.emulator.images import (
    CONTENT_TYPES,
    EXTENSIONS,
    EditSource,
    ImageInputError,
    parse_image_param,
)
from runner.emulator.responses import error
from runner.emulator.state import CreditsRefused, JobView
from runner.emulator.validation import JobParams, ParamError

if TYPE_CHECKING:
    from runner.emulator.app import _Call

GENERATIONS_PATH: Final = "/v1/images/generations"
EDITS_PATH: Final = "/v1/images/edits"
TICKS_PER_USD: Final = 10_000_000_000
OUTPUT_FORMAT: Final = "jpeg"
MAX_N: Final = 10
MAX_SOURCE_IMAGES: Final = 3
# Model -> our mode. `-pro` was retired for `-quality`; both are served.
MODELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "grok-imagine-image": "standard",
        "grok-imagine-image-quality": "quality",
        "grok-imagine-image-pro": "quality",
    }
)
REFUSED_ARGUMENTS: Final = ("size", "quality", "style")
_COMMON: Final = frozenset(
    {"model", "prompt", "n", "aspect_ratio", "resolution", "response_format", "user"}
)
# What each route knows besides the common arguments (docs/xai-wire.md).
_KNOWN: Final = _COMMON | {"image_url"}
_KNOWN_EDITS: Final = _COMMON | {"image", "images", "mask"}
DEFAULTS: Final[Mapping[str, str | int]] = MappingProxyType(
    {"n": 1, "aspect_ratio": "1:1", "resolution": "1k", "response_format": "url"}
)


def bearer_key(request: Request) -> str | None:
    """The key of ``Authorization: Bearer <key>``, or None."""
    value = request.headers.get("authorization", "")
    scheme, _, key = value.partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


@dataclass(frozen=True, slots=True)
class XaiCall:
    """A checked generation body: the job's params and how to answer."""

    job: JobParams
    response_format: str


def _choice(body: Mapping[str, object], name: str, allowed: tuple[str, ...]) -> str:
    value = body.get(name, DEFAULTS[name])
    if not isinstance(value, str) or value not in allowed:
        raise ParamError(
            f"Invalid {name} {value!r}: expected one of {', '.join(allowed)}", param=name
        )
    return value


def _edit_sources(body: Mapping[str, object]) -> list[str]:
    """The source URLs of an edits body: ``image: {url}`` or ``images: [{url}, ...]``."""
    if "image" in body and "images" in body:
        raise ParamError("image and images are mutually exclusive", param="images")
    if "image" in body:
        listed: object = [body["image"]]
    else:
        listed = body.get("images")
    if not isinstance(listed, list) or not listed:
        raise ParamError("an edit needs image or images (a non-empty list)", param="images")
    urls = []
    for item in listed:
        url = item.get("url") if isinstance(item, dict) else None
        if not isinstance(url, str) or not url:
            raise ParamError("each source image must be an object with a url", param="images")
        urls.append(url)
    return urls


def _sources(body: Mapping[str, object], *, edit: bool) -> list[EditSource]:
    """The checked source images of a body: ``image_url`` (generations) or the edits form."""
    field = "images" if edit else "image_url"
    sources: list[object]
    if edit:
        sources = list(_edit_sources(body))
    else:
        raw = body.get("image_url")
        sources = raw if isinstance(raw, list) else [] if raw is None else [raw]
    if len(sources) > MAX_SOURCE_IMAGES:
        raise ParamError(f"at most {MAX_SOURCE_IMAGES} source images", param=field)
    images = []
    for source in sources:
        if not isinstance(source, str) or not source.startswith(("http", "data:")):
            raise ParamError(
                f"{field} must be a public URL or a data:image/...;base64, URI", param=field
            )
        try:
            images.append(parse_image_param(source))
        except ImageInputError as err:
            raise ParamError(f"{field}: {err}", param=field) from None
    return images


def parse_generation(body: object, *, strict: bool = True, edit: bool = False) -> XaiCall:
    """Check a generations body (`edit`: an edits body); raises ParamError (400) naming
    the argument.

    Raises KeyError with the model name for a model that is not served (404).
    """
    if not isinstance(body, dict):
        raise ParamError("the request body must be a JSON object")
    for name in REFUSED_ARGUMENTS:
        if name in body:
            raise ParamError(f"Argument not supported: {name}", param=name)
    if strict:
        known = _KNOWN_EDITS if edit else _KNOWN
        unknown = sorted(str(k) for k in body if k not in known)
        if unknown:
            raise ParamError(f"Argument not supported: {unknown[0]}", param=unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or model not in MODELS:
        raise KeyError(str(model))
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ParamError("prompt is required: a non-empty string", param="prompt")
    n = body.get("n", DEFAULTS["n"])
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise ParamError(f"Invalid n {n!r}: expected an integer from 1 to {MAX_N}", param="n")
    aspect_ratio = _choice(body, "aspect_ratio", params.ASPECT_RATIOS)
    resolution = _choice(body, "resolution", params.RESOLUTIONS)
    response_format = _choice(body, "response_format", ("url", "b64_json"))
    images = _sources(body, edit=edit)
    job = JobParams(
        prompt=prompt,
        mode=MODELS[model],
        aspect_ratio=aspect_ratio,
        resolution=resolution,
        n=n,
        output_format=OUTPUT_FORMAT,
        # The first source stands for the edit; the emulator renders from one.
        image=images[0] if images else None,
        # Edits are billed for the input images too (vendor); at the image price (guess).
        billed_inputs=len(images),
    )
    return XaiCall(job=job, response_format=response_format)


async def _image(call: _Call, view: JobView, index: int) -> bytes:
    if call.offload:
        return await anyio.to_thread.run_sync(call.emulator.media, view, index)
    return call.emulator.media(view, index)


async def generations(call: _Call) -> Response:
    """``POST /v1/images/generations``: run the job on the emulator's workers and answer it."""
    return await _answer(call, edit=False)


async def edits(call: _Call) -> Response:
    """``POST /v1/images/edits``: an edit of 1 to 3 source images, answered like a generation."""
    return await _answer(call, edit=True)


async def _answer(call: _Call, *, edit: bool) -> Response:
    emu = call.emulator
    raw = await call.request.body()
    try:
        try:
            body = json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ParamError(f"the request body is not valid JSON ({err})") from None
        checked = parse_generation(body, strict=emu.config.strict_params, edit=edit)
    except ParamError as err:
        return error(400, str(err))
    except KeyError as err:
        return error(404, f"The model {err.args[0]} does not exist or your team has no access")
    try:
        accepted = emu.accept(call.key_hash, checked.job, "v1", call.now)
    except CreditsRefused as err:
        # xAI refuses a team that cannot pay with a 403 (third-party reports).
        return error(403, f"Your team has run out of credits or reached its spending limit: {err}")
    call.request_id = accepted.request_id
    await anyio.sleep(max(0.0, accepted.finished_at - emu.now()))
    emu.balance_of(call.key_hash)  # settles this job's charge
    view = emu.lookup(accepted.request_id, max(emu.now(), accepted.finished_at)) or accepted
    if view.state == "FAILED":
        return error(400, view.error or "Generated image rejected by content moderation")
    job = view.params
    items: list[dict[str, object]] = []
    for index in range(job.n):
        item: dict[str, object] = {"mime_type": CONTENT_TYPES[job.output_format]}
        if checked.response_format == "b64_json":
            item["b64_json"] = base64.b64encode(await _image(call, view, index)).decode("ascii")
        else:
            ext = EXTENSIONS[job.output_format]
            item["url"] = f"{call.base}/media/{view.request_id}/{index}.{ext}"
        item["revised_prompt"] = job.prompt
        items.append(item)
    answer = {
        "created": math.floor(emu.utc(view.finished_at)),
        "data": items,
        "usage": {"cost_in_usd_ticks": round(view.charged * TICKS_PER_USD)},
    }
    return JSONResponse(answer, headers={"x-request-id": view.request_id})
