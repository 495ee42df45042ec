"""Segmind over HTTP: the `Backend` of runner.backends.base on two httpx.AsyncClients.

The API client carries the key and never follows a redirect (a 3xx is an
ApiError): a redirect would carry ``x-api-key`` to wherever it points. The
media client downloads images; it never carries the key, keeps no cookies and
follows at most 3 redirects. What the bytes mean is decided in `wire`; this
module sends, receives, and translates httpx's exceptions where they are
raised, so callers see only `runner.errors`.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Self

import anyio
import httpx

from runner.backends import wire
from runner.backends.answers import safe_url
from runner.backends.base import Media, Result, StatusReport, Submission, SyncResult
from runner.backends.media import decode_inline, media_kind
from runner.errors import DownloadError, TransportError, UsageError
from runner.jobs import ImageInput, Request

MediaGuard = Callable[[str], None]
"""Called with every media URL (and redirect target) before it is fetched; raises to refuse."""

MAX_MEDIA_REDIRECTS: Final = 3


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed for each phase of a call. `sync_read` covers a v1 call's whole job."""

    connect: float = 10.0
    read: float = 60.0
    write: float = 60.0
    pool: float = 30.0
    sync_read: float = 300.0

    def api(self) -> httpx.Timeout:
        """Timeouts of a v2 call, a credits call and a download."""
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)

    def sync(self) -> httpx.Timeout:
        """Timeouts of a v1 call, which answers only when the image is done."""
        return httpx.Timeout(
            connect=self.connect, read=self.sync_read, write=self.write, pool=self.pool
        )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _no_cookies() -> http.cookiejar.CookieJar:
    """A cookie jar that refuses every cookie, so no answer can plant state in a client."""
    # A bare CookieJar, not httpx.Cookies: the client copies the cookies of an
    # httpx.Cookies into a fresh jar with the default (accepting) policy.
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


# Raised before any byte of the request could reach the server.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
_WHAT: Final[tuple[tuple[type[Exception], str], ...]] = (
    (httpx.ConnectTimeout, "timed out connecting"),
    (httpx.ConnectError, "could not connect"),
    (httpx.PoolTimeout, "no free connection in time"),
    (httpx.ProxyError, "the proxy refused the connection"),
    (httpx.ReadTimeout, "no answer in time"),
    (httpx.WriteTimeout, "timed out sending the request"),
    (httpx.ReadError, "the connection broke while reading the answer"),
    (httpx.WriteError, "the connection broke while sending the request"),
    (httpx.RemoteProtocolError, "the server closed the connection or answered malformed HTTP"),
    (httpx.DecodingError, "the answer's content encoding does not decode"),
)


def _describe(exc: Exception) -> str:
    for cls, text in _WHAT:
        if isinstance(exc, cls):
            return text
    return f"connection failure ({type(exc).__name__})"


def transport_error(where: str, exc: Exception) -> TransportError:
    """Our error for an httpx failure of the call `where` (``"<METHOD> <path>"``).

    `sent` is False only when the connection was never made; a write error may
    have delivered part of the request, so it counts as sent.
    """
    sent = not isinstance(exc, _NOT_SENT)
    tail = (
        "the request may have reached the server"
        if sent
        else "the request was not sent; check --base-url and the network"
    )
    return TransportError(f"{where}: {_describe(exc)}; {tail}", sent=sent)


class SegmindBackend:
    """Segmind's v2 (submit, poll, result) and v1 (sync) API, and media downloads.

    `base_url` is the API root (a trailing /v1 or /v2 is stripped); `api_key`
    goes only to that root's scheme, host and port. `transport` and
    `media_transport` replace the network (e.g. the in-process emulator).
    `media_guard` is called with each media URL before it is fetched, redirects
    included. `utc_now` gives the wall-clock time that dated rate-limit hints
    are compared with.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        name: str = "segmind",
        transport: httpx.AsyncBaseTransport | None = None,
        media_transport: httpx.AsyncBaseTransport | None = None,
        timeouts: Timeouts = Timeouts(),
        media_guard: MediaGuard | None = None,
        utc_now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.name = name
        self.base_url = wire.normalize_base_url(base_url)
        self._key = api_key or None
        self._timeouts = timeouts
        self._guard = media_guard
        self._utc_now = utc_now
        self._api = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            timeout=timeouts.api(),
            cookies=_no_cookies(),
        )
        self._media = httpx.AsyncClient(
            transport=media_transport,
            follow_redirects=True,
            max_redirects=MAX_MEDIA_REDIRECTS,
            timeout=timeouts.api(),
            cookies=_no_cookies(),
            headers={"User-Agent": wire.USER_AGENT, "Accept": "image/*"},
            event_hooks={"request": [self._check_media_request]},
        )

    def __repr__(self) -> str:
        return f"SegmindBackend(name={self.name!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close both clients (idempotent)."""
        try:
            await self._api.aclose()
        finally:
            await self._media.aclose()

    # --- the API --------------------------------------------------------------------

    async def _send(
        self, request: wire.WireRequest, limits: httpx.Timeout | None = None
    ) -> tuple[int, httpx.Headers, bytes]:
        try:
            response = await self._api.request(
                request.method,
                request.url,
                headers=list(request.headers),
                json=request.json,
                timeout=limits if limits is not None else self._timeouts.api(),
            )
        except httpx.LocalProtocolError as exc:
            # Nothing was sent: a header value httpx refuses, e.g. a control
            # character pasted into the key.
            raise UsageError(
                f"{request.where}: the request could not be written; "
                "check SEGMIND_API_KEY for stray characters"
            ) from exc
        except httpx.HTTPError as exc:
            raise transport_error(request.where, exc) from exc
        return response.status_code, response.headers, response.content

    async def submit(self, model: str, request: Request) -> Submission:
        """``POST /v2/{model}``. Billed; a TransportError with ``sent=True`` is ambiguous."""
        sent = wire.submit_request(
            self.base_url, model, request, self._key, image_bytes=await self._image_bytes(request)
        )
        status, headers, body = await self._send(sent)
        return wire.parse_submit(status, headers, body, request=sent, now_utc=self._utc_now())

    async def status(self, submission: Submission) -> StatusReport:
        """``GET status_url``; safe to repeat."""
        sent = wire.status_request(submission, self._key)
        status, headers, body = await self._send(sent)
        return wire.parse_status(status, headers, body, request=sent, now_utc=self._utc_now())

    async def result(self, submission: Submission) -> Result:
        """``GET response_url``; safe to repeat."""
        sent = wire.result_request(submission, self._key)
        status, headers, body = await self._send(sent)
        return wire.parse_result(status, headers, body, request=sent, now_utc=self._utc_now())

    async def run_sync(self, model: str, request: Request) -> SyncResult:
        """``POST /v1/{model}``: waits up to `Timeouts.sync_read` seconds for the image(s)."""
        sent = wire.sync_request(
            self.base_url, model, request, self._key, image_bytes=await self._image_bytes(request)
        )
        status, headers, body = await self._send(sent, self._timeouts.sync())
        return wire.parse_sync(status, headers, body, request=sent, now_utc=self._utc_now())

    async def credits(self) -> float | None:
        """The balance in USD (credits + free credits), or None if the API has no such call."""
        sent = wire.credits_request(self.base_url, self._key)
        status, headers, body = await self._send(sent)
        return wire.parse_credits(status, headers, body, request=sent, now_utc=self._utc_now())

    async def _image_bytes(self, request: Request) -> bytes | None:
        image = request.image
        if image is None or image.kind != "path":
            return None
        return await self._read_image(image)

    async def _read_image(self, image: ImageInput) -> bytes:
        """The file of a path image, checked against the sha256 its job key was made from."""
        where = image.path or image.source
        try:
            data = await anyio.Path(where).read_bytes()
        except OSError as exc:
            raise UsageError(
                f"input image {image.source}: cannot read {where} ({exc.strerror}); "
                "check that the file still exists"
            ) from None
        if hashlib.sha256(data).hexdigest() != image.sha256:
            raise UsageError(
                f"input image {image.source}: {where} changed since the manifest was loaded; "
                "run again so the job key matches the file"
            )
        return data

    # --- media ----------------------------------------------------------------------

    async def _check_media_request(self, request: httpx.Request) -> None:
        # Belt and braces: the media client never had the key, but a hook sees
        # every hop, redirects included, before it is sent.
        request.headers.pop(wire.KEY_HEADER, None)
        url = str(request.url)
        if request.url.scheme not in ("http", "https"):
            raise DownloadError(f"GET {safe_url(url)}: only http(s) media is downloaded")
        if self._guard is not None:
            self._guard(url)

    async def download(self, media: Media, *, max_bytes: int) -> bytes:
        """The bytes of one output image, at most `max_bytes` long.

        Inline media is decoded; a URL is streamed by the media client. Raises
        DownloadError: retryable for a truncated body, a dropped connection, a
        429 or a 5xx; final for a body over `max_bytes`, a 4xx, or a bad URL.
        """
        if media_kind(media) == "inline":
            data = decode_inline(media)
            if len(data) > max_bytes:
                raise DownloadError(f"inline image of {len(data)} bytes is over {max_bytes} bytes")
            return data
        url = media.url or ""
        where = f"GET {safe_url(url)}"
        if not url.lower().startswith(("http://", "https://")):
            raise DownloadError(f"{where}: only http(s) media is downloaded")
        try:
            return await self._stream(url, where, max_bytes)
        except httpx.TooManyRedirects:
            raise DownloadError(
                f"{where}: more than {MAX_MEDIA_REDIRECTS} redirects", retryable=False
            ) from None
        except httpx.InvalidURL:
            raise DownloadError(f"{where}: not a valid URL") from None
        except httpx.HTTPError as exc:
            raise DownloadError(f"{where}: {_describe(exc)}", retryable=True) from exc

    async def _stream(self, url: str, where: str, max_bytes: int) -> bytes:
        async with self._media.stream("GET", url) as response:
            code = response.status_code
            if code != 200:
                retryable = code in (408, 425, 429) or code >= 500
                raise DownloadError(f"{where} -> {code}", retryable=retryable)
            declared = _content_length(response)
            if declared is not None and declared > max_bytes:
                raise DownloadError(
                    f"{where}: {declared} bytes announced, over the {max_bytes} byte cap"
                )
            chunks: list[bytes] = []
            total = 0
            async for chunk in response.aiter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise DownloadError(f"{where}: more than the {max_bytes} byte cap")
                chunks.append(chunk)
            encoded = response.headers.get("content-encoding", "identity").lower()
            if declared is not None and encoded == "identity":
                got = response.num_bytes_downloaded
                if got < declared:
                    raise DownloadError(f"{where}: got {got} of {declared} bytes", retryable=True)
            return b"".join(chunks)


def _content_length(response: httpx.Response) -> int | None:
    text = response.headers.get("content-length")
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None
