"""Worker processes of one run, a real redis-server, one loopback emulator.

`runner run --coordinator` as users start it: 3 subprocesses against one
emulator whose rate limit counts every worker's calls (one API key). All
checks come from the emulator's log and ledger (the server's view), the
run's record in Redis, and the files: no window over the limit, spend
within the budget and equal to the server's charges, every job once, a
SIGKILLed worker's jobs finished by the others, and `runner merge` of the
workers' folders verifying clean.
"""

from __future__ import annotations

import math
import re
import shlex
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from coord_helpers import write_manifest

from benchmarks.local_redis import LocalRedis, local_redis, redis_server_path
from benchmarks.workers import Event, start_workers, wait_any
from runner.cli import main
from runner.coordination.status import coordinator_status
from runner.emulator import EmulatorConfig, Latency, Served, serve_in_thread
from runner.merge import merge
from runner.money import to_usd
from runner.store import Ledger, verify

SCALE = 0.05  # a 60 s window lasts 3 s; a 10 s job 0.5 s
WINDOW = 60.0 * SCALE
RPM = 4
JOBS = 10
TIMEOUT = 120.0


@pytest.fixture
def emulator() -> Iterator[Served]:
    config = EmulatorConfig(
        time_scale=SCALE, rpm=RPM, limiter="sliding", latency=Latency("fixed", 10.0), workers=16
    )
    with serve_in_thread(config) as served:
        yield served


def submits_per_job(served: Served) -> Counter[str]:
    return Counter(view.params.prompt for view in served.emulator.accepted_submits())


def assert_rate_held(served: Served) -> None:
    emulator = served.emulator
    assert emulator.max_in_window(WINDOW, ("submit",)) <= RPM
    assert not [c for c in emulator.calls() if c.status == 429]


def submitted(count: int) -> Callable[[list[Event]], bool]:
    def seen(events: list[Event]) -> bool:
        return sum(e.get("event") == "submitted" for e in events) >= count

    return seen


def test_three_workers_share_the_rate_and_the_budget_and_run_each_job_once(
    tmp_path: Path, redis_url: str, emulator: Served
) -> None:
    manifest = write_manifest(tmp_path, JOBS, rpm=RPM, max_credits=1.0)
    with start_workers(
        manifest,
        3,
        coordinator=redis_url,
        out_root=tmp_path,
        base_url=emulator.base_url,
        time_scale=SCALE,
    ) as workers:
        codes = [w.wait(TIMEOUT) for w in workers]
    assert codes == [0, 0, 0], [w.stderr[-2000:] for w in workers]
    assert_rate_held(emulator)
    per_job = submits_per_job(emulator)
    assert len(per_job) == JOBS and set(per_job.values()) == {1}
    # Each job landed in exactly one worker's folder.
    completed: Counter[str] = Counter()
    for w in workers:
        with Ledger.open_readonly(w.out) as ledger:
            completed.update(r.key for r in ledger.rows("completed"))
    assert len(completed) == JOBS and set(completed.values()) == {1}
    (run,) = coordinator_status(redis_url)
    assert (run.completed, run.failed, run.total) == (JOBS, 0, JOBS)
    charged = emulator.emulator.charged_total()
    assert to_usd(run.spent) == pytest.approx(charged)
    assert charged <= 1.0
    report = merge([w.out for w in workers], tmp_path / "merged")
    assert report.verify.clean
    assert (report.completed, report.verify.checked) == (JOBS, JOBS)


def test_three_workers_learn_a_quota_they_are_not_told_with_few_429s(
    tmp_path: Path, redis_url: str, emulator: Served
) -> None:
    # requests_per_minute: auto; the server allows RPM per window. The group
    # starts from one call and doubles per round trip: one overshoot, then
    # the learned quota holds for every worker (one learner, replayed).
    manifest = write_manifest(tmp_path, JOBS, rpm="auto", max_credits=1.0)
    with start_workers(
        manifest,
        3,
        coordinator=redis_url,
        out_root=tmp_path,
        base_url=emulator.base_url,
        time_scale=SCALE,
    ) as workers:
        codes = [w.wait(TIMEOUT) for w in workers]
    assert codes == [0, 0, 0], [w.stderr[-2000:] for w in workers]
    refused = [c for c in emulator.emulator.calls() if c.status == 429]
    assert len(refused) <= 3  # issue #12's target, across the whole group
    per_job = submits_per_job(emulator)
    assert len(per_job) == JOBS and set(per_job.values()) == {1}
    (run,) = coordinator_status(redis_url)
    assert (run.completed, run.failed, run.total) == (JOBS, 0, JOBS)


def test_the_budget_is_one_budget_across_workers(
    tmp_path: Path, redis_url: str, emulator: Served
) -> None:
    budget = 0.15  # room for 7 jobs of $0.02
    manifest = write_manifest(tmp_path, JOBS, rpm=RPM, max_credits=budget)
    with start_workers(
        manifest,
        3,
        coordinator=redis_url,
        out_root=tmp_path,
        base_url=emulator.base_url,
        time_scale=SCALE,
    ) as workers:
        codes = [w.wait(TIMEOUT) for w in workers]
    assert codes == [3, 3, 3], [w.stderr[-2000:] for w in workers]
    charged = emulator.emulator.charged_total()
    (run,) = coordinator_status(redis_url)
    assert to_usd(run.spent) == pytest.approx(charged)
    assert charged <= budget
    # Each worker reserves its first job at 2x the table until it has seen a
    # charge (runner.scheduling.prices): the first reservation that does not fit
    # stops the run, so up to one job per worker ($0.02 each) may stay unused.
    assert math.floor(budget / 0.02) - len(workers) <= len(emulator.emulator.accepted_submits())
    assert len(emulator.emulator.accepted_submits()) <= math.floor(budget / 0.02)
    assert run.stopped is not None and "budget" in run.stopped


def test_a_killed_workers_jobs_are_finished_by_the_others(
    tmp_path: Path, redis_url: str, emulator: Served
) -> None:
    manifest = write_manifest(tmp_path, JOBS, rpm=RPM, max_credits=1.0, lease=2)
    with start_workers(
        manifest,
        3,
        coordinator=redis_url,
        out_root=tmp_path,
        base_url=emulator.base_url,
        time_scale=SCALE,
    ) as workers:
        # Whichever worker has a job in flight first (they start in any order).
        victim = wait_any(workers, submitted(1), TIMEOUT)
        assert victim is not None, [w.stderr[-2000:] for w in workers]
        victim.kill()
        codes = {w.index: w.wait(TIMEOUT) for w in workers}
    survivors = [w for w in workers if w is not victim]
    assert codes.pop(victim.index) < 0  # killed
    assert list(codes.values()) == [0, 0], [w.stderr[-2000:] for w in survivors]
    assert_rate_held(emulator)
    (run,) = coordinator_status(redis_url)
    assert (run.completed, run.failed, run.total) == (JOBS, 0, JOBS)
    assert run.takeovers >= 1
    with Ledger.open_readonly(victim.out) as ledger:
        orphaned = {r.key: r.request_id for r in ledger.rows("submitted")}
        doubtful = {r.key for r in ledger.rows("submitting")}
    assert orphaned, "the victim died with no job in flight: nothing was taken over"
    report = merge([w.out for w in workers], tmp_path / "merged")
    assert report.verify.clean
    assert report.completed == JOBS
    with Ledger.open_readonly(tmp_path / "merged") as merged:
        rows = {r.key: r for r in merged.rows()}
    # The takers re-attached to the dead worker's requests: nothing paid twice.
    for key, request_id in orphaned.items():
        assert rows[key].state == "completed"
        assert rows[key].request_id == request_id
    per_job = submits_per_job(emulator)
    assert len(per_job) == JOBS
    twice = [prompt for prompt, n in per_job.items() if n > 1]
    # Only a submit on the wire at the moment of the kill can be paid twice.
    assert len(twice) <= len(doubtful)
    charged = emulator.emulator.charged_total()
    assert to_usd(run.spent) <= charged + 1e-9
    assert charged <= to_usd(run.spent + run.ambiguous) + 1e-9


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_coordinator_at_start_is_a_clear_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path, 2)
    url = f"redis://:hunter2-secret@127.0.0.1:{_free_port()}/0"
    code = main(["run", str(manifest), "--backend", "local", "--coordinator", url, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot reach the coordinator at redis://:***@127.0.0.1:" in err
    assert "start Redis there" in err
    assert "hunter2" not in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing was started


def test_losing_redis_mid_run_loses_nothing_and_the_resume_finishes(
    tmp_path: Path,
    redis_url: str,
    redis_server: LocalRedis,
    emulator: Served,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobs = 6
    manifest = write_manifest(tmp_path, jobs, rpm=RPM, max_credits=1.0)
    with start_workers(
        manifest,
        1,
        coordinator=redis_url,
        out_root=tmp_path,
        base_url=emulator.base_url,
        time_scale=SCALE,
    ) as (worker,):
        assert worker.wait_for(submitted(1), TIMEOUT), worker.stderr[-2000:]
        redis_server.kill()
        code = worker.wait(TIMEOUT)
    printed = worker.stderr + worker.stdout
    assert code == 1, printed[-2000:]
    assert "lost the coordinator" in printed
    match = re.search(r"resume with: (.+)", printed)
    assert match is not None
    command = shlex.split(match.group(1))
    assert "--coordinator" in command and redis_url in command
    # Nothing paid for is lost: every request the server accepted is in the ledger.
    accepted = {view.request_id for view in emulator.emulator.accepted_submits()}
    with Ledger.open_readonly(worker.out) as ledger:
        recorded = {r.request_id for r in ledger.rows() if r.request_id}
        assert ledger.counts()["submitting"] == 0
    assert accepted <= recorded
    assert verify(worker.out).clean

    redis_server.start()  # empty: the run's record is gone with the old server
    monkeypatch.setenv("SEGMIND_API_KEY", "sk-local-workers")
    args = command[command.index("run") :]
    resumed = main([*args, "--time-scale", str(SCALE), "--no-progress"])
    assert resumed == 0
    per_job = submits_per_job(emulator)
    assert len(per_job) == jobs and set(per_job.values()) == {1}  # none paid twice
    with Ledger.open_readonly(worker.out) as ledger:
        assert ledger.counts()["completed"] == jobs
    assert verify(worker.out).clean


def test_status_shows_the_run_across_workers(
    tmp_path: Path, redis_url: str, emulator: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path, 3, rpm=50)
    with start_workers(
        manifest,
        2,
        coordinator=redis_url,
        out_root=tmp_path,
        base_url=emulator.base_url,
        time_scale=SCALE,
        run_id="ci-7",
    ) as workers:
        assert [w.wait(TIMEOUT) for w in workers] == [0, 0]
    assert main(["status", "--coordinator", redis_url, "--run-id", "ci-7"]) == 0
    out = capsys.readouterr().out
    assert "(--run-id ci-7)" in out
    assert "jobs: 3 of 3 done (finished): 3 completed" in out
    assert out.count("(ended,") == 2
    assert main(["status", "--coordinator", redis_url, "--manifest", str(manifest)]) == 2


def test_a_persistent_redis_restarted_mid_run_loses_nothing_and_pays_nothing_twice(
    tmp_path: Path, emulator: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    if redis_server_path() is None:
        pytest.skip("redis-server is not installed")
    manifest = write_manifest(tmp_path, JOBS, rpm=RPM, max_credits=1.0, lease=2)
    (tmp_path / "aof").mkdir()
    with local_redis(tmp_path / "aof", appendonly=True) as server:
        with start_workers(
            manifest,
            2,
            coordinator=server.url,
            out_root=tmp_path,
            base_url=emulator.base_url,
            time_scale=SCALE,
        ) as workers:
            busy = wait_any(workers, submitted(2), TIMEOUT)
            assert busy is not None, [w.stderr[-2000:] for w in workers]
            server.kill()
            server.start()  # the same files: the append-only file is replayed
            codes = [w.wait(TIMEOUT) for w in workers]
        # A worker that lost Redis exits 1 with its resume command; each is resumed.
        monkeypatch.setenv("SEGMIND_API_KEY", "sk-local-workers")
        for worker, code in zip(workers, codes, strict=True):
            printed = worker.stderr + worker.stdout
            assert code in (0, 1), printed[-2000:]
            if code == 1:
                match = re.search(r"resume with: (.+)", printed)
                assert match is not None, printed[-2000:]
                command = shlex.split(match.group(1))
                args = command[command.index("run") :]
                assert main([*args, "--time-scale", str(SCALE), "--no-progress"]) == 0
        (run,) = coordinator_status(server.url)
    assert (run.completed, run.failed, run.total) == (JOBS, 0, JOBS)
    per_job = submits_per_job(emulator)
    assert len(per_job) == JOBS and set(per_job.values()) == {1}  # 0 extra paid submits
    report = merge([w.out for w in workers], tmp_path / "merged")
    assert report.verify.clean and report.completed == JOBS


def test_a_kill_inside_a_burst_pays_at_most_one_submit_again(
    tmp_path: Path, redis_url: str, emulator: Served
) -> None:
    manifest = write_manifest(tmp_path, JOBS, rpm=RPM, max_credits=1.0, lease=2)
    with start_workers(
        manifest,
        2,
        coordinator=redis_url,
        out_root=tmp_path,
        base_url=emulator.base_url,
        time_scale=SCALE,
    ) as workers:
        # The second submit of a worker: its burst (RPM at once) is on the wire.
        victim = wait_any(workers, submitted(2), TIMEOUT)
        assert victim is not None, [w.stderr[-2000:] for w in workers]
        victim.kill()
        codes = [w.wait(TIMEOUT) for w in workers if w is not victim]
    assert codes == [0], [w.stderr[-2000:] for w in workers]
    (run,) = coordinator_status(redis_url)
    assert (run.completed, run.total) == (JOBS, JOBS)
    per_job = submits_per_job(emulator)
    assert len(per_job) == JOBS
    extra = sum(n - 1 for n in per_job.values())
    assert extra <= 1  # one kill: at most the submit it cut off mid-answer
    assert_rate_held(emulator)


def test_a_stalled_worker_resumed_after_its_lease_settles_nothing_twice(
    tmp_path: Path, redis_url: str, emulator: Served
) -> None:
    lease = 3.0
    manifest = write_manifest(tmp_path, JOBS, rpm=RPM, max_credits=1.0, lease=lease)
    with start_workers(
        manifest,
        2,
        coordinator=redis_url,
        out_root=tmp_path,
        base_url=emulator.base_url,
        time_scale=SCALE,
    ) as workers:
        stalled = wait_any(workers, submitted(1), TIMEOUT)
        assert stalled is not None, [w.stderr[-2000:] for w in workers]
        (taker,) = [w for w in workers if w is not stalled]
        stalled.process.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            # The other worker takes the stalled one's jobs over once its lease
            # lapses, and ends when every job is done: the stall lasts that long.
            taker_code = taker.wait(TIMEOUT)
        finally:
            stalled_for = time.monotonic() - stopped
            stalled.process.send_signal(signal.SIGCONT)
        stalled_code = stalled.wait(TIMEOUT)
    printed = stalled.stderr + stalled.stdout
    assert stalled_for > lease  # nothing could be taken over before the lease lapsed
    assert taker_code == 0, taker.stderr[-2000:]
    # Its late finish and settle are refused: no error, no lost coordinator. A
    # job it claimed and had not sent yet was taken over meanwhile: it goes
    # back to planned in its folder rather than being paid again, and since
    # its taker's end is in the run's record, it counts as done: exit 0.
    assert stalled_code == 0, printed[-2000:]
    assert "lost the coordinator" not in printed and "Traceback" not in printed
    assert "unfinished" not in printed
    with Ledger.open_readonly(stalled.out) as ledger:
        left = sum(n for state, n in ledger.counts().items() if state != "completed")
    if left:  # the stall caught a job it had not sent: the summary names the taker's part
        assert "finished by another worker" in printed
    (run,) = coordinator_status(redis_url)
    assert (run.completed, run.failed, run.total) == (JOBS, 0, JOBS)
    assert run.takeovers >= 1
    assert run.reserved == 0  # nothing reserved at the end
    per_job = submits_per_job(emulator)
    assert len(per_job) == JOBS and set(per_job.values()) == {1}  # each job once
    charged = emulator.emulator.charged_total()
    assert to_usd(run.spent) == pytest.approx(charged)  # each charge settled once
    assert_rate_held(emulator)
    report = merge([w.out for w in workers], tmp_path / "merged")
    assert report.verify.clean and report.completed == JOBS


def test_a_budget_stop_with_a_kill_finishes_every_paid_job_and_reserves_nothing(
    tmp_path: Path, redis_url: str, emulator: Served
) -> None:
    budget = JOBS / 2 * 0.02  # half the jobs
    manifest = write_manifest(tmp_path, JOBS, rpm=RPM, max_credits=budget, lease=2)
    with start_workers(
        manifest,
        3,
        coordinator=redis_url,
        out_root=tmp_path,
        base_url=emulator.base_url,
        time_scale=SCALE,
    ) as workers:
        victim = wait_any(workers, submitted(1), TIMEOUT)
        assert victim is not None, [w.stderr[-2000:] for w in workers]
        victim.kill()
        codes = [w.wait(TIMEOUT) for w in workers if w is not victim]
    assert codes == [3, 3], [w.stderr[-2000:] for w in workers]
    (run,) = coordinator_status(redis_url)
    assert run.stopped is not None and "budget" in run.stopped
    assert run.reserved == 0  # the dead worker's holds released, the paid ones settled
    # Every submit the server accepted (the victim's included) was downloaded.
    paid = {view.request_id for view in emulator.emulator.accepted_submits()}
    completed: set[str] = set()
    for w in workers:
        with Ledger.open_readonly(w.out) as ledger:
            completed.update(r.request_id for r in ledger.rows("completed") if r.request_id)
    assert paid and paid <= completed
    assert to_usd(run.spent) == pytest.approx(emulator.emulator.charged_total())
    assert emulator.emulator.charged_total() <= budget + 1e-9
