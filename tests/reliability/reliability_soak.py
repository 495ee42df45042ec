"""The crash and chaos soak: `runner run` in a subprocess, SIGKILLed and resumed, against
a loopback emulator in this process, then everything counted from both sides.

One soak is a series of *segments*: a `runner run` process each. Every
segment but the last is killed with SIGKILL at a seeded moment (after the
server has accepted a drawn number of submits, then a drawn number of further
calls of any kind, so kills land in every phase: submits, polls, downloads,
writes); the next segment resumes the same folder. The last one runs to its
end, and one more run checks that a finished folder costs nothing.

What is counted, and from where:

- the server's side: every call (`Emulator.calls`) and every accepted job
  (`Emulator.accepted_submits`), with the request ids whose answer the
  emulator dropped after accepting them (fault ``drop_after``);
- the runner's side: its ledger after every kill (read-only, once the process
  is dead) and at the end, and the files under OUT.

Every accepted submit must then be exactly one of: the request id the ledger
recorded for its job; an accepted-then-dropped answer; or a *crash-window*
submit: accepted during a segment that was killed while the job's ledger row
was still ``submitting`` (the only moment a kill can lose a request id), at
most one per job and kill. Anything else is an unexplained extra submit.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runner.emulator import (
    CallRecord,
    Emulator,
    EmulatorConfig,
    FaultRate,
    JobView,
    serve_in_thread,
)
from runner.manifest import parse_manifest
from runner.money import to_usd
from runner.store import JobRow, Ledger, ledger_path, read_sidecar, temp_files, verify
from runner.sweep import expand

RUNNER = Path(sys.executable).with_name("runner")
SOAK_KEY = "sk-soak-0123456789"
PRICE = 0.02  # standard 1k, USD per image (runner.params.DEFAULT_PRICES)
SEGMENT_TIMEOUT = 900.0  # seconds; a bound on a hung run, never reached by a healthy one
POLL_S = 0.01  # seconds between looks at the emulator's log while waiting for a kill moment


def chaos_faults() -> tuple[FaultRate, ...]:
    """Issue 8's mix: on every endpoint 20 % 5xx and 5 % 429 (each 429 starts a burst
    of 3); 2 % of submits accepted then dropped; 5 % truncated and 1 % corrupted downloads."""
    faults: list[FaultRate] = []
    for endpoint in ("submit", "status", "result", "media", "credits"):
        faults += [
            FaultRate(endpoint, "500", 0.10),
            FaultRate(endpoint, "502", 0.05),
            FaultRate(endpoint, "504", 0.05),
            FaultRate(endpoint, "429", 0.05),
        ]
    faults += [
        FaultRate("submit", "drop_after", 0.02),
        FaultRate("media", "truncate", 0.05),
        FaultRate("media", "corrupt", 0.01),
    ]
    return tuple(faults)


@dataclass(frozen=True, slots=True)
class SoakPlan:
    """One soak. `jobs` counts all jobs, `blocked` of them with a prompt the server refuses."""

    jobs: int
    blocked: int
    kills: int
    seed: int
    faults: tuple[FaultRate, ...] = ()
    rpm: int = 50
    time_scale: float = 0.05
    # Room for the jobs, the in-flight reservations (up to `rpm` jobs) and the
    # duplicates lost answers and kills may cost. A resumed run counts every
    # submit a kill caught on the wire as possibly billed (up to a window's
    # burst of `rpm` per kill), so the room grows with the kills: a tight
    # budget would stop the run (exit 3), which other tests cover.
    budget_factor: float = 2.5
    # Calls the server must see after the kill's accepted submit before the
    # kill (None: a seeded draw in 0..40); 0 kills right after an accepted
    # submit, inside the burst, where a kill costs the most (issue #13).
    kill_extra: int | None = None

    @property
    def window(self) -> float:
        """The rate window in (scaled) seconds."""
        return 60.0 * self.time_scale

    @property
    def budget(self) -> float:
        """The manifest's max_credits, USD."""
        return round(self.jobs * PRICE * self.budget_factor, 2)


@dataclass(frozen=True, slots=True)
class Segment:
    """One `runner run` process. Times are the emulator's clock seconds."""

    index: int
    started: float
    ended: float
    killed: bool
    returncode: int
    submitting: frozenset[str]  # job keys left `submitting` when it died
    recorded: frozenset[str]  # request ids in its ledger when it died
    stderr: str


@dataclass(slots=True)
class SoakRun:
    """Everything a soak observed; `account` and `figures` read it."""

    plan: SoakPlan
    out: Path
    segments: list[Segment] = field(default_factory=list)
    rows: list[JobRow] = field(default_factory=list)
    accepted: list[JobView] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    key_of_prompt: dict[str, str] = field(default_factory=dict)
    blocked_keys: frozenset[str] = frozenset()
    elapsed: float = 0.0
    rerun_returncode: int | None = None
    rerun_new_submits: int | None = None


def write_manifest(folder: Path, plan: SoakPlan) -> Path:
    """A manifest of `plan.jobs` 1k PNG jobs (PNG: every chunk has a CRC, so a corrupted
    download is always caught), `plan.blocked` of them refused by the emulator."""
    good = plan.jobs - plan.blocked
    things = ", ".join(f"t{i:05d}" for i in range(good))
    bad = ", ".join(f"b{i:05d}" for i in range(plan.blocked))
    blocked_prompt = (
        f'  - id: bad\n    prompt: "this is blocked content {{thing}}"\n'
        f"    vars: {{thing: [{bad}]}}\n"
        if plan.blocked
        else ""
    )
    text = f"""name: soak
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: png, mode: standard}}
prompts:
  - id: p
    prompt: "a picture of {{thing}}"
    vars: {{thing: [{things}]}}
{blocked_prompt}budget:
  requests_per_minute: {plan.rpm}
  max_credits: {plan.budget}
output: {{dir: out}}
"""
    path = folder / "soak.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _command(manifest: Path, out: Path, base_url: str, plan: SoakPlan, seed: int) -> list[str]:
    return [
        str(RUNNER),
        "run",
        str(manifest),
        "--backend",
        "segmind",
        "--base-url",
        base_url,
        "--time-scale",
        str(plan.time_scale),
        "--no-progress",
        "--yes",
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]


def _snapshot(out: Path) -> tuple[list[JobRow], bool]:
    """The ledger's rows (read-only, no lock), or ([], False) when there is no ledger yet."""
    if not ledger_path(out).is_file():
        return [], False
    with Ledger.open_readonly(out) as ledger:
        return list(ledger.rows()), True


def _accepted_count(calls: list[CallRecord]) -> int:
    return sum(1 for c in calls if c.kind == "submit" and c.request_id is not None)


def run_soak(tmp: Path, plan: SoakPlan) -> SoakRun:
    """Run the soak of `plan` in `tmp` and return what it observed (no assertions here)."""
    manifest_path = write_manifest(tmp, plan)
    out = tmp / "out"
    manifest = parse_manifest(
        manifest_path.read_text(encoding="utf-8"), path=str(manifest_path), base_dir=tmp
    )
    run = SoakRun(plan=plan, out=out)
    for job in expand(manifest):
        run.key_of_prompt[job.request.prompt] = job.key
    run.blocked_keys = frozenset(j.key for j in expand(manifest) if j.prompt_id == "bad")
    rng = random.Random(plan.seed)
    low, high = max(1, plan.jobs // 20), max(2, plan.jobs * 17 // 20)
    targets = sorted(rng.sample(range(low, high), plan.kills))
    extras = [rng.randint(0, 40) if plan.kill_extra is None else plan.kill_extra for _ in targets]
    env = {**os.environ, "SEGMIND_API_KEY": SOAK_KEY}
    env.pop("SEGMIND_BASE_URL", None)
    config = EmulatorConfig(
        time_scale=plan.time_scale,
        rpm=plan.rpm,
        limiter="sliding",
        workers=64,
        faults=plan.faults,
        seed=plan.seed,
        api_keys=frozenset({SOAK_KEY}),
    )
    began = time.monotonic()
    with serve_in_thread(config) as served:
        emu = served.emulator
        for index in range(plan.kills + 1):
            kill_plan = (targets[index], extras[index]) if index < plan.kills else None
            command = _command(manifest_path, out, served.base_url, plan, plan.seed * 100 + index)
            run.segments.append(
                _segment(
                    index, kill_plan=kill_plan, command=command, emu=emu, out=out, env=env, tmp=tmp
                )
            )
            if not run.segments[-1].killed:
                break
        run.elapsed = time.monotonic() - began
        before = _accepted_count(emu.calls())
        again = subprocess.run(
            _command(manifest_path, out, served.base_url, plan, plan.seed + 999),
            env=env,
            capture_output=True,
            text=True,
            timeout=SEGMENT_TIMEOUT,
            check=False,
        )
        run.rerun_returncode = again.returncode
        run.rerun_new_submits = _accepted_count(emu.calls()) - before
        run.accepted = emu.accepted_submits()
        run.calls = emu.calls()
    run.rows, _ = _snapshot(out)
    return run


def _segment(
    index: int,
    *,
    kill_plan: tuple[int, int] | None,
    command: list[str],
    emu: Emulator,
    out: Path,
    env: dict[str, str],
    tmp: Path,
) -> Segment:
    started = emu.now()
    accepted_at_start = _accepted_count(emu.calls())
    err_path = tmp / f"segment-{index}.err"
    with err_path.open("w") as err, (tmp / f"segment-{index}.out").open("w") as std:
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=std,
            stderr=err,
        )
        killed = False
        try:
            killed = _wait_for_kill_moment(proc, emu, kill_plan, accepted_at_start)
        finally:
            if proc.poll() is None and not killed:
                proc.kill()
            proc.wait(timeout=60)
    ended = emu.now()
    rows, _ = _snapshot(out)
    return Segment(
        index=index,
        started=started,
        ended=ended,
        killed=killed,
        returncode=proc.returncode,
        submitting=frozenset(r.key for r in rows if r.state == "submitting"),
        recorded=frozenset(r.request_id for r in rows if r.request_id),
        stderr=err_path.read_text(encoding="utf-8", errors="replace")[-4000:],
    )


def _wait_for_kill_moment(
    proc: subprocess.Popen[bytes],
    emu: Emulator,
    kill_plan: tuple[int, int] | None,
    accepted_at_start: int,
) -> bool:
    """Wait (bounded) until the process ends, or kill it at its moment; True if killed.

    The moment: the server has accepted `target` submits in all (and at least one
    in this segment), then received `extra` more calls of any kind.
    """
    deadline = time.monotonic() + SEGMENT_TIMEOUT
    armed_at: int | None = None
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"a soak segment ran past {SEGMENT_TIMEOUT:g} s")
        if kill_plan is not None:
            target, extra = kill_plan
            calls = emu.calls()
            if armed_at is None:
                accepted = _accepted_count(calls)
                if accepted >= target and accepted > accepted_at_start:
                    armed_at = len(calls)
            if armed_at is not None and len(calls) >= armed_at + extra:
                proc.send_signal(signal.SIGKILL)
                return True
        time.sleep(POLL_S)  # a condition wait on the server's log, not a timing assumption
    return False


# -- accounting ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accounting:
    """Every accepted submit explained, and the money on both sides (USD).

    `ledger_charged` is the runner's own account of completed jobs: the
    ledger's charge, or the sidecar's where the ledger has none.
    """

    recorded: frozenset[str]
    dropped: frozenset[str]
    crash_window: frozenset[str]
    unexplained: tuple[str, ...]
    duplicates_by_job: dict[str, int]
    server_charged: float
    ledger_charged: float
    paid_undelivered: float
    duplicates_paid: float
    mismatched_charges: tuple[str, ...]
    charges_from_sidecars: int  # completed jobs whose charge only the sidecar records
    runner_possible_duplicates: int


def _segment_of(segments: list[Segment], at: float) -> Segment | None:
    found: Segment | None = None
    for seg in segments:
        if seg.started <= at:
            found = seg
    return found


def account(run: SoakRun) -> Accounting:
    """Partition the accepted submits (see the module docstring) and compare the money."""
    recorded_final = {r.request_id for r in run.rows if r.request_id}
    recorded = set(recorded_final)
    for seg in run.segments:
        recorded |= seg.recorded
    dropped = {
        c.request_id
        for c in run.calls
        if c.kind == "submit" and c.fault == "drop_after" and c.status is None and c.request_id
    }
    used: set[tuple[int, str]] = set()
    crash: set[str] = set()
    unexplained: list[str] = []
    per_job: Counter[str] = Counter()
    for view in sorted(run.accepted, key=lambda v: v.submitted_at):
        key = run.key_of_prompt.get(view.params.prompt, "?")
        per_job[key] += 1
        rid = view.request_id
        if rid in recorded or rid in dropped:
            continue
        where = _segment_of(run.segments, view.submitted_at)
        candidates = [where] if where is not None else []
        if where is not None and where.index > 0 and view.submitted_at - where.started < 1.0:
            # A request the killed process had fully sent may be handled by the
            # server just after the next process started.
            candidates.append(run.segments[where.index - 1])
        for seg in candidates:
            if seg.killed and key in seg.submitting and (seg.index, key) not in used:
                used.add((seg.index, key))
                crash.add(rid)
                break
        else:
            unexplained.append(f"{rid} ({view.params.prompt!r}, segment {where and where.index})")
    views = {v.request_id: v for v in run.accepted}
    mismatched: list[str] = []
    ledger_charged = 0.0
    paid_undelivered = 0.0
    from_sidecars = 0
    for row in run.rows:
        paid = views.get(row.request_id or "")
        if row.state == "completed":
            charged = None if row.charged is None else to_usd(row.charged)
            if charged is None and row.files:
                # Recorded from its files after a crash: the sidecar has the charge.
                sidecar = read_sidecar((run.out / row.files[0]).with_suffix(".json"))
                charged = sidecar.credits.charged_usd
                from_sidecars += 1
            ledger_charged += charged or 0.0
            if paid is None or abs(paid.charged - (charged or 0.0)) > 1e-9:
                mismatched.append(row.key)
        elif paid is not None and paid.charged:
            paid_undelivered += paid.charged
    duplicates_paid = sum(views[r].charged for r in dropped | crash if r in views)
    return Accounting(
        recorded=frozenset(recorded_final),
        dropped=frozenset(dropped),
        crash_window=frozenset(crash),
        unexplained=tuple(unexplained),
        duplicates_by_job={k: n - 1 for k, n in per_job.items() if n > 1},
        server_charged=sum(v.charged for v in run.accepted),
        ledger_charged=ledger_charged,
        paid_undelivered=paid_undelivered,
        duplicates_paid=duplicates_paid,
        mismatched_charges=tuple(mismatched),
        charges_from_sidecars=from_sidecars,
        # What the runner tells the user may have been billed twice: its
        # ambiguous sends. (Each ambiguous send is also one more attempt, so
        # adding `attempts - 1` counted every one of them twice.)
        runner_possible_duplicates=sum(r.ambiguous for r in run.rows),
    )


def max_in_windows(calls: list[CallRecord], window: float, spans: list[tuple[float, float]]) -> int:
    """Most submit calls the server received in any `window` that lies within one span."""
    best = 0
    for start, end in spans:
        times = sorted(c.time for c in calls if c.kind == "submit" and start <= c.time < end)
        first = 0
        for last, at in enumerate(times):
            while at - times[first] >= window:
                first += 1
            best = max(best, last - first + 1)
    return best


def failure_class(row: JobRow) -> str:
    """Why a job ended failed, as one word: blocked, lost-answer, or retries."""
    reason = (row.reason or "").lower()
    if "moderated" in reason:
        return "blocked"
    if "submit answer lost" in reason:
        return "lost-answer"
    return "retries"


def figures(run: SoakRun, acc: Accounting) -> dict[str, object]:
    """The numbers docs/reliability.md quotes."""
    plan = run.plan
    states = Counter(r.state for r in run.rows)
    failed = Counter(failure_class(r) for r in run.rows if r.state == "failed")
    kinds = Counter(c.kind for c in run.calls)
    injected = Counter(f"{c.kind}:{c.fault}" for c in run.calls if c.fault)
    statuses = Counter(str(c.status) for c in run.calls)
    spans = [(s.started, s.ended) for s in run.segments]
    report = verify(run.out)
    return {
        "jobs": plan.jobs,
        "blocked_prompts": plan.blocked,
        "kills": sum(1 for s in run.segments if s.killed),
        "segments": len(run.segments),
        "time_scale": plan.time_scale,
        "rpm": plan.rpm,
        "seed": plan.seed,
        "elapsed_s": round(run.elapsed, 1),
        "calls": dict(sorted(kinds.items())),
        "answers_by_status": dict(sorted(statuses.items())),
        "faults_injected": dict(sorted(injected.items())),
        "ledger_states": dict(sorted(states.items())),
        "failed_by_class": dict(sorted(failed.items())),
        "accepted_submits": len(run.accepted),
        "extra_submits": len(run.accepted) - plan.jobs,
        "accepted_then_dropped": len(acc.dropped),
        "crash_window_submits": len(acc.crash_window),
        "unexplained_submits": len(acc.unexplained),
        "runner_possible_duplicates": acc.runner_possible_duplicates,
        "images_verified": report.ok,
        "verify_clean": report.clean,
        "temp_files": len(list(temp_files(run.out))),
        "budget_usd": plan.budget,
        "server_charged_usd": round(acc.server_charged, 4),
        "runner_charged_usd": round(acc.ledger_charged, 4),
        "charges_known_only_from_sidecars": acc.charges_from_sidecars,
        "duplicates_paid_usd": round(acc.duplicates_paid, 4),
        "paid_undelivered_usd": round(acc.paid_undelivered, 4),
        "max_submits_in_window_per_process": max_in_windows(run.calls, plan.window, spans),
        "max_submits_in_window_overall": max_in_windows(
            run.calls, plan.window, [(min(s for s, _ in spans), max(e for _, e in spans) + 1e9)]
        ),
        "rerun_new_submits": run.rerun_new_submits,
    }


def render_figures(figs: dict[str, object]) -> str:
    """The figures as the Markdown table docs/reliability.md embeds."""
    lines = ["| figure | value |", "| --- | --- |"]
    for name, value in figs.items():
        shown = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
        lines.append(f"| {name} | {shown} |")
    return "\n".join(lines) + "\n"


def files_under(out: Path) -> Iterator[Path]:
    """Every file under `out`, the ledger folder included."""
    for folder, _dirs, names in os.walk(out):
        for name in names:
            yield Path(folder) / name
