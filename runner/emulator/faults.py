"""Seeded fault injection.

Faults come from two sources, checked in this order for every call of an
endpoint kind:

1. a script: faults queued for the next calls of that kind (`script`), so a
   test can be exact without probabilities;
2. a burst in progress: a random 429 starts a run of `burst_429` refusals;
3. a random draw: one `random.Random(seed)` draw against the configured rates
   of that kind, so the same seed and call order give the same faults.

`ConnectionDropped` is the signal the app raises to drop a connection; over
uvicorn that aborts the socket, in-process `EmulatorTransport` turns it into
the httpx error a client would see on the network.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from random import Random

from runner.emulator.config import EndpointKind, FaultKind, FaultRate, check_fault


class ConnectionDropped(Exception):  # a signal, not an error of the emulator
    """The emulator drops the connection instead of answering (or mid-answer)."""


class FaultInjector:
    """Decide which fault, if any, hits each call. Thread-safe; one per Emulator."""

    def __init__(self, rates: Iterable[FaultRate], *, seed: int, burst_429: int) -> None:
        self._rng = Random(seed)
        self._burst_429 = burst_429
        self._rates: dict[str, list[tuple[FaultKind, float]]] = {}
        for rate in rates:
            if rate.rate > 0:
                self._rates.setdefault(rate.endpoint, []).append((rate.fault, rate.rate))
        for endpoint, table in self._rates.items():
            if sum(r for _, r in table) > 1.0 + 1e-9:
                raise ValueError(f"faults for {endpoint!r}: the rates add up to more than 1")
        self._script: dict[str, deque[FaultKind]] = {}
        self._burst_left: dict[str, int] = {}
        self._lock = threading.Lock()
        # A separate stream for byte positions, so corrupting media does not
        # shift which calls get faults.
        self._bytes_rng = Random(seed + 1)

    def script(self, endpoint: EndpointKind, fault: FaultKind, times: int = 1) -> None:
        """Queue `fault` for the next `times` calls of `endpoint`, ahead of random draws."""
        check_fault(endpoint, fault)
        with self._lock:
            self._script.setdefault(endpoint, deque()).extend([fault] * times)

    def pending(self, endpoint: EndpointKind | None = None) -> int:
        """How many scripted faults are still queued (for one endpoint kind, or all)."""
        with self._lock:
            if endpoint is not None:
                return len(self._script.get(endpoint, ()))
            return sum(len(q) for q in self._script.values())

    def clear(self) -> None:
        """Forget scripted faults and any 429 burst in progress."""
        with self._lock:
            self._script.clear()
            self._burst_left.clear()

    def draw(self, endpoint: EndpointKind) -> FaultKind | None:
        """The fault for this call of `endpoint`, or None for a normal answer."""
        with self._lock:
            queued = self._script.get(endpoint)
            if queued:
                return queued.popleft()
            left = self._burst_left.get(endpoint, 0)
            if left > 0:
                self._burst_left[endpoint] = left - 1
                return "429"
            table = self._rates.get(endpoint)
            if not table:
                return None
            roll = self._rng.random()
            for fault, rate in table:
                if roll < rate:
                    if fault == "429":
                        self._burst_left[endpoint] = self._burst_429 - 1
                    return fault
                roll -= rate
            return None

    def corrupt(self, data: bytes) -> bytes:
        """`data` with a run of bytes in its middle inverted (same length)."""
        if len(data) < 4:
            return bytes(b ^ 0xFF for b in data)
        with self._lock:
            start = self._bytes_rng.randrange(len(data) // 4, len(data) // 2)
        span = max(1, min(64, len(data) // 8))
        middle = bytes(b ^ 0xFF for b in data[start : start + span])
        return data[:start] + middle + data[start + span :]


def cut_length(size: int) -> int:
    """Where a truncated or cut body stops: about half way, never the full size."""
    return max(0, min(size - 1, size // 2))
