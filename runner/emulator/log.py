"""The request log: every call as the server saw it, and the pacing measures tests need."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from runner.emulator.config import EndpointKind, FaultKind
from runner.emulator.responses import iso_utc

KindFilter = EndpointKind | Iterable[EndpointKind] | None


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One HTTP call as the server saw it. `status` is None when the connection was dropped."""

    time: float  # clock seconds at arrival
    utc: float  # UTC seconds at arrival
    method: str
    path: str
    kind: EndpointKind
    key_hash: str
    status: int | None
    request_id: str | None = None
    fault: FaultKind | None = None
    # The request's header names (lower case, never values): which auth scheme came.
    header_names: frozenset[str] = frozenset()


class RequestLog:
    """An append-only, thread-safe list of CallRecord (a loopback server's thread writes it)."""

    def __init__(self) -> None:
        self._records: list[CallRecord] = []
        self._lock = threading.Lock()
        self._sink: TextIO | None = None

    def write_to(self, sink: TextIO | None) -> None:
        """Also write every later call to `sink` as a JSON line (`log_line`), flushed at once.

        Flushed per line so that a user or a CI job can count the calls of a
        run while the server still serves (`runner emulator --log FILE`).
        """
        with self._lock:
            self._sink = sink

    def append(self, call: CallRecord) -> None:
        """Record one call."""
        with self._lock:
            self._records.append(call)
            if self._sink is not None:
                self._sink.write(log_line(call))
                self._sink.flush()

    def calls(self, kind: KindFilter = None) -> list[CallRecord]:
        """The calls, oldest first, optionally only those of some kinds."""
        kinds = None if kind is None else frozenset({kind} if isinstance(kind, str) else kind)
        with self._lock:
            return [c for c in self._records if kinds is None or c.kind in kinds]

    def max_in_window(self, window: float, kinds: KindFilter = ("submit", "sync")) -> int:
        """Most calls of `kinds` in any window of `window` clock seconds.

        Windows are half-open, so calls exactly `window` apart fall in different ones.
        """
        return most_in_window((c.time for c in self.calls(kinds)), window)


def most_in_window(times: Iterable[float], window: float) -> int:
    """Most of `times` (seconds, any order) in any half-open window of `window` seconds."""
    ordered = sorted(times)
    best, first = 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def log_line(call: CallRecord) -> str:
    """One call as a JSON line: UTC time (ISO 8601, ms), method, path, endpoint kind, status
    (null: the connection was dropped), request id, injected fault, and the key's fingerprint
    (`key`: 12 hex digits of its SHA-256, "-" when no key came), never the key itself.
    """
    doc = {
        "time": iso_utc(call.utc),
        "method": call.method,
        "path": call.path,
        "kind": call.kind,
        "status": call.status,
        "request_id": call.request_id,
        "fault": call.fault,
        "key": call.key_hash,
    }
    return json.dumps(doc, separators=(",", ":")) + "\n"
