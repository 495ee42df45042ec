"""Image APIs behind one protocol: Segmind over HTTP, and the embedded emulator.

`base` holds the `Backend` protocol and its values; `wire` the sans-IO
protocol (requests from `calls`; `answers`, `hints` and `media` read
answers); `segmind` the httpx client, which reads every answer through
`bounded`'s size cap; `select` the choice between ``segmind`` and ``local``.
"""

from runner.backends.base import (
    Backend,
    Media,
    Metrics,
    Result,
    StatusReport,
    Submission,
    SyncResult,
    submission_for,
)
from runner.backends.bounded import AnswerLimits
from runner.backends.segmind import MediaGuard, SegmindBackend, Timeouts
from runner.backends.select import (
    BackendChoice,
    choose_backend,
    local_backend,
    open_backend,
    resolve_base_url,
)
from runner.backends.wire import normalize_base_url

__all__ = [
    "AnswerLimits",
    "Backend",
    "BackendChoice",
    "Media",
    "MediaGuard",
    "Metrics",
    "Result",
    "SegmindBackend",
    "StatusReport",
    "Submission",
    "SyncResult",
    "Timeouts",
    "choose_backend",
    "local_backend",
    "normalize_base_url",
    "open_backend",
    "resolve_base_url",
    "submission_for",
]
