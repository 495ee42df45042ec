"""The API's answers that are not plain JSON: the error envelope, reset stamps, damaged answers.

A dropped connection is an ASGI response that starts and then raises
`ConnectionDropped`: uvicorn aborts the socket (the client reads a body cut
short), and `EmulatorTransport` turns it into the same httpx error in-process.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import anyio
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from runner.emulator.faults import ConnectionDropped


def error(status: int, message: str, **headers: str) -> JSONResponse:
    """The API's error envelope, ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def iso_utc(seconds: float) -> str:
    """UTC seconds as ISO 8601 (``2026-11-23T22:41:00Z``), with milliseconds only when needed.

    Rounded up to the millisecond, so a client that waits until then is never early.
    """
    # Round to the microsecond first: at today's epoch a float carries ~0.2 us of noise.
    millis = math.ceil(round(seconds * 1000, 3))
    whole, frac = divmod(millis, 1000)
    stamp = datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:03d}Z" if frac else f"{stamp}Z"


class Dropped(Response):
    """Start an answer, send `partial` bytes of it, then drop the connection."""

    def __init__(self, content_length: int = 0, partial: bytes = b"") -> None:
        super().__init__(content=b"", status_code=200)
        self.headers["content-length"] = str(max(content_length, len(partial) + 1))
        self._partial = partial

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if self._partial:
            await send({"type": "http.response.body", "body": self._partial, "more_body": True})
        raise ConnectionDropped("the emulator dropped the connection mid-answer")


class Trickle(Response):
    """Send headers at once, then the body in `chunks` pieces `delay` seconds apart."""

    def __init__(self, inner: Response, chunks: int, delay: float) -> None:
        super().__init__(content=bytes(inner.body), status_code=inner.status_code)
        self.raw_headers = inner.raw_headers
        self._chunks = chunks
        self._delay = delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        body = bytes(self.body)
        step = max(1, math.ceil(len(body) / self._chunks))
        for offset in range(0, len(body), step):
            await anyio.sleep(self._delay)
            more = offset + step < len(body)
            await send(
                {
                    "type": "http.response.body",
                    "body": body[offset : offset + step],
                    "more_body": more,
                }
            )
        if not body:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
