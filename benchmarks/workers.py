"""Local worker processes of one shared run: for tests and `make bench`.

`start_workers` launches N `runner run --coordinator ... --json` processes
(each with its own output folder) and follows their event lines in reader
threads, so a caller can wait for an event (say, a worker's second submit)
without polling, kill one worker, and collect every exit code.
`bench_workers` runs the `make bench` scenario: 1, 2, 4 workers on one API
key against a loopback emulator that limits that key, and measures what
more workers do to the makespan and the server's windows.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Event = dict[str, Any]


class Worker:
    """One `runner run` process and what it printed (JSON events on stdout)."""

    def __init__(
        self,
        index: int,
        out: Path,
        process: subprocess.Popen[str],
        changed: threading.Condition | None = None,
    ) -> None:
        self.index = index
        self.out = out
        self.process = process
        self.events: list[Event] = []
        self.stderr = ""
        self._lines: list[str] = []
        # Shared by the workers of one start_workers, so `wait_any` wakes on any line.
        self._changed = changed or threading.Condition()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self._lines.append(line)
                # A line of text among the events (a notice) is kept in `stdout` only.
                with contextlib.suppress(json.JSONDecodeError):
                    self.events.append(json.loads(line))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()

    @property
    def stdout(self) -> str:
        """Everything printed on stdout so far."""
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, seen: Callable[[list[Event]], bool], timeout: float) -> bool:
        """Block until `seen(events)` holds (woken by each new line); False on timeout or exit."""
        return wait_any([self], seen, timeout) is self

    @property
    def ended(self) -> bool:
        """The process exited and everything it printed was read."""
        return self.process.poll() is not None and not self._readers[0].is_alive()

    def kill(self) -> None:
        """SIGKILL: the worker dies at once, holding its leases."""
        self.process.send_signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        """Wait for the exit; its code (negative: killed by that signal)."""
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code


def wait_any(
    workers: Sequence[Worker], seen: Callable[[list[Event]], bool], timeout: float
) -> Worker | None:
    """The first of `workers` whose events satisfy `seen`, waiting for new lines; None if none.

    Gives up at `timeout` seconds or once every worker has ended. The
    workers must share one condition (as those of `start_workers` do).
    """
    if not workers:
        return None
    changed = workers[0]._changed
    deadline = time.monotonic() + timeout
    with changed:
        while True:
            for worker in workers:
                if seen(worker.events):
                    return worker
            left = deadline - time.monotonic()
            if left <= 0 or all(w.ended for w in workers):
                return None
            # Bounded, so an exit with no last line is noticed too.
            changed.wait(min(left, 1.0))


def worker_command(
    manifest: Path,
    *,
    coordinator: str,
    out: Path,
    base_url: str | None = None,
    time_scale: float | None = None,
    run_id: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of one worker (`python -m runner run ... --json`)."""
    command = [sys.executable, "-m", "runner", "run", str(manifest), "--json"]
    command += ["--coordinator", coordinator, "--out", str(out)]
    if base_url is not None:
        command += ["--backend", "segmind", "--base-url", base_url]
    if time_scale is not None:
        command += ["--time-scale", repr(time_scale)]
    if run_id is not None:
        command += ["--run-id", run_id]
    return [*command, *extra]


@contextlib.contextmanager
def start_workers(
    manifest: Path,
    count: int,
    *,
    coordinator: str,
    out_root: Path,
    base_url: str | None = None,
    time_scale: float | None = None,
    run_id: str | None = None,
    env: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
) -> Iterator[list[Worker]]:
    """`count` workers of one run (outputs out_root/w0, w1, ...); killed if still alive after."""
    environ = dict(os.environ if env is None else env)
    environ.setdefault("SEGMIND_API_KEY", "sk-local-workers")
    workers: list[Worker] = []
    changed = threading.Condition()
    try:
        for index in range(count):
            out = out_root / f"w{index}"
            command = worker_command(
                manifest,
                coordinator=coordinator,
                out=out,
                base_url=base_url,
                time_scale=time_scale,
                run_id=run_id,
                extra=extra,
            )
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=environ,
            )
            workers.append(Worker(index, out, process, changed))
        yield workers
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.kill()
            worker.process.wait()


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """One bench scenario: `workers` processes on one key. Times in seconds.

    `makespan_s` is the first API call to the last image download, as the
    emulator saw them (`wall_s` adds the processes' start and exit);
    `rate_bound_s` is the earliest the last submit can go out at R per
    window ((ceil(jobs / R) - 1) windows); `submit_span_s` is the first to
    the last submit; `max_in_window` the most submits the emulator saw in
    any window (at most R when the limit held); `rate_limited` its 429 answers.
    """

    workers: int
    jobs: int
    rpm: int
    window_s: float
    makespan_s: float
    wall_s: float
    submit_span_s: float
    rate_bound_s: float
    max_in_window: int
    rate_limited: int
    completed: int
    exit_codes: tuple[int, ...]


def bench_workers(
    workdir: Path,
    counts: Sequence[int] = (1, 2, 4),
    *,
    jobs: int = 20,
    rpm: int = 10,
    time_scale: float = 0.05,
    timeout: float = 300.0,
) -> list[ScenarioResult]:
    """Run `jobs` jobs with each number of workers in `counts` on one key; one result each.

    Each scenario has a fresh emulator (limit `rpm` per scaled minute,
    sliding window, enough server workers that the rate is the only bound)
    and its own run id on one loopback redis-server. Needs redis-server.
    """
    from benchmarks.local_redis import local_redis
    from runner.emulator import EmulatorConfig, serve_in_thread

    window = 60.0 * time_scale
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = workdir / "bench.yaml"
    things = ", ".join(f"thing{i}" for i in range(jobs))
    manifest.write_text(
        "name: bench-workers\n"
        'defaults: {resolution: 1k, aspect_ratio: "1:1", output_format: jpeg}\n'
        f'prompts: [{{id: p, prompt: "a picture of {{thing}}", vars: {{thing: [{things}]}}}}]\n'
        f"budget: {{requests_per_minute: {rpm}}}\n",
        encoding="utf-8",
    )
    results: list[ScenarioResult] = []
    # Fresh folders and run ids: a folder that holds results would be skipped, not run.
    stamp = f"{os.getpid()}-{time.time_ns()}"
    with local_redis(workdir) as redis:
        for count in counts:
            config = EmulatorConfig(
                time_scale=time_scale,
                rpm=rpm,
                limiter="sliding",
                workers=64,
                unlimited_credits=True,
            )
            with serve_in_thread(config) as served:
                started = time.monotonic()
                with start_workers(
                    manifest,
                    count,
                    coordinator=redis.url,
                    out_root=workdir / f"bench-{stamp}-{count}",
                    base_url=served.base_url,
                    time_scale=time_scale,
                    run_id=f"bench-{stamp}-{count}",
                ) as workers:
                    codes = tuple(worker.wait(timeout) for worker in workers)
                wall = time.monotonic() - started
                emulator = served.emulator
                calls = emulator.calls()
                submits = sorted(c.time for c in emulator.calls("submit") if c.status == 200)
                media = [c.time for c in calls if c.kind == "media"]
                makespan = max(media) - min(c.time for c in calls) if media else 0.0
                results.append(
                    ScenarioResult(
                        workers=count,
                        jobs=jobs,
                        rpm=rpm,
                        window_s=window,
                        makespan_s=makespan,
                        wall_s=wall,
                        submit_span_s=submits[-1] - submits[0] if submits else 0.0,
                        rate_bound_s=(math.ceil(jobs / rpm) - 1) * window,
                        max_in_window=emulator.max_in_window(window, ("submit",)),
                        rate_limited=sum(1 for c in calls if c.status == 429),
                        completed=len(emulator.accepted_submits()),
                        exit_codes=codes,
                    )
                )
    return results


def render_bench(results: Sequence[ScenarioResult]) -> str:
    """A table of `bench_workers` results."""
    lines = [
        f"{'workers':>7} {'makespan s':>10} {'wall s':>7} {'submit span s':>13} "
        f"{'rate bound s':>12} {'max/window':>10} {'429s':>5} {'jobs':>5}"
    ]
    for r in results:
        lines.append(
            f"{r.workers:>7} {r.makespan_s:>10.2f} {r.wall_s:>7.2f} {r.submit_span_s:>13.2f} "
            f"{r.rate_bound_s:>12.2f} {r.max_in_window:>7}/{r.rpm:<2} {r.rate_limited:>5} "
            f"{r.completed:>5}"
        )
    return "\n".join(lines) + "\n"
