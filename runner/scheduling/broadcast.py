"""Listeners off the critical path: events through memory streams to contained tasks.

Each listener gets its own unbounded memory-object stream and a task that
drains it, so a job only ever puts an event on a stream (`send`, never
awaited) and a slow listener slows no one else. A listener that raises (a
closed stdout: BrokenPipeError) is dropped: one line on stderr says so, its
stream is closed, the run and every job go on as if it had never been there.
Closing the broadcast lets each task drain what was sent, then end.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from typing import IO

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from runner.events import Event, Listener, RunStats

_Item = tuple[Event, RunStats]


def _name(listener: Listener) -> str:
    return getattr(listener, "__qualname__", None) or type(listener).__qualname__


class Broadcast:
    """Fans events out to listeners, each in its own task (see the module docstring).

    Events sent before `start` wait in the streams; events sent after
    `close` are dropped. `errors` is where a dropped listener is reported.
    """

    def __init__(self, listeners: Iterable[Listener], *, errors: IO[str] | None = None) -> None:
        self._errors = errors
        self._pairs: list[tuple[Listener, MemoryObjectReceiveStream[_Item]]] = []
        self._sends: list[MemoryObjectSendStream[_Item]] = []
        for listener in listeners:
            send, receive = anyio.create_memory_object_stream[_Item](math.inf)
            self._pairs.append((listener, receive))
            self._sends.append(send)

    def __bool__(self) -> bool:
        return bool(self._sends)

    def send(self, event: Event, stats: RunStats) -> None:
        """Queue an event for every listener still listening. Never blocks."""
        for send in list(self._sends):
            try:
                send.send_nowait((event, stats))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._sends.remove(send)  # its listener was dropped

    def start(self, tg: TaskGroup) -> None:
        """Start one draining task per listener in `tg`."""
        pairs, self._pairs = self._pairs, []
        for listener, receive in pairs:
            tg.start_soon(self._drain, listener, receive, name=f"listener {_name(listener)}")

    def close(self) -> None:
        """No more events: each task drains what it has, then ends."""
        sends, self._sends = self._sends, []
        for send in sends:
            send.close()

    async def _drain(self, listener: Listener, receive: MemoryObjectReceiveStream[_Item]) -> None:
        with receive:
            async for event, stats in receive:
                try:
                    listener(event, stats)
                except Exception as err:  # contained: any listener fault
                    self._report(listener, err)
                    return

    def _report(self, listener: Listener, err: Exception) -> None:
        text = str(err) or type(err).__name__
        line = (
            f"runner: stopped sending events to {_name(listener)} "
            f"({type(err).__name__}: {text}); the run goes on\n"
        )
        try:
            stream = self._errors or sys.stderr
            stream.write(line)
            stream.flush()
        except (OSError, ValueError):
            pass  # stderr is gone too: nothing more to tell
