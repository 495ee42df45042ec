"""The network backend whose streams look their socket up once (runner/backends/netstream.py).

Against the emulator on loopback (a real socket, asyncio: no virtual clock):
the answers are the wrapped stream's, and the socket is asked for once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import pytest

from runner.backends.netstream import CachedSocketBackend, CachedSocketStream, with_cached_sockets
from runner.emulator import Served

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Counting(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, counting the `socket` look-ups of its streams."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.lookups = 0

    async def connect_tcp(self, host: str, port: int, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        stream = await self.inner.connect_tcp(host, port, **kwargs)
        outer = self

        class Stream(httpcore.AsyncNetworkStream):
            async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
                return await stream.read(max_bytes, timeout)

            async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
                await stream.write(buffer, timeout)

            async def aclose(self) -> None:
                await stream.aclose()

            def get_extra_info(self, info: str) -> Any:
                outer.lookups += info == "socket"
                return stream.get_extra_info(info)

        return Stream()


async def test_a_cached_stream_answers_as_the_stream_and_asks_for_its_socket_once(
    serve_emulator: Callable[..., Served],
) -> None:
    served = serve_emulator()
    url = urlsplit(served.base_url)
    assert url.hostname is not None and url.port is not None
    counting = Counting()
    stream = await CachedSocketBackend(counting).connect_tcp(url.hostname, url.port)
    assert isinstance(stream, CachedSocketStream)
    try:
        assert stream.get_extra_info("server_addr") == (url.hostname, url.port)
        assert stream.get_extra_info("is_readable") is False  # the server has said nothing
        await stream.write(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := await stream.read(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 404")
        assert stream.get_extra_info("is_readable") is True  # closed by the server: EOF
        assert stream.get_extra_info("socket") is stream.get_extra_info("socket")
        assert counting.lookups == 1
    finally:
        await stream.aclose()


async def test_a_client_over_the_cached_transport_keeps_its_connection(
    serve_emulator: Callable[..., Served],
) -> None:
    served = serve_emulator()
    transport = with_cached_sockets(httpx.AsyncHTTPTransport())
    async with httpx.AsyncClient(transport=transport) as client:
        streams = []
        for _ in range(3):
            response = await client.get(f"{served.base_url}/nowhere")
            assert response.status_code == 404
            streams.append(response.extensions["network_stream"])
    # One keep-alive connection reused (its expiry checked through the cache), never reopened.
    assert all(isinstance(s, CachedSocketStream) for s in streams)
    assert len({id(s) for s in streams}) == 1
