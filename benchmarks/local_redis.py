"""A throw-away redis-server on a loopback port: for tests, `make bench`, and trying it out.

Debian's `redis-server` binary, started (with no persistence unless asked) on a free port
of 127.0.0.1, waited for with a bounded loop of PINGs, and killed when the
block ends. `kill()` and `start()` let a test take it away mid-run and
bring it back (empty: nothing is saved) on the same port.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from runner.errors import UsageError

BINARY: Final = "redis-server"
_READY_S: Final = 10.0
_PING_EVERY_S: Final = 0.02


def redis_server_path() -> str | None:
    """Where `redis-server` is on PATH, or None."""
    return shutil.which(BINARY)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class LocalRedis:
    """A redis-server child process on 127.0.0.1:`port` (see the module docstring)."""

    def __init__(self, port: int, workdir: Path, *, appendonly: bool = False) -> None:
        self.port = port
        self._workdir = workdir
        # docs/distributed.md's persistence advice: every write in the append-only
        # file before Redis answers it, so a restart replays all of them.
        self._persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if appendonly
            else [
                "--appendonly",
                "no",
            ]
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis://127.0.0.1:PORT/0"""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (again) on `port`; return once it answers PING.

        Raises UsageError when redis-server is missing or does not come up.
        """
        binary = redis_server_path()
        if binary is None:
            raise UsageError(
                "redis-server is not installed: apt-get install redis-server (make system-deps)"
            )
        command = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            *self._persistence,
            "--dir",
            str(self._workdir),
            "--loglevel",
            "warning",
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + _READY_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if _ping(self.port):
                return
            time.sleep(_PING_EVERY_S)
        error = b""
        if self._process.poll() is not None and self._process.stderr is not None:
            error = self._process.stderr.read()
        self.kill()
        raise UsageError(
            f"redis-server did not start on port {self.port}: "
            f"{error.decode(errors='replace').strip()[:300] or 'no answer to PING'}"
        )

    def kill(self) -> None:
        """Kill the server at once (SIGKILL: clients see it vanish; without
        `appendonly` nothing is kept)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        if self._process.stderr is not None:
            self._process.stderr.close()
        self._process = None


@contextlib.contextmanager
def local_redis(
    workdir: Path, port: int | None = None, *, appendonly: bool = False
) -> Iterator[LocalRedis]:
    """A running LocalRedis for the block (a free port unless `port`); killed after it.

    `appendonly`: with persistence (an append-only file in `workdir`, fsynced
    at every write), so a restart after `kill()` comes back with everything.
    """
    attempts = 1 if port is not None else 3
    for attempt in range(attempts):
        server = LocalRedis(port or _free_port(), workdir, appendonly=appendonly)
        try:
            server.start()
        except UsageError:
            # Another process may have taken the free port in between: try another.
            if attempt + 1 == attempts or redis_server_path() is None:
                raise
            continue
        try:
            yield server
        finally:
            server.kill()
        return
