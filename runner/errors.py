"""The whole exception tree of runner.

    RunnerError                      base; str() is the message a user reads
    ├── UsageError                   bad CLI arguments or settings        (exit 2)
    │   └── ManifestError            bad manifest: file, line, column, field, fix
    ├── AuthError                    401 / 403 from the API               (exit 2)
    ├── ApiError                     the API answered something we do not accept
    │   ├── RetryableError           safe to try again (after `retry_after`)
    │   │   ├── RateLimited          429; `retry_after` from the server's hints
    │   │   ├── ServerError          500 / 502 / 503 / 504
    │   │   └── TransportError       connection-level failure; `sent` tells whether
    │   │                            the request may have reached the server
    │   ├── BadRequest               400: the params were refused (final for the job)
    │   ├── JobFailed                FAILED / 422, e.g. a content block (final for the job)
    │   ├── NotFound                 404: unknown or expired request id
    │   ├── InsufficientCredits      406: the account cannot pay       (exit 3)
    │   └── ProtocolError            a 2xx answer we cannot read (missing fields, bad JSON)
    ├── DownloadError                media too large, truncated, wrong format or size
    └── StoreError                   local disk faults: no space, no permission, read-only

Lower-level errors (httpx, OSError, yaml) are translated where those
libraries are called; the scheduler sees only these classes. No message here
ever carries the API key: backends build messages from status, URL path and
the server's `error` text only.
"""

from __future__ import annotations


class RunnerError(Exception):
    """Base class. `str(err)` is what the user reads; it names the place and the fix."""


class UsageError(RunnerError):
    """Bad command-line arguments or settings. Exit code 2."""


class ManifestError(UsageError):
    """A manifest that cannot be used.

    `path` is the manifest file, `line` / `column` are 1-based when known,
    `field` is the dotted location (e.g. ``prompts[1].params.n``) and `hint`
    says what to do. The message puts them together as
    ``manifests/x.yaml:12:5: prompts[1].params.n: ... (hint)``.

    A manifest with several problems is one ManifestError: the first in file
    order (its attributes), then `others` (each on a line of its own, placed
    alike), then ``[and N more problems]`` for the `more` not shown
    (runner.manifest.messages.combine).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        hint: str | None = None,
        others: tuple[ManifestError, ...] = (),
        more: int = 0,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.column = column
        self.field = field
        self.hint = hint
        self.others = others
        self.more = more
        text = self.render()
        text += "".join(f"\n{other.render()}" for other in others)
        if more:
            text += f"\n[and {more} more problem{'s' if more > 1 else ''}]"
        super().__init__(text)

    @property
    def count(self) -> int:
        """How many problems this error stands for (itself, the others shown, the rest)."""
        return 1 + len(self.others) + self.more

    def render(self) -> str:
        place = self.path or "<manifest>"
        if self.line is not None:
            place += f":{self.line}"
            if self.column is not None:
                place += f":{self.column}"
        text = f"{place}: "
        if self.field:
            text += f"{self.field}: "
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class AuthError(RunnerError):
    """The API refused the key (401) or the call (403). Exit code 2."""

    def __init__(self, message: str, *, status: int) -> None:
        self.status = status
        super().__init__(message)


class ApiError(RunnerError):
    """The API answered something we do not accept. `status` is the HTTP code, if any."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RetryableError(ApiError):
    """Safe to try again. `retry_after` is the server's hint in seconds, if it gave one."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status)


class RateLimited(RetryableError):
    """429. `retry_after` comes from Retry-After or x-rate-limit-reset-at-utc.

    `coarse`: that hint is good only to the second (no fraction), so the
    server may admit again up to a second after it says.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        coarse: bool = False,
    ) -> None:
        self.coarse = coarse
        super().__init__(message, status=status, retry_after=retry_after)


class ServerError(RetryableError):
    """A 5xx answer."""


class TransportError(RetryableError):
    """No usable answer at the connection level.

    `sent` is False when the request surely never reached the server (the
    connection was never made), True when it may have (timeouts after the
    request was written, resets, a connection dropped mid-answer). A submit
    with `sent=True` is *ambiguous*: it may have been accepted and billed.
    """

    def __init__(self, message: str, *, sent: bool, retry_after: float | None = None) -> None:
        self.sent = sent
        super().__init__(message, status=None, retry_after=retry_after)


class BadRequest(ApiError):
    """400: the server refused the params. Final for the job."""


class JobFailed(ApiError):
    """The job ended FAILED (HTTP 422), e.g. a content block. Final for the job."""

    def __init__(self, message: str, *, status: int | None = 422, reason: str = "") -> None:
        self.reason = reason or message
        super().__init__(message, status=status)


class NotFound(ApiError):
    """404: the request id is unknown or its result expired (1 hour on Segmind)."""


class InsufficientCredits(ApiError):
    """406: the account's balance is below the call's cost. Stops new submits; exit 3."""


class ProtocolError(ApiError):
    """A 2xx answer we cannot read: missing request_id, no output, bad JSON."""


class DownloadError(RunnerError):
    """A media download that is too large, truncated, or not the image asked for."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)


class StoreError(RunnerError):
    """A local disk fault (no space, no permission, read-only folder). Stops the run."""
