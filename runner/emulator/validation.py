"""Checking a submitted body against the model's params (runner.params), as pure logic.

A refusal is a `ParamError` whose message names the param and what it
accepts; the app answers it as 400 ``{"error": message}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner import params
from runner.emulator.images import EditSource, ImageInputError, parse_image_param


class ParamError(ValueError):
    """A body the model refuses (400). `param` names the offending param, if one."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class JobParams:
    """The params of one accepted request, defaults filled in."""

    prompt: str
    mode: str
    aspect_ratio: str
    resolution: str
    n: int
    output_format: str
    image: EditSource | None = None
    billed_inputs: int = 0
    """Source images billed like output images (xAI's edits); 0 on Segmind's routes."""

    def public(self) -> dict[str, str | int | None]:
        """The params as JSON-able values; an input image appears as its kind, never its bytes."""
        image: str | None = None
        if self.image is not None:
            image = (
                self.image.url
                if self.image.url
                else f"<base64 {len(self.image.data or b'')} bytes>"
            )
        return {
            "prompt": self.prompt,
            "mode": self.mode,
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
            "n": self.n,
            "output_format": self.output_format,
            "image": image,
        }


_KNOWN = frozenset({"prompt", "image", *params.PARAM_NAMES})


def parse_job_params(body: object, *, strict: bool = True) -> JobParams:
    """Validate a request body; raises ParamError naming the param and the allowed values.

    With `strict`, a param the model does not list is refused rather than ignored.
    """
    if not isinstance(body, dict):
        raise ParamError("the request body must be a JSON object of model params")
    if strict:
        unknown = sorted(str(k) for k in body if k not in _KNOWN)
        if unknown:
            raise ParamError(
                f"unknown param {unknown[0]!r}; this model accepts: {', '.join(sorted(_KNOWN))}",
                param=unknown[0],
            )
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ParamError("prompt is required: a non-empty string", param="prompt")
    values: dict[str, str] = {}
    for name, allowed in params.ALLOWED.items():
        value = body.get(name)
        if value is None:
            values[name] = str(params.API_DEFAULTS[name])
            continue
        if not isinstance(value, str) or value not in allowed:
            raise ParamError(
                f"{name} {value!r} is not allowed; use one of: {', '.join(allowed)}", param=name
            )
        values[name] = value
    n = body.get("n", params.API_DEFAULTS["n"])
    if n is None:
        n = params.API_DEFAULTS["n"]
    if isinstance(n, bool) or not isinstance(n, int) or not params.N_MIN <= n <= params.N_MAX:
        raise ParamError(
            f"n {n!r} is not allowed; use an integer from {params.N_MIN} to {params.N_MAX}",
            param="n",
        )
    image: EditSource | None = None
    raw_image = body.get("image")
    if raw_image is not None:
        if not isinstance(raw_image, str) or not raw_image.strip():
            raise ParamError("image must be an http(s) URL or a base64 image string", param="image")
        try:
            image = parse_image_param(raw_image)
        except ImageInputError as err:
            raise ParamError(f"image: {err}", param="image") from None
    return JobParams(
        prompt=prompt,
        mode=values["mode"],
        aspect_ratio=values["aspect_ratio"],
        resolution=values["resolution"],
        n=n,
        output_format=values["output_format"],
        image=image,
    )
