"""Fixtures of the coordination tests: a real redis-server on a loopback port.

One server per test process (`redis_server`, session scope), emptied before
each test that asks for `redis_url`. When redis-server is missing the tests
that need it are skipped with the reason, unless CI is set: there they are
required and fail.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from benchmarks.local_redis import LocalRedis, local_redis, redis_server_path


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """redis-server on 127.0.0.1 for this test process."""
    if redis_server_path() is None:
        reason = "redis-server is not installed (apt-get install redis-server; make system-deps)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: the coordination tests are required when CI is set")
        pytest.skip(reason)
    with local_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def _flush(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        assert sock.recv(16).startswith(b"+OK")


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    """The URL of an empty Redis (database 0), restarted if an earlier test killed it."""
    if not redis_server.running:
        redis_server.start()
    _flush(redis_server.port)
    return redis_server.url


@pytest.fixture
def anyio_backend() -> str:
    """Real time: Redis calls run in worker threads, which a virtual clock would skip past."""
    return "asyncio"
