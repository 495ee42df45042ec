"""OUT/.runner/rate.json: what a run of this folder learned of the server's rate limit.

The declared `requests_per_minute` is only a starting belief (issue #12);
once a run has learned the server's real quota and window from its 429s, the
next run of the folder starts from that instead of paying the same 429s
again. The file is advice: a missing or damaged one means "nothing learned".
Windows are in real (unscaled) seconds.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from runner.store.atomic import store_error, write_atomic


@dataclass(frozen=True, slots=True)
class LearnedRate:
    """`limit` calls per `window_s` real seconds (None: no limit known).

    `learned`: a 429 taught it (else it is the declared or auto-grown belief);
    `rate_limited`: the 429s the run met; `declared`: the manifest's limit
    (None under auto).
    """

    limit: int | None
    window_s: float
    learned: bool
    rate_limited: int
    declared: int | None


def _path(out_dir: Path) -> Path:
    return out_dir / ".runner" / "rate.json"


def load_learned(out_dir: Path) -> LearnedRate | None:
    """What an earlier run learned, or None (no file, or one that cannot be true)."""
    try:
        doc = json.loads(_path(out_dir).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    limit, window = doc.get("limit"), doc.get("window_s")
    declared, limited = doc.get("declared"), doc.get("rate_limited", 0)
    if not (limit is None or (type(limit) is int and limit >= 1)):
        return None
    if not (isinstance(window, int | float) and math.isfinite(window) and 0 < window <= 3600):
        return None
    if not (declared is None or (type(declared) is int and declared >= 1)):
        declared = None
    return LearnedRate(
        limit=limit,
        window_s=float(window),
        learned=doc.get("learned") is True,
        rate_limited=limited if type(limited) is int and limited >= 0 else 0,
        declared=declared,
    )


def save_learned(out_dir: Path, rate: LearnedRate) -> None:
    """Write it atomically (StoreError when the folder cannot be written)."""
    path = _path(out_dir)
    try:
        write_atomic(path, (json.dumps(asdict(rate), indent=2) + "\n").encode())
    except OSError as err:
        raise store_error(err, path) from err


__all__ = ["LearnedRate", "load_learned", "save_learned"]
