"""OUT/.runner/calls.log: when this folder's recent API calls were made.

The rate gate lives in memory, so a runner restarted after a crash or a
Ctrl-C would start with an empty window and could send a second window's
allowance into the server's current one. Each call the budget counts is
appended here (wall-clock epoch seconds, one per line, flushed to the OS so
a killed process keeps it), and a new run seeds its gate with the calls of
the last window. Old lines are dropped when the file is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from runner.store.atomic import store_error, write_atomic

_KEEP_S = 3600.0


class CallLog:
    """Append-only record of counted calls; `recent` reads the last window's."""

    def __init__(self, out_dir: Path, *, now: float) -> None:
        self._path = out_dir / ".runner" / "calls.log"
        self._times = self._read(now)
        try:
            # Rewritten without the stale lines, then appended to.
            text = "".join(f"{t:.3f}\n" for t in self._times)
            write_atomic(self._path, text.encode())
            self._file: IO[str] | None = self._path.open("a", encoding="ascii")
        except OSError as err:
            raise store_error(err, self._path) from err

    def _read(self, now: float) -> list[float]:
        try:
            lines = self._path.read_text(encoding="ascii").split()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError):
            return []  # advice only: a damaged log costs a safe pause, not a run
        times: list[float] = []
        for line in lines:
            try:
                t = float(line)
            except ValueError:
                continue
            if now - _KEEP_S <= t <= now + 60:
                times.append(t)
        return sorted(times)

    def ages(self, span: float, now: float) -> list[float]:
        """How many seconds ago each call of the last `span` seconds was made."""
        return [now - t for t in self._times if now - span < t <= now]

    def append(self, wall: float) -> None:
        """Record one call made at `wall` (epoch seconds)."""
        if self._file is None:
            return
        try:
            self._file.write(f"{wall:.3f}\n")
            self._file.flush()
        except OSError:
            # The log only makes the next run's first window safer; a full
            # disk stops the run through the ledger, not through this.
            self._file = None

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


__all__ = ["CallLog"]
