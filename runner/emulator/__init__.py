"""A local emulator of Segmind's grok-imagine-image API (see docs/emulator.md).

One ASGI app, used in-process through `EmulatorTransport` (the embedded
default backend and the test bed) or served on loopback (`runner emulator`,
`serve_in_thread`). Its state (`Emulator`) derives job states from a clock,
keeps credit accounts and rate limiters per key, injects seeded faults and
logs every call for tests to read.
"""

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
