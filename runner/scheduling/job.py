"""One job from its start to its final record.

v2: billed submit -> poll (the result, or status then result) -> download
-> `Completed`;
v1: one billed sync call -> download -> `Completed`; a re-attached job
starts at the poll. Each step returns the final record instead of
publishing it, so that `run_job` publishes exactly one per job, whatever
happened (see runner.scheduling.lifecycle).

Retries are decided by retry.py alone (through calls.call); polling times
by polling.py, from what earlier polls saw. Only runner.errors is seen
here, never httpx, and time comes only from anyio, so the same code runs
on a virtual clock in tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from runner.backends.base import Media, Result, State, Submission
from runner.errors import ApiError, DownloadError, NotFound, RetryableError, RunnerError
from runner.jobs import Job
from runner.money import ZERO
from runner.scheduling.calls import Answered, Stopped, billed_send, call
from runner.scheduling.context import RunContext
from runner.scheduling.inflight import auto_cap, latency_free_cap
from runner.scheduling.lifecycle import (
    Completed,
    Completion,
    Expired,
    Failed,
    JobEnd,
    Left,
    Reattached,
    SavedImage,
    Submitted,
    Unsent,
)
from runner.scheduling.polling import JobPolls
from runner.scheduling.rate import PRIORITY_RESULT, PRIORITY_STATUS
from runner.scheduling.sink import JobSink
from runner.scheduling.source import WorkItem

T = TypeVar("T")


class _Switched(Exception):
    """The backend stopped polling results mid-poll (not a RunnerError: no retry sees it)."""


@dataclass(frozen=True, slots=True)
class _Answer:
    """What one poll said: `found` when the job is done with its images, else its state.

    `sent` and `answered`: the job's age (seconds) when the deciding call
    went out and when its answer came.
    """

    state: State
    found: Result | None
    error: str | None
    sent: float
    answered: float

    @classmethod
    def of(cls, result: Result, sent: float, answered: float) -> _Answer:
        if result.state == "COMPLETED" and result.media:
            return cls("COMPLETED", result, None, sent, answered)
        # COMPLETED without images here is a status ahead of its result: not yet.
        state: State = "PROCESSING" if result.state == "COMPLETED" else result.state
        return cls(state, None, result.error, sent, answered)


class JobRunner:
    """Runs work items to their end in the context of one run."""

    def __init__(self, ctx: RunContext, sink: JobSink) -> None:
        self._ctx = ctx
        self._sink = sink

    async def run_job(self, item: WorkItem) -> None:
        """Run `item` and publish its final record; never raises a RunnerError.

        A fatal error (a refused key, a disk fault) stops the run
        (`Stop.fail`) and leaves this job re-attachable.
        """
        ctx = self._ctx
        job = item.job
        final: JobEnd
        # Polling's end game waits for this job to poll or end (polling.py).
        arrived = ctx.polls.expect()
        try:
            final = await self._life(item)
        except Stopped:
            await ctx.guard.refund(job.key)
            final = Unsent(job)
        except ApiError as err:
            # An answer we cannot use after the submit went out: the job
            # may have been billed, so its cost stays counted.
            await ctx.guard.mark_ambiguous(job.key)
            final = Failed(job, str(err))
        except RunnerError as err:
            ctx.stop.fail(err)
            final = Left(job)
        finally:
            arrived()
        # Shielded: a cancelled run still records and hands back its jobs.
        with anyio.CancelScope(shield=True):
            await ctx.publish(final)

    async def _life(self, item: WorkItem) -> JobEnd:
        ctx = self._ctx
        job = item.job
        if item.resume is not None:
            await ctx.publish(Reattached(job, item.resume))
            return await self._finish(job, item.resume, item.submitted_wall)
        if job.endpoint == "v1":
            return await self._run_sync(job)

        async def record(accepted: Answered[Submission]) -> None:
            await ctx.publish(Submitted(job, accepted.value, accepted.wall))

        sent = await billed_send(
            ctx,
            "submit",
            job,
            lambda: ctx.backend.submit(job.model, job.request),
            accepted=record,
        )
        if isinstance(sent, Failed):
            return sent
        # The job's age counts from the submit's answer (`Answered.clock`).
        return await self._finish(job, sent.value, sent.wall, sent.clock)

    # -- v2: poll, result, download -------------------------------------------

    async def _finish(
        self,
        job: Job,
        submission: Submission,
        submitted_wall: float | None,
        started: float | None = None,
    ) -> JobEnd:
        """Poll, fetch and save a submitted job; `started` is when its submit was answered."""
        ctx = self._ctx
        if started is None:
            started = anyio.current_time()
            if submitted_wall is not None:
                # A re-attached job has been running since its submit.
                started -= max(0.0, ctx.wall() - submitted_wall)
        polled: Result | JobEnd = Left(job)
        with ctx.stop.polling():
            polled = await self._poll(job, submission, started)
        if not isinstance(polled, Result):
            return polled  # a final answer, or stopping: the ledger keeps it submitted
        latency = anyio.current_time() - started
        if ctx.config.max_in_flight is None:
            # The latency model's median is a fit over every remembered job:
            # asked only where the latency can move the cap.
            cap = latency_free_cap(ctx.config.rpm)
            if cap is None:
                cap = auto_cap(ctx.config.rpm, ctx.config.window, ctx.polls.expected())
            ctx.cap.resize(cap)
        return await self._save(job, polled, submission.request_id, submitted_wall, latency)

    async def _poll(self, job: Job, submission: Submission, started: float) -> Result | JobEnd:
        """Poll until the result is there, or the job's final record.

        Each poll is one call when the backend's result endpoint answers a
        job in progress with its state (`Backend.polls_result`), else a
        status call and, once it says COMPLETED, the result call. What each
        answer taught goes to the run's latency model (polling.py).
        """
        ctx = self._ctx
        deadline = started + ctx.config.poll.deadline
        polls = ctx.polls.job()
        try:
            while True:
                age = anyio.current_time() - started
                # Never past the server's retention (polling.py decides).
                target = await polls.next_age(age)
                await anyio.sleep(max(0.0, started + target - anyio.current_time()))
                try:
                    answer = await self._ask(job, submission, started, polls)
                except NotFound:
                    return await self._lost(job, submission, started)
                except RetryableError as err:
                    # Paid for and unreadable past the retries: like the poll
                    # deadline, the job stays submitted for the next run.
                    await ctx.guard.mark_ambiguous(job.key)
                    return Left(
                        job,
                        f"{err}; it stays submitted: run again within the hour to re-attach",
                    )
                if isinstance(answer.found, Result):
                    polls.done(answer.answered, answer.found.metrics)
                    return answer.found
                if answer.state == "FAILED":
                    return await self._job_failed(job, answer.error, submission)
                polls.not_done(answer.sent, answer.state)
                if anyio.current_time() >= deadline:
                    await ctx.guard.mark_ambiguous(job.key)
                    return Left(
                        job,
                        f"no result within {ctx.config.poll.deadline:.0f} s; it stays submitted: "
                        "run again within the hour to re-attach",
                    )
        finally:
            polls.close()

    async def _ask(
        self, job: Job, submission: Submission, started: float, polls: JobPolls
    ) -> _Answer:
        """One poll: the job's state, and its result when it is done.

        `sent` is the job's age when the poll that answered was sent, and
        `answered` when its answer came: a "not yet" says the job was not
        done at `sent`, a "done" that it was at `answered`. A status that
        says COMPLETED is told to `polls` before the result is fetched.
        """
        ctx = self._ctx
        clock: list[float] = [0.0, 0.0]

        def timed(fn: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
            async def asked() -> T:
                clock[0] = anyio.current_time() - started
                value = await fn()
                clock[1] = anyio.current_time() - started
                return value

            return asked

        def fetch() -> Awaitable[Result]:
            return ctx.backend.result(submission)

        async def poll_result() -> Result:
            try:
                return await fetch()
            except ApiError:
                if ctx.backend.polls_result:
                    raise
                # This answer turned the backend to status polls: ask that now,
                # without the retries meant for a result that is there.
                raise _Switched from None

        if ctx.backend.polls_result:
            try:
                result = await call(
                    ctx, "result", job, timed(poll_result), priority=PRIORITY_STATUS
                )
            except _Switched:
                pass
            else:
                return _Answer.of(result, clock[0], clock[1])
        status = await call(
            ctx,
            "status",
            job,
            timed(lambda: ctx.backend.status(submission)),
            priority=PRIORITY_STATUS,
        )
        sent, answered = clock
        if status.state != "COMPLETED":
            return _Answer(status.state, None, status.error, sent, answered)
        polls.completed(answered, status.metrics)
        result = await call(ctx, "result", job, fetch, priority=PRIORITY_RESULT)
        # A status that ran ahead of its result (or flapped back) is a "not
        # yet": the job is paid for, so it is polled on instead of failed.
        return _Answer.of(result, sent, answered)

    async def _lost(self, job: Job, submission: Submission, started: float) -> JobEnd:
        ctx = self._ctx
        await ctx.guard.mark_ambiguous(job.key)
        if anyio.current_time() - started >= ctx.config.retention:
            return Expired(job, submission.request_id)
        return Failed(job, f"request {submission.request_id} not found on the server")

    async def _job_failed(self, job: Job, error: str | None, submission: Submission) -> JobEnd:
        await self._ctx.guard.refund(job.key)  # FAILED jobs are not billed
        return Failed(job, error or "FAILED", submission.request_id)

    # -- v1: one billed call -----------------------------------------------------

    async def _run_sync(self, job: Job) -> JobEnd:
        ctx = self._ctx
        started = anyio.current_time()
        sent = await billed_send(
            ctx, "sync", job, lambda: ctx.backend.run_sync(job.model, job.request)
        )
        if isinstance(sent, Failed):
            return sent
        answer = sent.value
        result = Result(
            state="COMPLETED",
            media=answer.media,
            metrics=answer.metrics,
            seed=answer.seed,
            dropped=answer.dropped,
            missing=answer.missing,
        )
        latency = anyio.current_time() - started
        ctx.polls.observe_sync(latency)
        return await self._save(job, result, answer.request_id, ctx.wall(), latency)

    # -- both: download and save -------------------------------------------------

    async def _save(
        self,
        job: Job,
        result: Result,
        request_id: str | None,
        submitted_wall: float | None,
        latency: float | None,
    ) -> JobEnd:
        ctx = self._ctx
        # The answer's own cost, believed or not by the price book (None: it
        # stated none we can believe, so the reservation counts as spent).
        charge = ctx.prices.charged(job, result.metrics.cost, ZERO)
        reported = charge.amount if charge.reported else None
        if charge.surprise is not None:
            ctx.emit("price", job, charge.surprise)
        if not result.media:
            await ctx.guard.mark_ambiguous(job.key)
            return Failed(job, "the result has no image", request_id, paid=True, charged=reported)
        if result.incomplete:
            # Paid for (the charge stands), but not what was asked: not completed.
            await ctx.guard.settle(job.key, reported)
            return Failed(
                job,
                f"the result has {len(result.media)} of {job.request.n} image(s)",
                request_id,
                paid=True,
                charged=reported,
            )
        images: list[SavedImage] = []
        for index, media in enumerate(result.media):
            try:
                images.append(await self._download(job, index, media))
            except DownloadError as err:
                # Paid for: the charge stands.
                await ctx.guard.settle(job.key, reported)
                if not err.retryable or request_id is None or job.endpoint != "v2":
                    # The same bytes again would fail again (wrong format or
                    # size, too large, refused address): final.
                    return Failed(
                        job, f"image {index}: {err}", request_id, paid=True, charged=reported
                    )
                # Broken in transit past the retries: the server keeps the
                # result for an hour, so the job stays submitted in the
                # ledger and the next run fetches it again instead of paying
                # for it once more.
                return Left(
                    job,
                    f"image {index}: {err}; it stays submitted: run again within the hour "
                    "to download it",
                )
        charged = await ctx.guard.settle(job.key, reported)
        completion = Completion(
            request_id=request_id,
            submitted_wall=submitted_wall,
            completed_wall=ctx.wall(),
            wall_s=latency,
            metrics=result.metrics,
            estimate=ctx.guard.estimate(job),
            charged=charged,
            seed=result.seed,
            reported=reported,
        )
        return Completed(job, tuple(images), completion)

    async def _download(self, job: Job, index: int, media: Media) -> SavedImage:
        ctx = self._ctx

        async def fetch_and_save() -> SavedImage:
            data = await ctx.backend.download(media, max_bytes=ctx.config.max_download_bytes)
            return await self._sink.save_image(job, index, data)

        return await call(ctx, "download", job, fetch_and_save, priority=PRIORITY_RESULT)
