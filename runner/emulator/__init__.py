"""A local emulator of Segmind's grok-imagine-image API (see docs/emulator.md).

One ASGI app, used in-process through `EmulatorTransport` (the embedded
default backend and the test bed) or served on loopback (`runner emulator`,
`serve_in_thread`). Its state (`Emulator`) derives job states from a clock,
keeps credit accounts and rate limiters per key, injects seeded faults and
logs every call for tests to read.

The public names load on first use: importing one module of the package
(``runner.emulator.config``) does not pay for starlette, uvicorn and Pillow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.emulator.app import create_app
    from runner.emulator.config import EmulatorConfig, FaultRate, Latency
    from runner.emulator.faults import ConnectionDropped, FaultInjector
    from runner.emulator.log import CallRecord
    from runner.emulator.responses import iso_utc
    from runner.emulator.server import Served, serve_in_thread
    from runner.emulator.state import Emulator, JobView, hash_key
    from runner.emulator.transport import (
        DEFAULT_BASE_URL,
        EmulatorTransport,
        InProcess,
        in_process_client,
    )

_LAZY = {
    "create_app": "runner.emulator.app",
    "EmulatorConfig": "runner.emulator.config",
    "FaultRate": "runner.emulator.config",
    "Latency": "runner.emulator.config",
    "ConnectionDropped": "runner.emulator.faults",
    "FaultInjector": "runner.emulator.faults",
    "CallRecord": "runner.emulator.log",
    "iso_utc": "runner.emulator.responses",
    "Served": "runner.emulator.server",
    "serve_in_thread": "runner.emulator.server",
    "Emulator": "runner.emulator.state",
    "JobView": "runner.emulator.state",
    "hash_key": "runner.emulator.state",
    "DEFAULT_BASE_URL": "runner.emulator.transport",
    "EmulatorTransport": "runner.emulator.transport",
    "InProcess": "runner.emulator.transport",
    "in_process_client": "runner.emulator.transport",
}

__all__ = [
    "DEFAULT_BASE_URL",
    "CallRecord",
    "ConnectionDropped",
    "Emulator",
    "EmulatorConfig",
    "EmulatorTransport",
    "FaultInjector",
    "FaultRate",
    "InProcess",
    "JobView",
    "Latency",
    "Served",
    "create_app",
    "hash_key",
    "in_process_client",
    "iso_utc",
    "serve_in_thread",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runner.emulator' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module), name)
