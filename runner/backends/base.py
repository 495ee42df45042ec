"""What the scheduler needs from an API: the Backend protocol and the values it returns.

Every backend (Segmind over HTTP; the same client over the in-process
emulator) implements `Backend`. Calls raise only classes from
`runner.errors`, never httpx's. Times are anyio clock seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from runner.jobs import Request

State = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED"]
TERMINAL_STATES: tuple[State, ...] = ("COMPLETED", "FAILED")


@dataclass(frozen=True, slots=True)
class Submission:
    """A v2 submit the server accepted."""

    request_id: str
    status_url: str
    response_url: str


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
    """The result body of a finished job."""

    state: State
    media: tuple[Media, ...] = ()
    error: str | None = None
    metrics: Metrics = field(default_factory=Metrics)
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class SyncResult:
    """A v1 sync answer: the image(s) and the accounting headers."""

    media: tuple[Media, ...]
    metrics: Metrics = field(default_factory=Metrics)
    request_id: str | None = None
    seed: int | None = None


class Backend(Protocol):
    """An image API. One instance per run; `aclose` releases its connections."""

    name: str  # "segmind" or "local"
    base_url: str  # the API root, without /v1 or /v2

    async def submit(self, model: str, request: Request) -> Submission: ...

    async def status(self, submission: Submission) -> StatusReport: ...

    async def result(self, submission: Submission) -> Result: ...

    async def run_sync(self, model: str, request: Request) -> SyncResult: ...

    async def download(self, media: Media, *, max_bytes: int) -> bytes: ...

    async def credits(self) -> float | None:
        """The account's balance in USD, or None where the API does not say."""
        ...

    async def aclose(self) -> None: ...


def submission_for(base_url: str, request_id: str) -> Submission:
    """Rebuild a Submission from a recorded request id (resume), with Segmind's URL scheme."""
    root = base_url.rstrip("/")
    return Submission(
        request_id=request_id,
        status_url=f"{root}/v2/requests/{request_id}/status",
        response_url=f"{root}/v2/requests/{request_id}",
    )


Headers = Mapping[str, str]
