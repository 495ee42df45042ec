"""In-process access to the emulator through httpx, with network-like failures.

`EmulatorTransport` wraps `httpx.ASGITransport`: the app runs in the
caller's task (on its clock, virtual in tests) and a connection the
emulator drops (`ConnectionDropped`, also used for truncated bodies)
surfaces as `httpx.RemoteProtocolError`, which is what httpx raises on
loopback when uvicorn aborts the same answer. Client code therefore sees
the same exceptions in-process as over the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.types import ASGIApp

from runner.emulator.app import create_app
from runner.emulator.config import EmulatorConfig
from runner.emulator.faults import ConnectionDropped
from runner.emulator.state import Emulator

DEFAULT_BASE_URL = "http://emulator"


class EmulatorTransport(httpx.AsyncBaseTransport):
    """An httpx transport that calls the emulator's ASGI app in-process."""

    def __init__(self, app: ASGIApp) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except ConnectionDropped:
            # The wording of httpx's own message for a body cut short on the network.
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body", request=request
            ) from None

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass(frozen=True, slots=True)
class InProcess:
    """An emulator served in-process: its state, its ASGI app, and a client factory.

    The emulator's clock is the running event loop's (`anyio.current_time`),
    so make clients and calls inside that loop.
    """

    emulator: Emulator
    app: Starlette

    @classmethod
    def create(cls, config: EmulatorConfig | None = None) -> InProcess:
        """A fresh emulator with `config` (default: EmulatorConfig()) and its app."""
        emulator = Emulator(config)
        return cls(emulator=emulator, app=create_app(emulator))

    @property
    def config(self) -> EmulatorConfig:
        """The emulator's configuration."""
        return self.emulator.config

    def client(
        self, *, api_key: str | None = None, base_url: str = DEFAULT_BASE_URL, **kwargs: Any
    ) -> httpx.AsyncClient:
        """An httpx.AsyncClient on the app (use `async with`); `api_key` sets x-api-key.

        `kwargs` go to httpx.AsyncClient (headers, timeout, ...).
        """
        headers = dict(kwargs.pop("headers", None) or {})
        if api_key is not None:
            headers["x-api-key"] = api_key
        return httpx.AsyncClient(
            transport=EmulatorTransport(self.app), base_url=base_url, headers=headers, **kwargs
        )


def in_process_client(
    emulator: Emulator, *, base_url: str = DEFAULT_BASE_URL, **kwargs: Any
) -> httpx.AsyncClient:
    """An httpx.AsyncClient wired to `emulator` in-process (no port); close it when done.

    `kwargs` go to httpx.AsyncClient (headers, timeout, ...).
    """
    return InProcess(emulator=emulator, app=create_app(emulator)).client(
        base_url=base_url, **kwargs
    )
