"""What a run asks of the API, counted from `runner emulator --log FILE` (on loopback)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli_run import KEY, manifest, runner, start_runner


@pytest.fixture
def logged_emulator(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`runner emulator --port 0 --log FILE` as a user starts it: (base URL, log file)."""
    log = tmp_path / "requests.jsonl"
    command = ["emulator", "--port", "0", "--time-scale", "0.01"]
    proc = start_runner(*command, "--api-key", KEY, "--log", str(log))
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()  # printed once it listens
        assert base_url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        yield base_url, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def lines(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def test_the_log_counts_a_runs_requests_and_a_finished_folder_asks_nothing(
    tmp_path: Path, logged_emulator: tuple[str, Path]
) -> None:
    base_url, log = logged_emulator
    path = str(manifest(tmp_path, 4))
    remote = ["--backend", "segmind", "--base-url", base_url, "--time-scale", "0.01"]
    first = runner("run", path, *remote, "--no-progress", env={"SEGMIND_API_KEY": KEY})
    assert first.returncode == 0, first.stdout + first.stderr
    calls = lines(log)
    kinds = Counter(str(c["kind"]) for c in calls)
    assert kinds["submit"] == 4
    assert kinds["media"] == 4
    assert kinds["credits"] >= 1  # the key check / balance read
    for call in calls:
        assert set(call) == {
            "time",
            "method",
            "path",
            "kind",
            "status",
            "request_id",
            "fault",
            "key",
        }
        assert str(call["time"]).endswith("Z")
        assert call["method"] in ("GET", "POST")
        assert str(call["path"]).startswith("/")
    fingerprints = {c["key"] for c in calls if c["kind"] != "media"}
    assert len(fingerprints) == 1 and len(str(fingerprints.pop())) == 12
    assert KEY not in log.read_text(encoding="utf-8")  # a fingerprint, never the key
    assert {c["status"] for c in calls} == {200}

    again = runner("run", path, *remote, "--no-progress", env={"SEGMIND_API_KEY": KEY})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "4 done by an earlier run" in again.stdout
    # Nothing to send: no key check, no balance read, not one request.
    assert len(lines(log)) == len(calls), lines(log)[len(calls) :]
