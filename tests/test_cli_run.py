"""`runner run` as a user runs it: a subprocess, real files, the emulator on loopback."""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from provider_cases import ProviderCase
from whole_runs import ROOT, cli_env, jobs_manifest
from whole_runs import runner_cli as runner

from runner.emulator import FaultRate, Latency, Served
from runner.store import Ledger, verify

KEY = "sk-test-cli-run-0123456789"


def start_runner(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m runner ARGS` started from the repo root, its output in text pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(env),
        cwd=ROOT,
    )


def manifest(tmp_path: Path, jobs: int, *, rpm: int = 50, max_credits: float | None = None) -> Path:
    jobs_manifest(tmp_path, jobs, rpm=rpm, max_credits=max_credits, name="cli", write=True)
    return tmp_path / "m.yaml"


def test_example_manifest_runs_on_the_embedded_emulator(tmp_path: Path) -> None:
    out = tmp_path / "example"
    done = runner("run", "manifests/example.yaml", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "embedded emulator" in done.stderr
    assert "The emulator runs at 10x speed." in done.stderr
    assert "6 of 6 jobs done" in done.stdout
    # "no credits spent" in the notice is not followed by "$0.21 spent".
    assert "credits: $0.21 emulated, no credits spent;" in done.stdout
    assert " spent (" not in done.stdout
    assert "| spent (emulated: nothing billed) |" in (out / "summary.md").read_text()
    assert (out / "gallery.html").is_file()
    assert json.loads((out / "summary.json").read_text())["run"]["completed"] == 6
    assert len(list(out.glob("*/*.jpg"))) == 6
    assert verify(out).clean
    again = runner("run", "manifests/example.yaml", "--out", str(out), "--no-progress")
    assert again.returncode == 0
    assert "6 done by an earlier run" in again.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["skipped"] == 6
    # The folder's spend stays $0.21; this run, which sent nothing, spent nothing.
    assert (summary["credits"]["spent_usd"], summary["credits"]["spent_this_run_usd"]) == (0.21, 0)


def test_loopback_backend_gives_the_same_images(
    tmp_path: Path, serve_emulator: Callable[..., Served], provider: ProviderCase
) -> None:
    served = serve_emulator(time_scale=0.01)
    chosen = ["--provider", provider.name]
    local = runner(
        "run", "manifests/example.yaml", "--out", str(tmp_path / "a"), "--no-progress", *chosen
    )
    remote = runner(
        "run",
        "manifests/example.yaml",
        "--out",
        str(tmp_path / "b"),
        "--backend",
        provider.name,
        "--base-url",
        served.base_url,
        "--time-scale",
        "0.01",
        "--no-progress",
        *chosen,
        env=provider.env(KEY),
    )
    assert (local.returncode, remote.returncode) == (0, 0), remote.stderr
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").glob("*/*.jpg"))
    b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").glob("*/*.jpg"))
    assert a == b and len(a) == 6
    for rel in a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert len(served.emulator.accepted_submits()) == 6


def test_dry_run_sends_nothing(tmp_path: Path, serve_emulator: Callable[..., Served]) -> None:
    served = serve_emulator()
    done = runner(
        "run",
        str(manifest(tmp_path, 3)),
        "--dry-run",
        "--backend",
        "segmind",
        "--base-url",
        served.base_url,
        env={"SEGMIND_API_KEY": KEY},
    )
    assert done.returncode == 0, done.stderr
    assert "total" in done.stdout
    assert "embedded emulator" not in done.stdout  # a paid plan's times are the provider's
    assert served.emulator.calls() == []
    local = runner("run", "manifests/example.yaml", "--dry-run")
    assert "on the embedded emulator at 10x speed: no credits spent, at least ~1 s" in local.stdout


def test_large_paid_run_needs_yes_without_a_terminal(
    tmp_path: Path, serve_emulator: Callable[..., Served]
) -> None:
    served = serve_emulator()
    done = runner(
        "run",
        str(manifest(tmp_path, 150)),
        "--backend",
        "segmind",
        "--base-url",
        served.base_url,
        env={"SEGMIND_API_KEY": KEY},
    )
    assert done.returncode == 2
    assert "--yes" in done.stderr
    assert served.emulator.calls() == []


def test_json_events_for_pipelines(tmp_path: Path) -> None:
    done = runner("run", str(manifest(tmp_path, 3)), "--backend", "local", "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-2:] == ["finished", "summary"]
    assert events[-1]["exit"]["code"] == 0
    assert kinds.count("completed") == 3
    assert KEY not in done.stdout + done.stderr


def test_bad_manifest_is_exit_2_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nprompts:\n  - id: a\n    prompt: hi\ndefaults: {n: 9}\n")
    done = runner("run", str(path))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "bad.yaml:5" in done.stderr


def test_ctrl_c_stops_records_and_resumes_without_paying_twice(
    tmp_path: Path, serve_emulator: Callable[..., Served]
) -> None:
    served = serve_emulator(time_scale=0.01, latency=Latency("fixed", 200.0), workers=64)
    path = manifest(tmp_path, 8)
    args = [
        "run",
        str(path),
        "--backend",
        "segmind",
        "--base-url",
        served.base_url,
        "--time-scale",
        "0.01",
        "--no-progress",
    ]
    proc = start_runner(*args, env={"SEGMIND_API_KEY": KEY})
    try:
        # Wait (bounded) for the condition: every job accepted by the server.
        deadline = time.monotonic() + 60
        while len(served.emulator.accepted_submits()) < 8:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not submit in time"
            time.sleep(0.02)
        # ...and recorded as submitted in the ledger before any poll.
        while True:
            with Ledger.open_readonly(tmp_path / "out") as ledger:
                if ledger.counts()["submitted"] == 8:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "resume with: python -m runner run" in stdout
    assert "interrupted; " in stdout and "interrupted: interrupted" not in stdout + stderr
    resumed = runner(*args, env={"SEGMIND_API_KEY": KEY})
    assert resumed.returncode == 0, resumed.stderr
    assert "8 of 8 jobs done" in resumed.stdout
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["run"]["completed"] == 8
    assert len(served.emulator.accepted_submits()) == 8  # re-attached, not resubmitted
    assert verify(tmp_path / "out").clean


@pytest.mark.parametrize("args", [["--shard", "0/2"], ["--shard", "x"], ["--rpm", "0"]])
def test_bad_options_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    done = runner("run", str(manifest(tmp_path, 2)), *args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_rpm_auto_learns_the_embedded_emulators_limit(tmp_path: Path) -> None:
    path = manifest(tmp_path, 14)
    plan = runner("plan", str(path), "--rpm", "auto")
    assert plan.returncode == 0, plan.stderr
    assert "learned at run time" in plan.stdout
    done = runner("run", str(path), "--rpm", "auto", "--backend", "local", "--no-progress")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    rate = json.loads((out / "summary.json").read_text())["run"]["rate"]
    assert rate["declared"] is None
    # The embedded emulator keeps 10 a minute under auto: the run never believes more.
    assert 1 <= rate["limit"] <= 10
    saved = json.loads((out / ".runner" / "rate.json").read_text())
    assert saved["limit"] == rate["limit"]


def test_a_wrong_key_is_a_refusal_nothing_left_possibly_billed(
    tmp_path: Path, serve_emulator: Callable[..., Served]
) -> None:
    served = serve_emulator(api_keys=frozenset({KEY}), time_scale=0.01)
    path = str(manifest(tmp_path, 6))
    remote = ["--backend", "segmind", "--base-url", served.base_url, "--time-scale", "0.01"]
    remote.append("--no-progress")
    wrong = runner("run", path, *remote, env={"SEGMIND_API_KEY": "sk-wrong-key-0123456789"})
    assert wrong.returncode == 2, wrong.stderr
    # One message for the one error, not a "stopping:" and an "error:" for it.
    assert wrong.stderr.count("Invalid API key") == 1, wrong.stderr
    ledger = Ledger.open_readonly(tmp_path / "out")
    try:
        assert ledger.counts()["submitting"] == 0
    finally:
        ledger.close()
    status = runner("status", str(tmp_path / "out"))
    assert "in flight: none" in status.stdout, status.stdout
    good = runner("run", path, *remote, env={"SEGMIND_API_KEY": KEY})
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ambiguous" not in good.stdout + good.stderr
    assert "6 of 6 jobs done" in good.stdout


def test_hints_say_what_to_type_next(tmp_path: Path) -> None:
    path = manifest(tmp_path, 4)
    text = path.read_text().replace('"a picture of {thing}"', '"a blocked picture of {thing}"')
    path.write_text(
        text.replace("vars: {thing: [thing0, thing1, thing2, thing3]}", "vars: {thing: [thing0]}")
    )
    junit = tmp_path / "junit.xml"
    failed = runner("run", str(path), "--no-progress", "--junit", str(junit))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    # Started as `python -m runner`: the hint says so, and offers the retry.
    assert "resume with: python -m runner run " in failed.stdout
    assert failed.stdout.rstrip().endswith("--retry-failed"), failed.stdout
    # The failed case's time is the job's, from its submit to its failure.
    case = ET.parse(junit).getroot().find(".//testcase[failure]")  # noqa: S314 (our own file)
    assert case is not None and float(case.get("time", "0")) > 0, junit.read_text()


def test_a_budget_stop_hint_names_a_cap_that_is_enough(tmp_path: Path) -> None:
    path = manifest(tmp_path, 6)
    stopped = runner("run", str(path), "--no-progress", "--max-credits", "0.05")
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    hint = next(line for line in stopped.stdout.splitlines() if line.startswith("resume with:"))
    command = hint.removeprefix("resume with: python -m runner ").split()
    cap = command[command.index("--max-credits") + 1]
    assert float(cap) >= 0.12  # 6 jobs at $0.02: what was spent and the rest's estimate
    again = runner(*command, "--no-progress")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "6 of 6 jobs done" in again.stdout


def test_the_confirmation_says_what_the_cap_allows(
    tmp_path: Path, serve_emulator: Callable[..., Served]
) -> None:
    served = serve_emulator()
    done = runner(
        "run",
        str(manifest(tmp_path, 150)),
        "--max-credits",
        "1.00",
        "--backend",
        "segmind",
        "--base-url",
        served.base_url,
        env={"SEGMIND_API_KEY": KEY},
    )
    assert done.returncode == 2
    assert "the cap of $1.00 allows 50 of them ($1.00), then the run stops" in done.stderr
    assert served.emulator.calls() == []


def test_validate_strict_and_plan_check_fail_a_budget_that_does_not_fit(tmp_path: Path) -> None:
    path = manifest(tmp_path, 6, max_credits=0.05)
    assert runner("validate", str(path)).returncode == 0
    strict = runner("validate", "--strict", str(path))
    assert strict.returncode == 1
    assert "does not fit under $0.05: 2 of 6 jobs would run" in strict.stderr
    assert runner("plan", str(path)).returncode == 0
    assert runner("plan", "--check", str(path)).returncode == 1
    assert runner("plan", "--check", str(path), "--max-credits", "1").returncode == 0


def test_a_shard_plans_and_runs_its_own_jobs_under_its_share(tmp_path: Path) -> None:
    path = manifest(tmp_path, 7, rpm=30, max_credits=0.9)
    plan = runner("plan", str(path), "--shard", "1/3")
    assert plan.returncode == 0, plan.stderr
    assert re.search(r"^total +3 ", plan.stdout, re.M), plan.stdout
    share = "shard 1/3 runs under 1/3 of the budget: max_credits $0.30, 10 requests/minute"
    assert share in plan.stdout
    full = runner("plan", str(path), "--shard", "3/3", "--shard-budget", "full")
    assert re.search(r"^total +2 ", full.stdout, re.M) and "of the budget" not in full.stdout
    dry = runner("run", str(path), "--shard", "2/3", "--dry-run")
    assert re.search(r"^total +2 ", dry.stdout, re.M)
    assert share.replace("1/3 runs", "2/3 runs") in dry.stdout
    junit = tmp_path / "s1.xml"
    done = runner("run", str(path), "--shard", "1/3", "--no-progress", "--junit", str(junit))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shard 1/3: 3 of 3 jobs done" in done.stdout
    assert share in done.stderr and share in done.stdout  # before the run, and in its summary
    # Every report's heading names the shard, so three shards' reports never read alike.
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shard"] == {"index": 1, "count": 3, "budget": "split"}
    assert (out / "summary.md").read_text().splitlines()[0].endswith("(shard 1/3)")
    assert "(shard 1/3)" in (out / "gallery.html").read_text()
    assert 'name="cli (shard 1/3)"' in junit.read_text()


def test_a_log_gets_status_lines_with_sent_jobs_apart_from_waiting_ones(tmp_path: Path) -> None:
    # 2 requests a minute on the embedded emulator (a 6 s window at 10x):
    # the third and fourth jobs wait for the window, having sent nothing.
    done = runner("run", str(manifest(tmp_path, 4, rpm=2)), "--status-every", "1000")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("status: ")]
    states = [line.removeprefix("status: ").split(";")[0].split(" (")[0] for line in lines]
    # One line per change of state (the interval is longer than the run).
    assert states[:2] == ["starting", "running"] and states[-1] == "finished", lines
    assert "waiting for the rate window" in states, lines
    assert all(a != b for a, b in itertools.pairwise(states)), lines
    assert any("in flight 0 waiting 2" in line for line in lines), lines
    # A wait says when the window opens and when, at that rate, the sends are done.
    waits = [line for line in lines if line.startswith("status: waiting for the rate window")]
    # (A slot under a second away is not named: "next slot in 0 s" was a flicker.)
    slot = (
        r"\(((next slot in \d+ s, )?ETA by the rate ~\d+ s|next slot when a call on the wire ends)"
    )
    assert waits and all(re.search(slot, w) for w in waits), waits
    assert "4/4 done" in lines[-1]


def test_a_line_comes_before_a_slow_first_answer(
    tmp_path: Path, serve_emulator: Callable[..., Served]
) -> None:
    # The key and balance check is held for a minute: the run says it started anyway,
    # while that first call is unanswered and nothing has been submitted.
    faults = (FaultRate("credits", "slow", 1.0),)
    served = serve_emulator(faults=faults, slow_delay=60.0, time_scale=1.0)
    remote = ["--backend", "segmind", "--base-url", served.base_url]
    child = start_runner("run", str(manifest(tmp_path, 3)), *remote, env={"SEGMIND_API_KEY": KEY})
    try:
        assert child.stderr is not None
        first = child.stderr.readline()
        assert first == "status: starting; 3 job(s), the first request on its way\n", first
        assert served.emulator.calls("submit") == []
    finally:
        child.kill()
        child.wait(timeout=30)
