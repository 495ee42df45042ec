"""The scheduler: one task group that walks the limits and runs each job to its end.

    dispatcher (pulls work items lazily)
        -> credit guard: reserve the job's estimate, or stop (budget / 406)
        -> in-flight cap: wait for a place
        -> start a job task: submit (rate gate) -> poll (rate gate when the
           budget counts all calls) -> result -> download -> sink

Every limit is a small object (rate.py, credits.py, inflight.py); this module
only walks them. The rate gate, the credit guard and the source of work
items are injected behind small protocols (`RateLimit`, `Credits`,
`WorkSource`): one process uses the local ones, several workers sharing a
budget use runner.coordination's, which live in Redis. Retries are decided
by retry.py alone; polling times by polling.py. The scheduler sees only
runner.errors, never httpx, and takes time only from anyio, so the same
code runs on a virtual clock in tests.

Stopping: `request_stop(reason)` (the budget, a 406) lets no new job start
and lets submitted jobs finish; with `abandon_polls` (Ctrl-C, a refused key,
a disk fault) polling jobs stop too and are left in the ledger as submitted,
to be re-attached by the next run while the server keeps them. Jobs whose
submit is on the wire finish submitting either way, so a stop never makes a
submit ambiguous by itself.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import anyio
from anyio.abc import TaskGroup

from runner.backends.base import Backend, Media, Result, Submission
from runner.errors import (
    ApiError,
    BadRequest,
    DownloadError,
    InsufficientCredits,
    JobFailed,
    NotFound,
    RateLimited,
    RetryableError,
    RunnerError,
    TransportError,
)
from runner.events import Event, EventKind, Listener, RunStats
from runner.jobs import Job
from runner.scheduling.credits import Credits
from runner.scheduling.inflight import InFlightCap, auto_cap
from runner.scheduling.polling import LatencyTracker, PollPolicy, first_poll_delay, next_poll_delay
from runner.scheduling.rate import (
    PRIORITY_RESULT,
    PRIORITY_STATUS,
    PRIORITY_SUBMIT,
    RateGate,
    RateLimit,
    RateModel,
)
from runner.scheduling.retry import Operation, RetryPolicy, retry_delay
from runner.scheduling.sink import Completion, JobSink, SavedImage
from runner.scheduling.source import IterSource, Outcome, WorkItem, WorkSource

__all__ = ["DEFAULT_MAX_DOWNLOAD", "RateScope", "Scheduler", "SchedulerConfig", "WorkItem"]

T = TypeVar("T")
RateScope = Literal["submit", "all"]

DEFAULT_MAX_DOWNLOAD = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Limits and policies of one run. Durations in seconds, already time-scaled."""

    rpm: int | None = 5
    rate_scope: RateScope = "submit"
    rate_model: RateModel = "window"
    window: float = 60.0
    margin: float = 1.0
    max_in_flight: int | None = None  # None: auto (Little's law)
    poll: PollPolicy = field(default_factory=PollPolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Ambiguous submits retried in one run, at most one per job: each may be
    # a duplicate charge, so a storm of lost answers must not become a
    # storm of payments. At least this many; 5 % of the run's jobs when more.
    max_ambiguous_retries: int = 10
    retention: float = 3600.0
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD
    seed: int | None = None


class _Stopped(Exception):
    """Internal: the run is stopping; the job goes back to planned."""


class Scheduler:
    """Runs work items against a backend under a rate gate, a credit guard and a cap.

    `gate` defaults to a local `RateGate` built from `config`.
    """

    def __init__(
        self,
        backend: Backend,
        sink: JobSink,
        guard: Credits,
        config: SchedulerConfig,
        *,
        listeners: Iterable[Listener] = (),
        wall: Callable[[], float] = time.time,
        gate: RateLimit | None = None,
    ) -> None:
        self._backend = backend
        self._sink = sink
        self._guard = guard
        self._config = config
        self._listeners = list(listeners)
        self._wall = wall
        self._rng = random.Random(config.seed)
        self._tracker = LatencyTracker(config.poll)
        self._gate: RateLimit = gate or RateGate(
            config.rpm, config.window, margin=config.margin, model=config.rate_model
        )
        first_cap = config.max_in_flight or auto_cap(
            config.rpm, config.window, self._tracker.expected()
        )
        self._cap = InFlightCap(first_cap)
        self._counts: Counter[str] = Counter()
        self._calls: Counter[str] = Counter()
        self._planned: int | None = None
        self._stop_reason: str | None = None
        self._hold_submits = False
        self._abandoning = False
        self._fatal: BaseException | None = None
        self._ambiguous_retries = 0
        self._start: float | None = None
        self._polls: set[anyio.CancelScope] = set()
        self._source: WorkSource = IterSource(())
        # How each job in flight ended, for the source; a job with no entry was left.
        self._outcomes: dict[str, Outcome] = {}

    # -- public ------------------------------------------------------------

    @property
    def stop_reason(self) -> str | None:
        """Why new submits stopped, or None."""
        return self._stop_reason

    def _stopped(self) -> bool:
        return self._stop_reason is not None

    def _holding(self) -> bool:
        # A method, not the attribute, so type checkers do not narrow it
        # across awaits (another task may set it meanwhile).
        return self._hold_submits

    def request_stop(
        self, reason: str, *, hold_submits: bool = True, abandon_polls: bool = False
    ) -> None:
        """No new job starts.

        `hold_submits`: jobs dispatched but not yet sent are not sent (a 406,
        an interrupt); without it they go on (the budget: they are reserved).
        `abandon_polls` (an interrupt, a fatal error): submitted jobs stop
        polling and stay re-attachable by the next run; without it they finish.
        """
        if self._stop_reason is None:
            self._stop_reason = reason
            self._emit("stopping", detail=reason)
        self._hold_submits = self._hold_submits or hold_submits
        if abandon_polls:
            # Also jobs whose submit answer is still on its way: they must not
            # start polling after the stop (their scope does not exist yet).
            self._abandoning = True
            for scope in list(self._polls):
                scope.cancel()

    def stats(self) -> RunStats:
        """A frozen snapshot of the counters."""
        credit = self._guard.stats()
        return RunStats(
            planned=self._planned,
            completed=self._counts["completed"],
            failed=self._counts["failed"],
            skipped=self._counts["skipped"],
            expired=self._counts["expired"],
            in_flight=self._cap.used,
            images=self._counts["images"],
            ambiguous=self._counts["ambiguous"],
            rate_limited=self._counts["rate_limited"],
            retries=self._counts["retry"],
            credits_spent=credit.spent,
            credits_reserved=credit.reserved,
            credits_ambiguous=credit.ambiguous,
            calls=dict(self._calls),
            stopped=self._stop_reason or credit.stopped,
            elapsed=anyio.current_time() - self._start if self._start is not None else 0.0,
        )

    def skipped(self, job: Job, detail: str = "") -> None:
        """Count a job an earlier run finished (the caller decided to skip it)."""
        self._counts["skipped"] += 1
        self._emit("skipped", job, detail)

    async def run(
        self, items: Iterable[WorkItem] | WorkSource, planned: int | None = None
    ) -> RunStats:
        """Run every item (pulled lazily) to its end; returns the final stats.

        `items` is an iterable of work items, or a WorkSource (claims shared
        with other workers). Raises AuthError (the key was refused) and
        StoreError (a disk fault) after letting other in-flight jobs stop cleanly.
        """
        # A WorkSource is not iterable; an iterable of items is pulled by an IterSource.
        self._source = IterSource(items) if isinstance(items, Iterable) else items
        self._planned = planned
        self._start = anyio.current_time()
        self._emit("started", detail=f"{planned} jobs" if planned is not None else "")
        async with anyio.create_task_group() as tg:
            await self._dispatch(tg)
        self._emit("finished", detail=self._stop_reason or "")
        if self._fatal is not None:
            raise self._fatal
        return self.stats()

    # -- dispatch ----------------------------------------------------------

    async def _dispatch(self, tg: TaskGroup) -> None:
        while self._stop_reason is None:
            item = await self._source.next()
            if item is None:
                return
            job = item.job
            if self._stopped():
                await self._source.finished(job, "unsent")
                return
            if item.resume is not None:
                await self._guard.hold(job.key, self._guard.estimate(job))
            else:
                estimate = self._guard.estimate(job)
                if not await self._guard.reserve(job.key, estimate):
                    reason = self._guard.stopped or (
                        f"credit budget reached: the next job needs ${estimate:.4f} and "
                        f"${self._guard.stats().committed:.4f} of "
                        f"${self._guard.stats().budget or 0:.2f} is committed"
                    )
                    await self._guard.stop(reason)
                    self.request_stop(reason, hold_submits=False)
                    await self._source.finished(job, "unsent")
                    return
            await self._cap.acquire()
            if self._stopped():
                self._cap.release()
                if item.resume is None:
                    await self._guard.refund(job.key)
                await self._source.finished(job, "unsent")
                return
            tg.start_soon(self._run_item, item)

    async def _run_item(self, item: WorkItem) -> None:
        job = item.job
        try:
            if item.resume is not None:
                self._emit("reattached", job, item.resume.request_id)
                await self._finish(job, item.resume, item.submitted_wall)
            elif job.endpoint == "v1":
                await self._run_sync(job)
            else:
                submission = await self._submit(job)
                if submission is not None:
                    await self._finish(job, submission, self._wall())
        except _Stopped:
            await self._guard.refund(job.key)
            self._outcomes[job.key] = "unsent"
            self._record(lambda: self._sink.unsent(job))
        except RunnerError as err:
            if isinstance(err, ApiError):
                # An answer we cannot use after the submit went out: the job
                # may have been billed, so its cost stays counted.
                await self._guard.mark_ambiguous(job.key)
                reason = str(err)
                self._record(lambda: self._fail(job, reason))
            else:
                self._stop_fatally(err)
        finally:
            self._cap.release()
            outcome = self._outcomes.pop(job.key, "left")
            # Shielded: a cancelled run still hands its jobs back.
            with anyio.CancelScope(shield=True):
                await self._source.finished(job, outcome)

    def _record(self, write: Callable[[], None]) -> None:
        """A ledger write as a job ends; a disk fault there stops the run like any other
        (raised from an except block, it would escape the task group instead)."""
        try:
            write()
        except RunnerError as err:
            self._stop_fatally(err)

    def _stop_fatally(self, err: RunnerError) -> None:
        # Auth and disk faults end the run; other jobs stop cleanly and stay re-attachable.
        if self._fatal is None:
            self._fatal = err
        self.request_stop(str(err), abandon_polls=True)

    # -- calls through the gate -------------------------------------------

    async def balance(self) -> float | None:
        """The account's balance in USD (None where the API does not say or cannot now).

        Goes through the rate gate like any call, since a budget that counts
        every call counts this one too.
        """
        try:
            return await self._call("credits", None, self._backend.credits, priority=0)
        except RunnerError:
            return None  # advice only: a run does not fail over it

    def _send_marks(
        self, job: Job, estimate: float
    ) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
        """(before, refused): record a submit going on the wire, and its clear refusal.

        `before` runs after the rate gate, right before the send: a job
        waiting for its slot has sent nothing, and a crash then must not count
        it as possibly billed. `refused` runs when the server clearly did not
        accept it (429, 5xx, no connection), so a crash while the retry waits
        does not count it either. A lost answer leaves it marked: it may be billed.
        """
        marked = False

        async def before() -> None:
            nonlocal marked
            if not marked:
                marked = True
                self._sink.submitting(job, estimate)
                await self._source.submitting(job)

        async def refused() -> None:
            nonlocal marked
            if marked:
                marked = False
                self._sink.unsent(job)

        return before, refused

    async def _call(
        self,
        op: Operation,
        job: Job | None,
        fn: Callable[[], Awaitable[T]],
        *,
        priority: int,
        before: Callable[[], Awaitable[None]] | None = None,
        refused: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """One API call with retries; raises the last error when retries are over.

        `before` runs after the rate gate admits the call, right before it is
        sent; `refused` when the answer says the server did not take it.
        """
        attempt = 0
        limited = 0
        while True:
            if op in ("submit", "sync") and self._holding():
                raise _Stopped
            counted = op in ("submit", "sync") or (
                self._config.rate_scope == "all" and op != "download"
            )
            if counted:
                await self._gate.acquire(priority)
                if op in ("submit", "sync") and self._holding():
                    self._gate.finished()
                    raise _Stopped
            if before is not None:
                await before()
            self._calls[op] += 1
            try:
                return await fn()
            except RateLimited as err:
                self._counts["rate_limited"] += 1
                if counted:
                    # Only a call the budget counts says the budget is too
                    # high; a 429 on a poll the limit does not count (or on
                    # the media host) backs off that call alone.
                    self._gate.rate_limited(err.retry_after)
                self._emit("rate_limited", job, f"{op}: {err}")
                failure: BaseException = err
                # The gate slows everyone down after a 429, so 429s use up
                # tries more slowly than real failures: a storm is waited out.
                limited += 1
                tries = 1 + limited // 4
            except (RetryableError, NotFound, DownloadError) as err:
                failure = err
                attempt += 1
                tries = attempt
            finally:
                if counted:
                    self._gate.finished()
            lost = isinstance(failure, TransportError) and failure.sent
            if refused is not None and not lost:
                await refused()
            delay = retry_delay(op, failure, max(tries, attempt), self._config.retry, self._rng)
            if delay is None:
                raise failure
            self._counts["retry"] += 1
            self._emit("retry", job, f"{op} after {failure}")
            await anyio.sleep(delay)

    # -- v2: submit, poll, result, download --------------------------------

    async def _submit(self, job: Job) -> Submission | None:
        estimate = self._guard.estimate(job)
        before_send, refused = self._send_marks(job, estimate)
        tried_again = False
        while True:
            try:
                submission = await self._call(
                    "submit",
                    job,
                    lambda: self._backend.submit(job.model, job.request),
                    priority=PRIORITY_SUBMIT,
                    before=before_send,
                    refused=refused,
                )
            except TransportError as err:
                if not err.sent:
                    raise
                if not await self._ambiguous_again(job, tried_again, estimate):
                    self._fail(job, f"submit answer lost ({err}); not retried: it may be billed")
                    return None
                tried_again = True
                continue
            except InsufficientCredits as err:
                reason = f"the API refused a submit for lack of credits (406): {err}"
                await self._guard.stop(reason)
                self.request_stop(reason)
                raise _Stopped from err
            except (BadRequest, RetryableError) as err:
                await self._guard.refund(job.key)
                self._fail(job, str(err))
                return None
            wall = self._wall()
            # The shared run's record first: a worker killed between the two
            # leaves the request id where a taker in another folder finds it,
            # so it re-attaches instead of paying again (its own ledger keeps
            # the row `submitting`; the taker's record of the job wins).
            await self._source.submitted(job, submission, wall)
            self._sink.submitted(job, submission, wall)
            self._emit("submitted", job, submission.request_id)
            return submission

    async def _ambiguous_again(self, job: Job, tried_again: bool, estimate: float) -> bool:
        """Record an ambiguous submit; True when the job may be submitted once more."""
        self._counts["ambiguous"] += 1
        await self._guard.mark_ambiguous(job.key)
        self._sink.ambiguous(job)
        self._emit("ambiguous", job, "the submit's answer was lost; it may have been billed")
        # The cap grows with the run (5 % of its jobs), so a long run's rare
        # lost answers are retried while a storm of them is not paid for.
        cap = self._config.max_ambiguous_retries
        if self._planned is not None:
            cap = max(cap, math.ceil(self._planned * 0.05))
        if tried_again or self._ambiguous_retries >= cap:
            return False
        if self._stop_reason is not None or not await self._guard.reserve(job.key, estimate):
            return False
        self._ambiguous_retries += 1
        return True

    async def _finish(self, job: Job, submission: Submission, submitted_wall: float | None) -> None:
        started = anyio.current_time()
        if submitted_wall is not None:
            # A re-attached job has been running since its submit.
            started -= max(0.0, self._wall() - submitted_wall)
        scope = anyio.CancelScope()
        if self._abandoning:
            scope.cancel()
        result: Result | None = None
        self._polls.add(scope)
        try:
            with scope:
                result = await self._poll(job, submission, started)
        finally:
            self._polls.discard(scope)
        if scope.cancelled_caught or result is None:
            return  # stopping: the ledger keeps it as submitted, to re-attach
        latency = anyio.current_time() - started
        self._tracker.observe(latency, result.metrics.inference_time)
        if self._config.max_in_flight is None:
            self._cap.resize(
                auto_cap(self._config.rpm, self._config.window, self._tracker.expected())
            )
        await self._save(job, result, submission.request_id, submitted_wall, latency)

    async def _poll(self, job: Job, submission: Submission, started: float) -> Result | None:
        """Poll until the result is there; None when the job ended otherwise (recorded)."""
        deadline = started + self._config.poll.deadline
        delay = first_poll_delay(self._tracker, self._rng) - (anyio.current_time() - started)
        while True:
            await anyio.sleep(max(0.0, delay))
            try:
                status = await self._call(
                    "status",
                    job,
                    lambda: self._backend.status(submission),
                    priority=PRIORITY_STATUS,
                )
                state = status.state
                if state == "COMPLETED":
                    result = await self._call(
                        "result",
                        job,
                        lambda: self._backend.result(submission),
                        priority=PRIORITY_RESULT,
                    )
                    if result.state == "COMPLETED" and result.media:
                        return result
                    # A status that ran ahead of its result (or flapped back):
                    # the job is paid for, so poll on instead of failing it.
                    state = result.state
                    if state == "FAILED":
                        await self._job_failed(job, result.error or "FAILED", submission.request_id)
                        return None
            except NotFound:
                await self._lost(job, submission, started)
                return None
            if state == "FAILED":
                await self._job_failed(job, status.error or "FAILED", submission.request_id)
                return None
            if anyio.current_time() >= deadline:
                await self._guard.mark_ambiguous(job.key)
                self._counts["failed"] += 1
                self._outcomes[job.key] = "left"
                self._emit(
                    "failed",
                    job,
                    f"no result within {self._config.poll.deadline:.0f} s; it stays submitted: "
                    "run again within the hour to re-attach",
                )
                return None
            delay = next_poll_delay(
                self._tracker, state if state != "COMPLETED" else "PROCESSING", self._rng
            )

    async def _lost(self, job: Job, submission: Submission, started: float) -> None:
        age = anyio.current_time() - started
        if age >= self._config.retention:
            await self._guard.mark_ambiguous(job.key)
            self._counts["expired"] += 1
            self._sink.expired(job)
            self._outcomes[job.key] = "expired"
            self._emit("expired", job, f"request {submission.request_id} is gone from the server")
        else:
            await self._guard.mark_ambiguous(job.key)
            self._fail(job, f"request {submission.request_id} not found on the server")

    async def _job_failed(self, job: Job, reason: str, request_id: str | None) -> None:
        await self._guard.refund(job.key)  # FAILED jobs are not billed
        self._fail(job, reason, request_id)

    def _fail(self, job: Job, reason: str, request_id: str | None = None) -> None:
        self._counts["failed"] += 1
        self._sink.failed(job, reason, request_id=request_id)
        self._outcomes[job.key] = "failed"
        self._emit("failed", job, reason)

    async def _save(
        self,
        job: Job,
        result: Result,
        request_id: str | None,
        submitted_wall: float | None,
        latency: float | None,
    ) -> None:
        images: list[SavedImage] = []
        if not result.media:
            await self._guard.mark_ambiguous(job.key)
            self._fail(job, "the result has no image", request_id)
            return
        for index, media in enumerate(result.media):
            try:
                images.append(await self._download(job, index, media))
            except DownloadError as err:
                # Paid for: the charge stands.
                await self._guard.settle(job.key, result.metrics.cost)
                if not err.retryable or request_id is None or job.endpoint != "v2":
                    # The same bytes again would fail again (wrong format or
                    # size, too large, refused address): final.
                    self._fail(job, f"image {index}: {err}", request_id)
                    return
                # Broken in transit past the retries: the server keeps the
                # result for an hour, so the job stays submitted in the
                # ledger and the next run fetches it again instead of paying
                # for it once more.
                self._counts["failed"] += 1
                self._outcomes[job.key] = "left"
                self._emit(
                    "failed",
                    job,
                    f"image {index}: {err}; it stays submitted: run again within the hour "
                    "to download it",
                )
                return
        charged = await self._guard.settle(job.key, result.metrics.cost)
        completion = Completion(
            request_id=request_id,
            submitted_wall=submitted_wall,
            completed_wall=self._wall(),
            wall_s=latency,
            metrics=result.metrics,
            estimate=self._guard.estimate(job),
            charged=charged,
            seed=result.seed,
        )
        self._sink.completed(job, images, completion)
        self._outcomes[job.key] = "completed"
        self._counts["completed"] += 1
        self._counts["images"] += len(images)
        self._emit("completed", job, request_id or "", credits=charged)

    async def _download(self, job: Job, index: int, media: Media) -> SavedImage:
        async def fetch_and_save() -> SavedImage:
            data = await self._backend.download(media, max_bytes=self._config.max_download_bytes)
            return self._sink.save_image(job, index, data)

        return await self._call("download", job, fetch_and_save, priority=PRIORITY_RESULT)

    # -- v1: one blocking call ---------------------------------------------

    async def _run_sync(self, job: Job) -> None:
        estimate = self._guard.estimate(job)
        before_send, refused = self._send_marks(job, estimate)
        tried_again = False
        started = anyio.current_time()
        while True:
            try:
                answer = await self._call(
                    "sync",
                    job,
                    lambda: self._backend.run_sync(job.model, job.request),
                    priority=PRIORITY_SUBMIT,
                    before=before_send,
                    refused=refused,
                )
                break
            except TransportError as err:
                if not err.sent or not await self._ambiguous_again(job, tried_again, estimate):
                    self._fail(job, f"sync call answer lost ({err}); not retried: it may be billed")
                    return
                tried_again = True
            except InsufficientCredits as err:
                reason = f"the API refused a call for lack of credits (406): {err}"
                await self._guard.stop(reason)
                self.request_stop(reason)
                raise _Stopped from err
            except (BadRequest, JobFailed, RetryableError) as err:
                await self._guard.refund(job.key)
                self._fail(job, str(err))
                return
        result = Result(
            state="COMPLETED", media=answer.media, metrics=answer.metrics, seed=answer.seed
        )
        latency = anyio.current_time() - started
        self._tracker.observe(latency, answer.metrics.inference_time)
        await self._save(job, result, answer.request_id, self._wall(), latency)

    # -- events ------------------------------------------------------------

    def _emit(
        self,
        kind: EventKind,
        job: Job | None = None,
        detail: str = "",
        *,
        credits: float | None = None,
    ) -> None:
        if not self._listeners:
            return
        event = Event(
            kind=kind,
            at=anyio.current_time(),
            wall=self._wall(),
            key=job.key if job else None,
            prompt_id=job.prompt_id if job else None,
            detail=detail,
            credits=credits,
        )
        snapshot = self.stats()
        for listener in self._listeners:
            listener(event, snapshot)
