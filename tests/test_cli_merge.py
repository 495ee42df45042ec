"""`runner merge` of a CI matrix's shards, as a user runs it: subprocesses, real folders."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from runner.store import Ledger, verify
from tests.test_cli_run import manifest, runner


def shard(path: Path, out: Path, k: int, n: int) -> None:
    done = runner(
        "run",
        str(path),
        "--shard",
        f"{k}/{n}",
        "--out",
        str(out),
        "--no-progress",
        "--junit",
        str(out.with_suffix(".xml")),
    )
    assert done.returncode == 0, done.stdout + done.stderr


def junit_totals(path: Path) -> tuple[int, int, int]:
    root = ET.parse(path).getroot()  # noqa: S314 (our own file)
    return int(root.get("tests", -1)), int(root.get("failures", -1)), int(root.get("skipped", -1))


def test_a_merge_of_shards_is_complete_or_names_what_is_missing(tmp_path: Path) -> None:
    path = manifest(tmp_path, 7)
    folders = [tmp_path / f"s{k}" for k in (1, 2, 3)]
    for k, out in enumerate(folders, 1):
        shard(path, out, k, 3)
    with Ledger.open_readonly(folders[1]) as ledger:
        left_out = sorted(row.key for row in ledger.rows())
    assert left_out

    # Shard 2 left out: exit 1, naming each of its jobs; the merged part is still written.
    part = tmp_path / "part"
    partial = runner("merge", str(folders[0]), str(folders[2]), "--into", str(part))
    assert partial.returncode == 1, partial.stdout + partial.stderr
    assert "merged 2 folder(s)" in partial.stdout
    assert f"incomplete: {len(left_out)} of 7 job(s) of the manifest" in partial.stdout
    named = [line for line in partial.stdout.splitlines() if line.startswith("  p: ")]
    assert len(named) == len(left_out)
    assert all(any(key.split(":")[1][:8] in line for line in named) for key in left_out)
    assert "--partial" in partial.stderr
    accepted = runner("merge", str(folders[0]), str(folders[2]), "--into", str(part), "--partial")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "merged 2 folder(s)" in accepted.stdout  # OUT itself is not counted again
    # Its summary.md is headed as a shard's is: the manifest, and what was merged.
    heading = (part / "summary.md").read_text().splitlines()[0]
    assert heading == f"## runner: {path} (merged from 2 of 3 shards)", heading
    doc = json.loads((part / "summary.json").read_text())
    assert (doc["manifest"], doc["merged"]) == (str(path), {"folders": 2, "shards": 3})

    # All three: complete, one JUnit with every job; again on a re-run.
    whole = tmp_path / "whole"
    command = [
        "merge",
        *map(str, folders),
        "--into",
        str(whole),
        "--junit",
        str(tmp_path / "all.xml"),
    ]
    for _ in range(2):
        merged = runner(*command)
        assert merged.returncode == 0, merged.stdout + merged.stderr
        assert "merged 3 folder(s)" in merged.stdout
        assert "complete: all 7 job(s) of the manifest" in merged.stdout
    assert verify(whole).clean
    heading = (whole / "summary.md").read_text().splitlines()[0]
    assert heading == f"## runner: {path} (merged from 3 of 3 shards)", heading
    status = runner("status", str(whole))
    assert status.returncode == 0 and status.stdout.endswith("in flight: none\n")
    assert junit_totals(tmp_path / "all.xml") == (7, 0, 0)
    shards = [junit_totals(out.with_suffix(".xml"))[0] for out in folders]
    assert sum(shards) == 7  # the shards' JUnit files, in one

    # The merged part's JUnit lists the missing jobs as not run.
    runner(
        "merge",
        str(folders[0]),
        "--into",
        str(part),
        "--partial",
        "--junit",
        str(tmp_path / "p.xml"),
    )
    assert junit_totals(tmp_path / "p.xml") == (7, 0, len(left_out))


def test_a_merge_without_a_manifest_to_check_against_says_how(tmp_path: Path) -> None:
    path = manifest(tmp_path, 2)
    shard(path, tmp_path / "s1", 1, 1)
    path.unlink()  # the manifest the sidecars name is gone
    refused = runner("merge", str(tmp_path / "s1"), "--into", str(tmp_path / "m"))
    assert refused.returncode == 2
    assert "--partial" in refused.stderr and "Traceback" not in refused.stderr
    ok = runner("merge", str(tmp_path / "s1"), "--into", str(tmp_path / "m"), "--partial")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "merged 1 folder(s)" in ok.stdout and "complete:" not in ok.stdout
