"""What the scheduler needs from an API: the Backend protocol and the values it returns.

Every backend (Segmind over HTTP; the same client over the in-process
emulator) implements `Backend`. Calls raise only classes from
`runner.errors`, never httpx's. Times are anyio clock seconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol
from urllib.parse import quote

from runner.jobs import Request

State = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED"]
TERMINAL_STATES: tuple[State, ...] = ("COMPLETED", "FAILED")
# What a request id may look like: Segmind's are UUIDs; this leaves room for
# other opaque ids but not for a path (``/``, ``..``), a query, a fragment,
# spaces or control characters.
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:-]{0,127}")


def is_request_id(value: str) -> bool:
    """True when `value` has only the characters (and length) a real request id has."""
    return _REQUEST_ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Submission:
    """A v2 submit the server accepted.

    `n` is how many images the job asked for, when known: a result with more
    is cut to `n`, one with fewer is marked incomplete.
    """

    request_id: str
    status_url: str
    response_url: str
    n: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Metrics:
    """What the server reported about a job; every field optional. Seconds and USD."""

    inference_time: float | None = None
    queue_time: float | None = None
    total_time: float | None = None
    cost: float | None = None
    remaining_credits: float | None = None


@dataclass(frozen=True, slots=True)
class DeliveredMetrics(Metrics):
    """Metrics of an answer whose images the backend re-encodes to the job's output_format.

    `delivered_type` is the image type the answer said it sent (e.g. ``image/jpeg``),
    so the sidecar can say the saved file was converted.
    """

    delivered_type: str | None = None


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One answer of the status endpoint."""

    state: State
    error: str | None = None
    metrics: Metrics = field(default_factory=Metrics)


@dataclass(frozen=True, slots=True)
class Media:
    """One output image: a URL to download, or bytes that came inline (base64 / data URI)."""

    url: str | None = None
    data: bytes | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """The result body of a finished job.

    `media` never holds more than the images asked for: `dropped` counts the
    extra outputs the answer named (not downloaded), `missing` the images
    asked for that it lacked (`incomplete`).
    """

    state: State
    media: tuple[Media, ...] = ()
    error: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    seed: int | None = None
    dropped: int = 0
    missing: int = 0

    @property
    def incomplete(self) -> bool:
        """True when the answer held fewer images than the job asked for."""
        return self.missing > 0


@dataclass(frozen=True, slots=True)
class SyncResult:
    """A v1 sync answer: the image(s) and the accounting headers.

    `dropped` and `missing` as in `Result`.
    """

    media: tuple[Media, ...]
    metrics: Metrics = field(default_factory=Metrics)
    request_id: str | None = None
    seed: int | None = None
    dropped: int = 0
    missing: int = 0

    @property
    def incomplete(self) -> bool:
        """True when the answer held fewer images than the job asked for."""
        return self.missing > 0


class Backend(Protocol):
    """An image API. One instance per run; `aclose` releases its connections."""

    name: str  # "segmind" or "local"
    base_url: str  # the API root, without /v1 or /v2

    @property
    def polls_result(self) -> bool:
        """Whether `result` answers a job in progress with its state (a poll is one call).

        When False, a job is polled with `status` and its result fetched
        once that says COMPLETED. The backend may turn it off while it runs.
        """
        ...

    async def submit(self, model: str, request: Request) -> Submission: ...

    async def status(self, submission: Submission) -> StatusReport: ...

    async def result(self, submission: Submission) -> Result: ...

    async def run_sync(self, model: str, request: Request) -> SyncResult: ...

    async def download(self, media: Media, *, max_bytes: int) -> bytes: ...

    async def credits(self) -> float | None:
        """The account's balance in USD, or None where the API does not say."""
        ...

    async def aclose(self) -> None: ...


def submission_for(base_url: str, request_id: str, *, n: int | None = None) -> Submission:
    """Rebuild a Submission from a recorded request id (resume), with Segmind's URL scheme.

    The id is percent-encoded as one path segment, so a recorded id can never
    rewrite the path the key is sent to. `n` is the job's image count.
    """
    root = base_url.rstrip("/")
    segment = quote(request_id, safe="")
    if segment.strip(".") == "":
        # "." and ".." are dot segments that a URL normaliser would resolve.
        segment = segment.replace(".", "%2E")
    return Submission(
        request_id=request_id,
        status_url=f"{root}/v2/requests/{segment}/status",
        response_url=f"{root}/v2/requests/{segment}",
        n=n,
    )


Headers = Mapping[str, str]
