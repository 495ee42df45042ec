"""The connection pool is sized to the in-flight cap: a burst waits for a connection
instead of opening one per call (issue 12, item 2).

Connections are counted by a small TCP relay between the client and the
emulator on loopback: every connection the client opens is one the relay
accepts. Real clock (sockets), nothing timed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from backend_helpers import FAKE_KEY, make_request

from runner.backends.segmind import SegmindBackend
from runner.emulator import Latency, Served
from runner.manifest import parse_manifest
from runner.run import RunOptions, run_manifest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(slots=True)
class Relay:
    """Counts the connections it accepted and the most open at once."""

    port: int = 0
    accepted: int = 0
    open: int = 0
    most_open: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _pipe(source: SocketStream, sink: SocketStream) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        await sink.aclose()


@asynccontextmanager
async def relay_to(upstream_port: int) -> AsyncIterator[Relay]:
    relay = Relay()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    relay.port = listener.extra(SocketAttribute.local_port)  # noqa: S610 (not Django)

    async def handle(client: SocketStream) -> None:
        relay.accepted += 1
        relay.open += 1
        relay.most_open = max(relay.most_open, relay.open)
        try:
            server = await anyio.connect_tcp("127.0.0.1", upstream_port)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_pipe, client, server)
                tg.start_soon(_pipe, server, client)
        finally:
            relay.open -= 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield relay
        finally:
            tg.cancel_scope.cancel()


def _port(served: Served) -> int:
    return int(served.base_url.rsplit(":", 1)[1])


async def _burst(backend: SegmindBackend, calls: int) -> None:
    submission = await backend.submit("grok-imagine-image", make_request())
    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(backend.status, submission)


async def test_a_burst_of_calls_opens_no_more_connections_than_the_pool_allows(
    serve_emulator: Callable[..., Served],
) -> None:
    served = serve_emulator(latency=Latency("fixed", 0.0, 0.0))
    async with relay_to(_port(served)) as relay:
        async with SegmindBackend(relay.base_url, FAKE_KEY, connections=3) as backend:
            await _burst(backend, 24)
        capped = (relay.accepted, relay.most_open)
    assert len(served.emulator.calls("status")) == 24
    # At most 3 at once, and kept alive: the burst reuses them.
    assert capped[1] <= 3
    assert capped[0] <= 3

    # The same burst with httpx's defaults connects once per call at once.
    async with relay_to(_port(served)) as relay:
        async with SegmindBackend(relay.base_url, FAKE_KEY) as backend:
            await _burst(backend, 24)
        assert relay.most_open > 3


async def test_a_run_opens_connections_up_to_its_in_flight_cap(
    tmp_path: Path, serve_emulator: Callable[..., Served]
) -> None:
    served = serve_emulator(latency=Latency("fixed", 0.0, 0.0), workers=64)
    things = ", ".join(f"thing{i}" for i in range(16))
    manifest = parse_manifest(
        f"""
name: pool
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: jpeg}}
prompts:
  - id: p
    prompt: "a picture of {{thing}}"
    vars: {{thing: [{things}]}}
budget: {{requests_per_minute: 1000, max_in_flight: 3}}
output: {{dir: {tmp_path / "out"}}}
""",
        path=str(tmp_path / "m.yaml"),
        base_dir=tmp_path,
    )
    async with relay_to(_port(served)) as relay:
        opts = RunOptions(
            backend="segmind",
            base_url=relay.base_url,
            out=tmp_path / "out",
            time_scale=0.001,
            seed=1,
        )
        report = await run_manifest(manifest, opts, env={"SEGMIND_API_KEY": FAKE_KEY})
    assert report.stats.completed == 16
    # Two pools (API, media), each of the cap + 1 (the balance call).
    assert relay.most_open <= 2 * (3 + 1)
    assert relay.accepted <= 2 * (3 + 1)
