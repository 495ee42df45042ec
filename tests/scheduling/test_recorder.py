"""The recorder's store work runs in a worker thread; ledger writes that arrive together
share one transaction, and one bad write in a group costs the others nothing.

A real ledger in a temporary folder; every check reads it back with a fresh
read-only connection (what a crash would leave).
"""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest
from whole_runs import jobs_manifest

from runner.backends.base import submission_for
from runner.jobs import Job
from runner.recorder import Recorder, RecorderConfig
from runner.scheduling.lifecycle import Submitted, Submitting
from runner.store import Ledger
from runner.sweep import expand

pytestmark = pytest.mark.anyio

BASE = "http://emulator.local"


def jobs(tmp_path: Path, count: int) -> list[Job]:
    return list(expand(jobs_manifest(tmp_path, count, prefix="t")))


def states(tmp_path: Path) -> dict[str, str]:
    with Ledger.open_readonly(tmp_path / "out") as ledger:
        return {row.key: row.state for row in ledger.rows()}


def recorder_of(ledger: Ledger, tmp_path: Path) -> Recorder:
    return Recorder(ledger, RecorderConfig(out=tmp_path / "out", backend="local", base_url=BASE))


async def submitting_together(tmp_path: Path, count: int) -> tuple[list[Job], int]:
    """`count` jobs marked `submitting` at once by one recorder; the jobs and how many
    group commits the recorder's thread made of them."""
    batch = jobs(tmp_path, count)
    with Ledger.open(tmp_path / "out", backend="local", base_url=BASE) as ledger:
        recorder = recorder_of(ledger, tmp_path)
        async with anyio.create_task_group() as tg:
            for job in batch:
                tg.start_soon(recorder.record, Submitting(job, 0.02))
        groups = recorder.thread.groups
        recorder.close()
    return batch, groups


async def test_writes_arriving_together_are_one_transaction(tmp_path: Path) -> None:
    _, groups = await submitting_together(tmp_path, 40)
    assert set(states(tmp_path).values()) == {"submitting"}
    assert len(states(tmp_path)) == 40
    # The first write goes alone; the 39 queued behind it share the next commit.
    assert groups <= 2


async def test_one_refused_write_in_a_group_leaves_the_others_committed(
    tmp_path: Path,
) -> None:
    good, bad = jobs(tmp_path, 2)
    with Ledger.open(tmp_path / "out", backend="local", base_url=BASE) as ledger:
        recorder = recorder_of(ledger, tmp_path)
        await recorder.record(Submitting(good, 0.02))
        errors: list[BaseException] = []

        async def submitted(job: Job, request_id: str) -> None:
            try:
                await recorder.record(Submitted(job, submission_for(BASE, request_id), 1.0))
            except ValueError as err:
                errors.append(err)

        async with anyio.create_task_group() as tg:
            tg.start_soon(recorder.record, Submitting(jobs(tmp_path, 3)[2], 0.02))
            tg.start_soon(submitted, bad, "req-bad")  # never planned: the ledger refuses it
            tg.start_soon(submitted, good, "req-good")
    assert len(errors) == 1 and "plan it first" in str(errors[0])
    final = states(tmp_path)
    assert final[good.key] == "submitted"
    assert bad.key not in final
    assert list(final.values()).count("submitting") == 1


async def test_store_work_runs_off_the_event_loop_thread(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()
    seen: set[int] = set()
    with Ledger.open(tmp_path / "out", backend="local", base_url=BASE) as ledger:
        recorder = recorder_of(ledger, tmp_path)
        job = jobs(tmp_path, 1)[0]
        await recorder.thread.run(lambda: seen.add(threading.get_ident()))
        await recorder.record(Submitting(job, 0.02))
    assert seen and loop_thread not in seen
    assert states(tmp_path) == {job.key: "submitting"}


async def test_the_journal_records_of_a_group_share_one_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.store import journal as journal_module
    from runner.store.journal import read_journal

    syncs: list[int] = []
    real = journal_module._datasync

    def sync(fd: int) -> None:
        syncs.append(fd)
        real(fd)

    monkeypatch.setattr(journal_module, "_datasync", sync)
    batch, groups = await submitting_together(tmp_path, 40)
    # Every send journalled, durable before its caller was answered, at one
    # sync per group commit (the first write alone, the 39 behind it together).
    sent = [e.key for e in read_journal(tmp_path / "out") if e.kind == "sending"]
    assert sorted(sent) == sorted(job.key for job in batch)
    assert len(syncs) == groups <= 2
