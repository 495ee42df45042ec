"""xAI over HTTP: the `Backend` of runner.backends.base as a synchronous provider.

xAI's image API has one call, ``POST /v1/images/generations``, whose answer
carries the images; the scheduler drives it through `run_sync` (jobs of an
xAI manifest are ``v1`` jobs, runner.providers). What the bytes mean is
decided in `xai_wire`; the HTTP plumbing is Segmind's backend's, inherited
whole: the key-carrying API client that never follows a redirect, the
deadlines of a whole exchange, httpx errors translated where they are
raised, and the keyless media client with its URL guard, which downloads
xAI's temporary URLs. Only the wire differs, so only the wire is overridden.

Media: base64 images are decoded under the download size cap; a format
other than the job's `output_format` (xAI answers JPEG) is re-encoded
locally with Pillow.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Final

import httpx

from runner.backends import xai_wire
from runner.backends.base import Media, Result, StatusReport, Submission, SyncResult
from runner.backends.guard import UrlGuard
from runner.backends.media import media_kind, sniff_image
from runner.backends.segmind import MediaGuard, PollVia, SegmindBackend, Timeouts, _utc_now
from runner.errors import DownloadError, UsageError
from runner.jobs import Request

__all__ = ["XaiBackend", "convert_image"]

# Our format names, Pillow's, and the content type a sniff reports for each.
_PILLOW: Final = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_TYPES: Final = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_NO_POLL: Final = (
    "xAI's image API has no submit-and-poll endpoint: its jobs are synchronous (v1). "
    "Run the folder with the provider it was made with"
)


def convert_image(data: bytes, output_format: str) -> bytes:
    """`data` re-encoded as `output_format` (png, jpeg, webp); as it is when already so.

    Raises DownloadError (final) for bytes that are not an image Pillow reads.
    """
    wanted = _TYPES.get(output_format)
    if wanted is None or sniff_image(data) == wanted:
        return data
    # Imported here: a run that never converts (every Segmind run) does not load Pillow.
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            picture: Image.Image = opened
            if output_format == "jpeg" and picture.mode not in ("RGB", "L"):
                picture = picture.convert("RGB")
            out = io.BytesIO()
            options: dict[str, object] = {"quality": 95} if output_format != "png" else {}
            picture.save(out, format=_PILLOW[output_format], **options)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DownloadError(
            f"the image does not decode, so it cannot be converted to {output_format} ({exc})"
        ) from None
    return out.getvalue()


class XaiBackend(SegmindBackend):
    """xAI's synchronous image API and media downloads; see the module docstring.

    `response_format` asks for base64 images (the default: no second fetch
    of a URL that expires) or URLs, which the keyless media client
    downloads. Other arguments are SegmindBackend's.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        name: str = "xai",
        response_format: xai_wire.ResponseFormat = "b64_json",
        transport: httpx.AsyncBaseTransport | None = None,
        media_transport: httpx.AsyncBaseTransport | None = None,
        timeouts: Timeouts | None = None,
        media_guard: MediaGuard | None = None,
        url_guard: UrlGuard | None = None,
        utc_now: Callable[[], datetime] = _utc_now,
        connections: int | None = None,
        poll_via: PollVia = "status",
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            name=name,
            transport=transport,
            media_transport=media_transport,
            timeouts=timeouts or Timeouts(),
            media_guard=media_guard,
            url_guard=url_guard,
            utc_now=utc_now,
            connections=connections,
            poll_via=poll_via,
        )
        self._response_format: xai_wire.ResponseFormat = response_format

    def __repr__(self) -> str:
        return f"XaiBackend(name={self.name!r}, base_url={self.base_url!r})"

    async def submit(self, model: str, request: Request) -> Submission:
        """Not offered by xAI: raises UsageError."""
        raise UsageError(_NO_POLL)

    async def status(self, submission: Submission) -> StatusReport:
        """Not offered by xAI: raises UsageError."""
        raise UsageError(_NO_POLL)

    async def result(self, submission: Submission) -> Result:
        """Not offered by xAI: raises UsageError."""
        raise UsageError(_NO_POLL)

    async def run_sync(self, model: str, request: Request) -> SyncResult:
        """One billed call (generations, or edits for several source images, xai_wire):
        the answer holds the image(s) and the charge."""
        for image in request.images:
            # Each source image is checked as Segmind's one input image is.
            await self._check_input(replace(request, image=image, more_images=()))
        more = [
            await self._read_image(image) if image.kind == "path" else None
            for image in request.more_images
        ]
        sent = xai_wire.generation_request(
            self.base_url,
            model,
            request,
            self._key,
            image_bytes=await self._image_bytes(request),
            more_bytes=more,
            response_format=self._response_format,
        )
        status, headers, body = await self._send(sent, sync=True)
        return xai_wire.parse_generation(
            status,
            headers,
            body,
            request=sent,
            output_format=request.output_format,
            n=request.n,
            now_utc=self._utc_now(),
        )

    async def credits(self) -> float | None:
        """None: xAI's image API has no balance call (the team's spend is on console.x.ai)."""
        return None

    async def download(self, media: Media, *, max_bytes: int) -> bytes:
        """The bytes of one output image, at most `max_bytes`, in the job's format.

        Base64 text longer than `max_bytes` could decode to is refused before
        it is decoded; a URL goes through the keyless media client.
        """
        if media_kind(media) == "inline" and media.data is None:
            text = media.url or ""
            # 4 base64 characters carry 3 bytes; the data: prefix is short.
            if len(text) > (max_bytes + 2) // 3 * 4 + 256:
                raise DownloadError(
                    f"inline image of about {len(text) * 3 // 4} bytes is over {max_bytes} bytes"
                )
        data = await super().download(media, max_bytes=max_bytes)
        wanted = media.convert_to if isinstance(media, xai_wire.XaiMedia) else None
        if wanted is None:
            return data
        converted = convert_image(data, wanted)
        if len(converted) > max_bytes:
            raise DownloadError(
                f"the image converted to {wanted} is {len(converted)} bytes, over {max_bytes}"
            )
        return converted
