"""The scheduler's JobSink over the store: files, sidecars and ledger rows.

It consumes the records of a job's life (runner.scheduling.lifecycle), in
the order docs/store.md requires: the ledger's `submitting` before the
billed call, `submitted` (fsynced) before the first poll, each image written
atomically, then its sidecar (the "done" marker), then the ledger's
`completed`. Each call returns when what it records is on disk.

The blocking work (SQLite commits with synchronous=FULL, fsynced image and
sidecar writes) runs in a worker thread, never on the event loop, one piece
at a time in the order the calls came (a FIFO lock), so the ledger's
connection is used by one thread at a time. Ledger writes that arrive while
another piece runs are grouped into one transaction (one fsync: a group
commit); if any write of a group fails, the group is rolled back and each
write is done alone, so each caller gets its own answer. The journal records
a group writes (a send, an accepted request id) are synced together too, once,
right before the group's commit (`Journal.grouped`): four submits on the wire
at once pay one journal sync between them, not four in a row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio

from runner.backends.base import DeliveredMetrics
from runner.clock import wall_time
from runner.jobs import Job
from runner.money import ZERO, Micros
from runner.scheduling.lifecycle import (
    Ambiguous,
    Completed,
    Expired,
    Failed,
    JobEvent,
    Refused,
    SavedImage,
    Submitted,
    Submitting,
    Unsent,
)
from runner.store import (
    Ledger,
    SavedFile,
    build_sidecar,
    expected_pixels,
    save_image,
    sidecar_path,
    write_sidecar,
)
from runner.store.journal import Journal

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    """What every sidecar of a run shares. `secrets` are refused in any written text."""

    out: Path
    backend: str
    base_url: str
    name_pattern: str | None = None
    manifest_path: str | None = None
    manifest_sha256: str | None = None
    # The 2k sizes of the pixel table are a guess: against the real API a
    # different size must not throw away a paid image, so only the format
    # and the image's integrity are checked there.
    strict_sizes: bool = True
    secrets: tuple[str, ...] = ()


class _Write:
    """A ledger write waiting for its group's commit."""

    __slots__ = ("done", "error", "fn")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.done = False
        self.error: BaseException | None = None


class StoreThread:
    """Runs blocking store work in a worker thread, one piece at a time, in order.

    `run` is any piece (an image, sidecars); `write` a ledger write, grouped
    with the others waiting into one transaction of `ledger`. Both are
    shielded from cancellation: once asked for, a write is finished, as a
    synchronous one would have been.
    """

    def __init__(
        self,
        ledger: Ledger,
        grouped: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        """`grouped`: a context each group's writes run in, left before its commit."""
        self._ledger = ledger
        self._grouped = grouped
        self._lock = anyio.Lock()  # FIFO: pieces run in the order they came
        self._queue: list[_Write] = []
        self.groups = 0  # transactions committed for grouped writes (for tests, benchmarks)

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()` in the worker thread, after every piece asked for before it."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                result = await anyio.to_thread.run_sync(fn)
        return result

    async def write(self, fn: Callable[[], None]) -> None:
        """Run ledger write `fn` and commit it, with the writes waiting alongside."""
        entry = _Write(fn)
        self._queue.append(entry)
        with anyio.CancelScope(shield=True):
            async with self._lock:
                if not entry.done:  # else an earlier group took it
                    group, self._queue = self._queue, []
                    await anyio.to_thread.run_sync(self._commit, group)
        if entry.error is not None:
            raise entry.error

    def _commit(self, group: list[_Write]) -> None:
        """In the worker thread: the group in one transaction, or each alone if one fails."""
        try:
            # Left before the transaction commits: the journal's one sync
            # for the group comes before the ledger's (see the docstring).
            with self._ledger.transaction(), self._grouped():
                for entry in group:
                    entry.fn()
            self.groups += 1
        except Exception:  # each write again, alone, gets its own error
            for entry in group:
                try:
                    entry.fn()
                except Exception as err:  # handed to its caller
                    entry.error = err
        for entry in group:
            entry.done = True


class Recorder:
    """Implements runner.scheduling.sink.JobSink with the store's parts."""

    def __init__(self, ledger: Ledger, config: RecorderConfig) -> None:
        self._ledger = ledger
        self._config = config
        # The durable first copy of each send and request id (space reserved now).
        self._journal = Journal.open(config.out)
        self._thread = StoreThread(ledger, self._journal.grouped)
        # Images written and waiting for their sidecars, by (job key, index);
        # touched only in the worker thread.
        self._pending: dict[tuple[str, int], SavedFile] = {}

    def close(self) -> None:
        """Close the journal (its reserved space stays for the next run)."""
        self._journal.close()

    @property
    def thread(self) -> StoreThread:
        """Where this recorder's blocking work runs."""
        return self._thread

    async def record(self, event: JobEvent) -> None:
        """Record one transition of a job; on disk when it returns."""
        ledger = self._ledger
        write = self._thread.write
        match event:
            case Submitting(job=job, estimate=estimate):
                await write(lambda: self._submitting(job, estimate))
            case Submitted(job=job, submission=submission, wall=wall):
                await write(lambda: self._submitted(job, submission.request_id, wall))
            case Refused(job=job) | Unsent(job=job):
                await write(lambda: self._unsent(job))
            case Ambiguous(job=job):
                await write(lambda: ledger.ambiguous(job.key))
            case Completed(job=job, images=images, completion=completion):
                await self._thread.run(lambda: self._write_sidecars(event))
                files = [image.path for image in images]
                await write(
                    lambda: ledger.completed(
                        job.key, completion.charged, files, completion.completed_wall
                    )
                )
            case Failed(job=job, reason=reason, paid=paid):
                await write(lambda: self._failed(job, reason, paid=paid))
            case Expired(job=job):
                await write(lambda: self._expired(job))
            case _:
                return  # Reattached, Left: the ledger keeps what it has

    async def save_image(self, job: Job, index: int, data: bytes) -> SavedImage:
        """Check (raises DownloadError) and atomically write one image, off the loop."""
        return await self._thread.run(lambda: self._save_image(job, index, data))

    # -- in the worker thread ------------------------------------------------------

    def _submitting(self, job: Job, estimate: Micros) -> None:
        row = self._ledger.get(job.key)
        if row is None:
            self._ledger.plan(job.key, job.index, job.prompt_id, estimate)
        elif row.state in ("failed", "expired", "completed"):
            self._ledger.reset(job.key)
        # A row left `submitting` by an earlier run is counted ambiguous by
        # the resume decision (runner/resume.py), once, before it gets here.
        # Journalled first: a send the ledger cannot mark is not made.
        self._journal.sending(job.key, wall_time())
        self._ledger.submitting(job.key)

    def _submitted(self, job: Job, request_id: str, wall: float) -> None:
        # The journal first: its space is reserved, so a full disk that fails
        # the ledger's commit cannot lose the id (Ledger.replay_journal).
        self._journal.accepted(job.key, request_id, wall)
        self._ledger.submitted(job.key, request_id, wall)

    def _save_image(self, job: Job, index: int, data: bytes) -> SavedImage:
        cfg = self._config
        expected = (
            expected_pixels(job) if cfg.strict_sizes or job.request.resolution == "1k" else None
        )
        saved = save_image(
            cfg.out, job, index, data, expected_size=expected, pattern=cfg.name_pattern
        )
        self._pending[(job.key, index)] = saved
        return SavedImage(path=saved.name, bytes=saved.info.bytes)

    def _write_sidecars(self, event: Completed) -> None:
        cfg = self._config
        job, completion = event.job, event.completion
        metrics = completion.metrics
        for index in range(len(event.images)):
            saved = self._pending.pop((job.key, index))
            sidecar = build_sidecar(
                job=job,
                index=index,
                image=saved.info,
                file_name=saved.name,
                backend=cfg.backend,
                base_url=cfg.base_url,
                request_id=completion.request_id,
                estimate=completion.estimate,
                charged=completion.reported,
                submitted_at=completion.submitted_wall,
                completed_at=completion.completed_wall,
                queue_s=metrics.queue_time,
                inference_s=metrics.inference_time,
                wall_s=completion.wall_s,
                manifest_path=cfg.manifest_path,
                manifest_sha256=cfg.manifest_sha256,
                seed=completion.seed,
                delivered_type=(
                    metrics.delivered_type if isinstance(metrics, DeliveredMetrics) else None
                ),
            )
            write_sidecar(sidecar_path(saved.path), sidecar, forbid=cfg.secrets)

    def _failed(self, job: Job, reason: str, *, paid: bool = False) -> None:
        for index in range(job.request.n):
            self._pending.pop((job.key, index), None)
        if self._ledger.get(job.key) is None:
            self._ledger.plan(job.key, job.index, job.prompt_id, ZERO)
        self._ledger.failed(job.key, reason)
        if paid:
            # Billed without a result: possible spend for the folder's next runs
            # (Ledger.possible_extra_spend), which a retry would otherwise not count.
            self._ledger.ambiguous(job.key)

    def _expired(self, job: Job) -> None:
        row = self._ledger.get(job.key)
        if row is not None and row.state == "expired":
            # The resume scan found it too old while this run re-attached it:
            # both saw the same thing, once is enough.
            return
        self._ledger.expired(job.key)

    def _unsent(self, job: Job) -> None:
        row = self._ledger.get(job.key)
        if row is not None and row.state == "submitting":
            self._ledger.reset(job.key)
