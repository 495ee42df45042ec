"""What each httpx client sends: no key on media, no cookies, redirects, length checks.

A tiny ASGI app records the headers of every request it gets; it stands for
a media host and an API that misbehaves in ways the emulator does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pytest
from backend_helpers import FAKE_KEY, encode_image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from runner.backends.base import Media
from runner.backends.segmind import SegmindBackend, transport_error
from runner.errors import ApiError, DownloadError

pytestmark = pytest.mark.anyio

PNG = encode_image("PNG")
API = "https://api.test"
CDN = "https://cdn.test"


@dataclass
class Recorder:
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def record(request: Request) -> Response:
            self.seen.append((request.url.path, dict(request.headers)))
            path = request.url.path
            if path == "/v1/get-user-credits":
                response: Response = RedirectResponse(f"{CDN}/elsewhere", status_code=302)
                response.set_cookie("session", "api-cookie")
                return response
            if path == "/img/start":
                response = RedirectResponse("/img/final", status_code=302)
                response.set_cookie("session", "media-cookie")
                return response
            if path == "/img/final":
                return Response(PNG, media_type="image/png")
            if path.startswith("/loop/"):
                step = int(path.rsplit("/", 1)[1])
                return RedirectResponse(f"/loop/{step + 1}", status_code=302)
            if path == "/big":
                return Response(PNG, media_type="image/png", headers={"content-length": "999999"})
            if path == "/short":
                return Response(PNG[:10], headers={"content-length": str(len(PNG))})
            if path == "/gone":
                return JSONResponse({"error": "expired"}, status_code=410)
            return JSONResponse({"error": "busy"}, status_code=503)

        return Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST"])])


def client(recorder: Recorder) -> SegmindBackend:
    transport = httpx.ASGITransport(app=recorder.app())
    return SegmindBackend(API, FAKE_KEY, transport=transport, media_transport=transport)


async def test_media_client_sends_no_key_and_keeps_no_cookies() -> None:
    recorder = Recorder()
    async with client(recorder) as backend:
        first = await backend.download(Media(url=f"{CDN}/img/start"), max_bytes=1_000_000)
        second = await backend.download(Media(url=f"{CDN}/img/start"), max_bytes=1_000_000)
    assert first == second == PNG
    assert [path for path, _ in recorder.seen] == ["/img/start", "/img/final"] * 2
    for _, headers in recorder.seen:
        assert "x-api-key" not in headers
        assert "cookie" not in headers
        assert headers["user-agent"].startswith("runner/")


async def test_api_client_follows_no_redirect_and_keeps_no_cookies() -> None:
    recorder = Recorder()
    async with client(recorder) as backend:
        for _ in range(2):
            with pytest.raises(ApiError) as caught:
                await backend.credits()
            assert caught.value.status == 302
            assert "redirect to https://cdn.test/elsewhere not followed" in str(caught.value)
    assert [path for path, _ in recorder.seen] == ["/v1/get-user-credits"] * 2
    assert all(headers["x-api-key"] == FAKE_KEY for _, headers in recorder.seen)
    assert all("cookie" not in headers for _, headers in recorder.seen)


async def test_too_many_media_redirects() -> None:
    recorder = Recorder()
    async with client(recorder) as backend:
        with pytest.raises(DownloadError, match="more than 3 redirects") as caught:
            await backend.download(Media(url=f"{CDN}/loop/0"), max_bytes=1_000)
    assert caught.value.retryable is False
    assert len(recorder.seen) == 4  # the first request and 3 redirects


async def test_announced_length_over_cap_is_refused() -> None:
    async with client(Recorder()) as backend:
        with pytest.raises(DownloadError, match="999999 bytes announced") as caught:
            await backend.download(Media(url=f"{CDN}/big"), max_bytes=100_000)
    assert caught.value.retryable is False


async def test_body_shorter_than_announced_is_retryable() -> None:
    async with client(Recorder()) as backend:
        with pytest.raises(DownloadError, match=f"got 10 of {len(PNG)} bytes") as caught:
            await backend.download(Media(url=f"{CDN}/short"), max_bytes=100_000)
    assert caught.value.retryable is True


@pytest.mark.parametrize(("path", "retryable"), [("/gone", False), ("/busy", True)])
async def test_media_status_codes(path: str, retryable: bool) -> None:
    async with client(Recorder()) as backend:
        with pytest.raises(DownloadError) as caught:
            await backend.download(Media(url=f"{CDN}{path}?sig=abc"), max_bytes=100)
    assert caught.value.retryable is retryable
    assert str(caught.value).startswith(f"GET {CDN}{path} -> ")
    assert "sig=abc" not in str(caught.value)


def test_transport_error_translation() -> None:
    request = httpx.Request("POST", f"{API}/v2/m")
    cases = [
        (httpx.ConnectError("refused", request=request), False),
        (httpx.ConnectTimeout("slow", request=request), False),
        (httpx.PoolTimeout("busy", request=request), False),
        (httpx.ProxyError("no", request=request), False),
        (httpx.ReadTimeout("late", request=request), True),
        (httpx.WriteTimeout("late", request=request), True),
        (httpx.ReadError("reset", request=request), True),
        (httpx.WriteError("reset", request=request), True),
        (httpx.RemoteProtocolError("closed", request=request), True),
        (httpx.CloseError("close", request=request), True),
    ]
    for exc, sent in cases:
        err = transport_error("POST /v2/m", exc)
        assert err.sent is sent, type(exc).__name__
        assert str(err).startswith("POST /v2/m: ")
        assert err.status is None
