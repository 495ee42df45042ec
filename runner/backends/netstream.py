"""httpcore's network streams with their socket looked up once, not on every request.

Before each request, and when an answer is closed, httpcore asks every idle
connection of the pool whether it has expired: `get_extra_info("is_readable")`,
which on anyio's streams rebuilds the stream's whole attribute table (a
`getpeername` system call among its entries) to find the raw socket. With
four requests a job that was about a tenth of the runner's CPU per job
(issue 12). The raw socket of a connection never changes, so this backend's
streams look it up once; every answer is the same as the wrapped stream's.

`with_cached_sockets(transport)` installs it on an `httpx.AsyncHTTPTransport`
(the one seam: its pool's network backend is read when a connection opens).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
from httpcore._utils import is_socket_readable

_UNSET: Any = object()


# The `timeout` parameters are httpcore's interface (ASYNC109 prefers scopes).
class CachedSocketStream(httpcore.AsyncNetworkStream):
    """A network stream whose raw socket is looked up once."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket: Any = _UNSET

    def _raw_socket(self) -> socket.socket | None:
        if self._socket is _UNSET:
            self._socket = self._stream.get_extra_info("socket")
        sock: socket.socket | None = self._socket
        return sock

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        # TLS wraps the stream: the new one has its own socket answer.
        return CachedSocketStream(
            await self._stream.start_tls(ssl_context, server_hostname, timeout)
        )

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._raw_socket()
        if info == "is_readable":
            return is_socket_readable(self._raw_socket())
        return self._stream.get_extra_info(info)


class CachedSocketBackend(httpcore.AsyncNetworkBackend):
    """A network backend whose streams are `CachedSocketStream`s of `backend`'s."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return CachedSocketStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return CachedSocketStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def with_cached_sockets(transport: httpx.AsyncHTTPTransport) -> httpx.AsyncHTTPTransport:
    """`transport`, its pool opening connections through a `CachedSocketBackend`."""
    pool = transport._pool  # httpx names no other way to reach its pool
    pool._network_backend = CachedSocketBackend(pool._network_backend)
    return transport
