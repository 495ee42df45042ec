"""Segmind over HTTP: the `Backend` of runner.backends.base on two httpx.AsyncClients.

The API client carries the key and never follows a redirect (a 3xx is an
ApiError): a redirect would carry ``x-api-key`` to wherever it points. The
media client downloads images; it never carries the key, keeps no cookies and
follows at most 3 redirects. What the bytes mean is decided in `wire`; this
module sends, receives, and translates httpx's exceptions where they are
raised, so callers see only `runner.errors`.

Every call also has a deadline for the whole exchange (`Timeouts`): httpx's
read timeout restarts with each chunk, so a server trickling a byte at a
time ("slow loris") would otherwise hold a call forever. Every answer is
read through a size cap (`AnswerLimits`, runner.backends.bounded), streamed
and decompressed under it, never whole; an answer past the cap is
`wire.bad_answer` (retried on a status or result call, final elsewhere).

With logging at DEBUG (``runner --debug``), each call is logged on the
``runner.http`` logger: method, URL without its query, status and duration,
and the request's header names with sensitive values redacted. httpx's own
request log line (``httpx`` logger, INFO) is filtered so it never shows a
query string either.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import Final, Literal, Self

import anyio
import httpx

from runner.backends import wire
from runner.backends.base import Media, Result, StatusReport, Submission, SyncResult
from runner.backends.bounded import AnswerLimits, UnreadableBody, read_body
from runner.backends.guard import RefusedUrl, UrlGuard
from runner.backends.media import decode_inline, media_kind
from runner.backends.netstream import with_cached_sockets
from runner.clock import utc_datetime
from runner.errors import (
    BadRequest,
    DownloadError,
    NotFound,
    ProtocolError,
    TransportError,
    UsageError,
)
from runner.jobs import ImageInput, Request
from runner.redact import redact_headers, safe_url

MediaGuard = Callable[[str], Awaitable[None] | None]
"""Called with every media URL (and redirect target) before it is fetched; raises to refuse.

It may be a plain function or a coroutine function.
"""

PollVia = Literal["result", "status"]
"""How a job in progress is polled: its result endpoint, or its status endpoint."""

MAX_MEDIA_REDIRECTS: Final = 3
MIN_DEADLINE: Final = 5.0  # seconds: the shortest a time scale makes a deadline
HTTP_LOG: Final = logging.getLogger("runner.http")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed for each phase of a call. `sync_read` covers a v1 call's whole job.

    The ``*_deadline`` fields bound a whole exchange, body included: `deadline`
    a v2 or credits call, `sync_deadline` a v1 call, `download_deadline` one
    media download.
    """

    connect: float = 10.0
    read: float = 60.0
    write: float = 60.0
    pool: float = 30.0
    sync_read: float = 300.0
    deadline: float = 180.0
    sync_deadline: float = 600.0
    download_deadline: float = 600.0

    def scaled(self, factor: float, floor: float = MIN_DEADLINE) -> Timeouts:
        """These timeouts for a run whose durations are scaled by `factor` (--time-scale).

        Only the deadlines scale: they bound how long the *server* may take,
        which a time-scaled emulator shortens; the phase timeouts bound the
        network, which no time scale speeds up. Nor does one speed up a busy
        machine, so a scaled deadline stays at least `floor` seconds.
        """

        def scale(seconds: float) -> float:
            return max(seconds * factor, min(seconds, floor))

        return replace(
            self,
            deadline=scale(self.deadline),
            sync_deadline=scale(self.sync_deadline),
            download_deadline=scale(self.download_deadline),
        )

    def api(self) -> httpx.Timeout:
        """Timeouts of a v2 call, a credits call and a download."""
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)

    def sync(self) -> httpx.Timeout:
        """Timeouts of a v1 call, which answers only when the image is done."""
        return httpx.Timeout(
            connect=self.connect, read=self.sync_read, write=self.write, pool=self.pool
        )


def _utc_now() -> datetime:
    return utc_datetime()


class _NoQueryInLog(logging.Filter):
    """Rewrites URL arguments of httpx's log records to scheme://host/path (no query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, httpx.URL) for a in args):
            record.args = tuple(safe_url(str(a)) if isinstance(a, httpx.URL) else a for a in args)
        return True


_NO_QUERY: Final = _NoQueryInLog()
# httpx logs "HTTP Request: GET <full URL> ..." at INFO; a media URL's query
# may hold a signed token. Adding the same filter twice is a no-op.
logging.getLogger("httpx").addFilter(_NO_QUERY)


def _no_cookies() -> http.cookiejar.CookieJar:
    """A cookie jar that refuses every cookie, so no answer can plant state in a client."""
    # A bare CookieJar, not httpx.Cookies: the client copies the cookies of an
    # httpx.Cookies into a fresh jar with the default (accepting) policy.
    return http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class _Cookieless(httpx.Cookies):
    """Cookies of a client that keeps none: an answer's Set-Cookie is not even read.

    httpx hands every answer to its client's cookies, which wraps the answer
    and its request in urllib objects for the jar to refuse: about 65 µs an
    answer, a quarter of a millisecond a job (four answers; issue 12). The jar
    under it refuses every cookie as well, should anything else reach it.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _Client(httpx.AsyncClient):
    """An httpx.AsyncClient that keeps no cookies (`_Cookieless`); otherwise httpx's own."""

    _NONE: Final = _Cookieless(_no_cookies())

    @property
    def cookies(self) -> httpx.Cookies:
        return self._NONE

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise TypeError("this client keeps no cookies")


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
    included. `url_guard` (runner.backends.guard, for a remote API) refuses
    media URLs, redirects and connected addresses in private networks, and
    input image URLs there too. `utc_now` gives the wall-clock time that dated
    rate-limit hints are compared with. `limits` caps the size of every answer.

    `connections` caps each client's connection pool, keep-alive included
    (None: httpx's default of 100), so a burst of calls waits for a free
    connection instead of opening one each: pass the run's in-flight cap, as
    each job has at most one call out at a time. `poll_via` is how a job in
    progress is polled first (`polls_result`): "status" (the default: what
    Segmind documents) or "result" (one call a poll, where the result
    endpoint is known to answer a job in progress, as the emulator's does).
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
        url_guard: UrlGuard | None = None,
        utc_now: Callable[[], datetime] = _utc_now,
        limits: AnswerLimits | None = None,
        connections: int | None = None,
        poll_via: PollVia = "status",
    ) -> None:
        self.name = name
        # "untried": result polls until the server answers one for a job in
        # progress ("works") or answers one unreadably ("status").
        self._result_polls: Literal["untried", "works", "status"] = (
            "untried" if poll_via == "result" else "status"
        )
        pool = connection_limits(connections)
        self._limits = limits or AnswerLimits()
        self.base_url = wire.normalize_base_url(base_url)
        self._key = api_key or None
        self._timeouts = timeouts
        self._guard = media_guard
        self._url_guard = url_guard
        self._utc_now = utc_now
        # The network's transports as httpx would make them, with each
        # connection's socket looked up once (netstream.py: CPU per request).
        self._api = _Client(
            transport=transport or with_cached_sockets(httpx.AsyncHTTPTransport(limits=pool)),
            follow_redirects=False,
            timeout=timeouts.api(),
            limits=pool,
        )
        self._media = _Client(
            transport=media_transport or with_cached_sockets(httpx.AsyncHTTPTransport(limits=pool)),
            follow_redirects=True,
            max_redirects=MAX_MEDIA_REDIRECTS,
            timeout=timeouts.api(),
            limits=pool,
            headers={
                "User-Agent": wire.USER_AGENT,
                "Accept": "image/*",
                "Accept-Encoding": wire.ACCEPT_ENCODING,
            },
            event_hooks={
                "request": [self._check_media_request],
                "response": [self._check_media_peer],
            },
        )

    def __repr__(self) -> str:
        return f"SegmindBackend(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def url_guard(self) -> UrlGuard | None:
        """The guard of media and input URLs, or None (a local or loopback API)."""
        return self._url_guard

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
        self, request: wire.WireRequest, *, sync: bool = False
    ) -> tuple[int, httpx.Headers, bytes]:
        limits = self._timeouts.sync() if sync else self._timeouts.api()
        deadline = self._timeouts.sync_deadline if sync else self._timeouts.deadline
        started = anyio.current_time()

        def shown() -> str:  # only when logged: the URL's parse is a cost per call
            return f"{request.method} {safe_url(request.url)}"

        try:
            with anyio.fail_after(deadline):
                async with self._api.stream(
                    request.method,
                    request.url,
                    headers=list(request.headers),
                    json=request.json,
                    timeout=limits,
                ) as response:
                    code, headers = response.status_code, response.headers
                    body = await read_body(response, self._cap(sync, headers))
        except UnreadableBody as exc:
            _log_call(shown, f"{code}, not read: {exc}", started, request.headers)
            raise wire.bad_answer(request, code, str(exc)) from None
        except TimeoutError:
            _log_call(shown, "deadline passed", started, request.headers)
            raise TransportError(
                f"{request.where}: no complete answer within {deadline:g} s; "
                "the request may have reached the server",
                sent=True,
            ) from None
        except httpx.LocalProtocolError as exc:
            # Nothing was sent: a header value httpx refuses, e.g. a control
            # character pasted into the key.
            raise UsageError(
                f"{request.where}: the request could not be written; "
                "check SEGMIND_API_KEY for stray characters"
            ) from exc
        except httpx.HTTPError as exc:
            _log_call(shown, f"failed: {_describe(exc)}", started, request.headers)
            raise transport_error(request.where, exc) from exc
        _log_call(shown, str(code), started, request.headers)
        return code, headers, body

    def _cap(self, sync: bool, headers: httpx.Headers) -> int:
        """Bytes an answer may have: an image-bodied sync answer is the image itself."""
        if sync and headers.get("content-type", "").strip().lower().startswith("image/"):
            return self._limits.image_bytes
        return self._limits.json_bytes

    async def submit(self, model: str, request: Request) -> Submission:
        """``POST /v2/{model}``. Billed; a TransportError with ``sent=True`` is ambiguous."""
        await self._check_input(request)
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

    @property
    def polls_result(self) -> bool:
        """Whether a job in progress is polled on its result endpoint (one call per poll).

        Segmind's docs show the result endpoint only for a finished job; the
        emulator answers it for a job in progress with its state and no
        output (a guess, docs/emulator.md). A backend made with
        ``poll_via="result"`` polls the result and falls back to the status
        endpoint for the rest of its life when, before any such answer was
        readable, one is a 404, a 400 or a body without a state (`result`
        raises it; the caller then asks the status).
        """
        return self._result_polls != "status"

    async def result(self, submission: Submission) -> Result:
        """``GET response_url``; safe to repeat. A job in progress: its state, no media."""
        sent = wire.result_request(submission, self._key)
        status, headers, body = await self._send(sent)
        try:
            answer = wire.parse_result(
                status, headers, body, request=sent, now_utc=self._utc_now(), expected=submission.n
            )
        except (NotFound, BadRequest, ProtocolError) as exc:
            # A COMPLETED body without output is the job's own fault, not the endpoint's.
            if self._result_polls == "untried" and (
                not isinstance(exc, ProtocolError) or wire.answer_state(headers, body) is None
            ):
                self._result_polls = "status"
            raise
        if self._result_polls == "untried" and answer.state in ("QUEUED", "PROCESSING"):
            self._result_polls = "works"
        return answer

    async def run_sync(self, model: str, request: Request) -> SyncResult:
        """``POST /v1/{model}``: waits up to `Timeouts.sync_read` seconds for the image(s)."""
        await self._check_input(request)
        sent = wire.sync_request(
            self.base_url, model, request, self._key, image_bytes=await self._image_bytes(request)
        )
        status, headers, body = await self._send(sent, sync=True)
        return wire.parse_sync(status, headers, body, request=sent, now_utc=self._utc_now())

    async def credits(self) -> float | None:
        """The balance in USD (credits + free credits), or None if the API has no such call."""
        sent = wire.credits_request(self.base_url, self._key)
        status, headers, body = await self._send(sent)
        return wire.parse_credits(status, headers, body, request=sent, now_utc=self._utc_now())

    async def _check_input(self, request: Request) -> None:
        """Refuse an input image URL into a private network before a remote API is asked."""
        image = request.image
        if image is None or image.kind != "url" or self._url_guard is None:
            return
        try:
            # The API fetches it, so a name only its resolver knows may pass.
            await self._url_guard.check(image.source, must_resolve=False)
        except RefusedUrl as err:
            raise UsageError(
                f"input image {err}: {self.base_url} cannot be asked to fetch it; "
                "use a public URL, or a local file path (sent inline)"
            ) from None

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
            checked = self._guard(url)
            if inspect.isawaitable(checked):
                await checked
        if self._url_guard is not None:
            try:
                await self._url_guard.check(url)
            except RefusedUrl as err:
                raise DownloadError(
                    f"GET {err}; media is fetched only from public addresses",
                    retryable=err.retryable,
                ) from None

    async def _check_media_peer(self, response: httpx.Response) -> None:
        # The name was checked before the request; this checks the address the
        # connection really reached, which a second DNS answer could change.
        if self._url_guard is None:
            return
        stream = response.extensions.get("network_stream")
        info = stream.get_extra_info("server_addr") if stream is not None else None
        if not info:
            return
        try:
            self._url_guard.check_peer(str(response.request.url), str(info[0]))
        except RefusedUrl as err:
            raise DownloadError(f"GET {err}; media is fetched only from public addresses") from None

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
        deadline = self._timeouts.download_deadline
        started = anyio.current_time()
        try:
            with anyio.fail_after(deadline):
                return await self._stream(url, where, max_bytes)
        except TimeoutError:
            _log_call(where, "deadline passed", started, ())
            raise DownloadError(
                f"{where}: not complete within {deadline:g} s", retryable=True
            ) from None
        except httpx.TooManyRedirects:
            raise DownloadError(
                f"{where}: more than {MAX_MEDIA_REDIRECTS} redirects", retryable=False
            ) from None
        except httpx.InvalidURL:
            raise DownloadError(f"{where}: not a valid URL") from None
        except httpx.HTTPError as exc:
            raise DownloadError(f"{where}: {_describe(exc)}", retryable=True) from exc

    async def _stream(self, url: str, where: str, max_bytes: int) -> bytes:
        started = anyio.current_time()
        async with self._media.stream("GET", url) as response:
            code = response.status_code
            _log_call(where, str(code), started, response.request.headers.items())
            if code != 200:
                retryable = code in (408, 425, 429) or code >= 500
                raise DownloadError(f"{where} -> {code}", retryable=retryable)
            declared = _content_length(response)
            if declared is not None and declared > max_bytes:
                raise DownloadError(
                    f"{where}: {declared} bytes announced, over the {max_bytes} byte cap"
                )
            try:
                # Decompressed under the cap too: a gzip bomb for an image costs no more.
                data = await read_body(response, max_bytes)
            except UnreadableBody as exc:
                if exc.too_large:
                    raise DownloadError(f"{where}: more than the {max_bytes} byte cap") from None
                raise DownloadError(f"{where}: {exc}") from None
            encoded = response.headers.get("content-encoding", "identity").lower()
            if declared is not None and encoded == "identity":
                got = response.num_bytes_downloaded
                if got < declared:
                    raise DownloadError(f"{where}: got {got} of {declared} bytes", retryable=True)
            return data


def connection_limits(connections: int | None) -> httpx.Limits:
    """A pool of at most `connections` connections, all of them kept alive between calls.

    None: httpx's defaults. Keep-alive sized to the cap, so a steady run
    reuses its connections instead of closing all but 20 and connecting again.
    """
    if connections is None:
        return httpx.Limits(max_connections=100, max_keepalive_connections=20)
    size = max(1, connections)
    return httpx.Limits(max_connections=size, max_keepalive_connections=size)


def _log_call(
    shown: str | Callable[[], str],
    outcome: str,
    started: float,
    headers: Iterable[tuple[str, str]],
) -> None:
    """One DEBUG line on runner.http: `shown` (or what it returns) is METHOD and a
    query-free URL."""
    if HTTP_LOG.isEnabledFor(logging.DEBUG):
        HTTP_LOG.debug(
            "%s -> %s in %.3f s [%s]",
            shown if isinstance(shown, str) else shown(),
            outcome,
            anyio.current_time() - started,
            redact_headers(headers),
        )


def _content_length(response: httpx.Response) -> int | None:
    text = response.headers.get("content-length")
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None
