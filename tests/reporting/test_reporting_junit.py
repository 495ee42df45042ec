"""JUnit XML parsed back and checked against the folder's ledger."""

from __future__ import annotations

import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from reporting_helpers import Folder, make_folder, make_sweep_folder, sweep_jobs

from runner.errors import StoreError, UsageError
from runner.money import Micros
from runner.reporting.junit import junit_xml, write_junit
from runner.store import Ledger


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    return make_sweep_folder(tmp_path_factory.mktemp("sweep") / "out", size=(96, 64))


@pytest.fixture(scope="module")
def root(folder: Folder, tmp_path_factory: pytest.TempPathFactory) -> ET.Element:
    path = tmp_path_factory.mktemp("ci") / "reports" / "junit.xml"
    write_junit(path, folder.out, jobs=folder.by_key, name="sweep-demo")
    return ET.parse(path).getroot()  # noqa: S314 (our own file)


def cases(root: ET.Element) -> list[ET.Element]:
    return root.findall("./testsuite/testcase")


def test_one_test_case_per_ledger_job(folder: Folder, root: ET.Element) -> None:
    with Ledger.open_readonly(folder.out) as ledger:
        rows = list(ledger.rows())
    assert root.tag == "testsuites"
    assert root.get("name") == "sweep-demo"
    assert len(cases(root)) == len(rows) == 24
    names = [case.get("name", "") for case in cases(root)]
    assert len(set(names)) == 24
    for row, case in zip(rows, cases(root), strict=True):
        job = folder.by_key[row.key]
        assert case.get("classname") == job.prompt_id
        assert job.key8 in case.get("name", "")
        for _, value in job.sweep:
            assert f"={value}" in case.get("name", "")


def test_failed_and_expired_jobs_are_failures_with_the_reason(
    folder: Folder, root: ET.Element
) -> None:
    failures = {
        case.get("name", "").rsplit("[", 1)[1].rstrip("]"): case.find("failure")
        for case in cases(root)
        if case.find("failure") is not None
    }
    expected = {folder.by_key[k].key8 for k in (*folder.failed, *folder.expired)}
    assert set(failures) == expected
    for key, reason in folder.failed.items():
        failure = failures[folder.by_key[key].key8]
        assert failure is not None
        assert failure.get("message") == reason
        assert failure.get("type") == "runner.failed"
        assert key in (failure.text or "")


def test_jobs_not_run_are_skipped_and_completed_ones_pass(folder: Folder, root: ET.Element) -> None:
    by_key8 = {case.get("name", "").rsplit("[", 1)[1].rstrip("]"): case for case in cases(root)}
    for key in folder.not_run:
        skipped = by_key8[folder.by_key[key].key8].find("skipped")
        assert skipped is not None
        assert "not run" in skipped.get("message", "")
    for key in folder.completed:
        case = by_key8[folder.by_key[key].key8]
        assert list(case) == []  # no failure, no skipped: passed
        assert float(case.get("time", "0")) == pytest.approx(11.5)


def test_suite_totals_add_up(root: ET.Element) -> None:
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["mug", "lighthouse"]
    for suite in suites:
        assert int(suite.get("tests", "-1")) == len(suite.findall("testcase"))
        assert int(suite.get("failures", "-1")) == len(suite.findall("testcase/failure"))
        assert int(suite.get("skipped", "-1")) == len(suite.findall("testcase/skipped"))
        assert suite.get("errors") == "0"
        assert suite.get("timestamp")
    assert root.get("tests") == "24"
    assert root.get("failures") == "2"
    assert root.get("skipped") == "2"


def test_hostile_text_stays_well_formed_xml(tmp_path: Path) -> None:
    reason = 'bell \x07 and "quotes" <tag> & ]]> done'
    folder = make_folder(
        tmp_path / "out",
        sweep_jobs()[:2],
        failed={0: reason},
        expired=frozenset(),
        not_run=frozenset(),
        ambiguous={},
        size=(32, 32),
    )
    with Ledger.open_readonly(folder.out) as ledger:
        text = junit_xml(ledger.rows(), folder.out)  # no lookup: names come from sidecars
    root = ET.fromstring(text)  # noqa: S314 (our own text)
    failure = root.find(".//failure")
    assert failure is not None
    assert failure.get("message") == reason.replace("\x07", "\ufffd")
    passed = root.findall(".//testcase")[1]
    assert folder.job(1).key8 in passed.get("name", "")
    assert "surface=an oak table" in passed.get("name", "")


def test_errors_name_the_place(tmp_path: Path, folder: Folder) -> None:
    with pytest.raises(UsageError, match="has no ledger"):
        write_junit(tmp_path / "j.xml", tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(StoreError, match="file"):
        write_junit(blocker / "junit.xml", folder.out)


def _planned_folder(out: Path, count: int, prompts: int) -> Path:
    """A ledger of `count` jobs whose prompt ids interleave (`prompts` of them); 1 in 10 failed."""
    with Ledger.open(out, backend="local", base_url="http://127.0.0.1:9") as ledger:
        keys = [f"{i:064x}" for i in range(count)]
        ledger.plan_many((key, i, f"p{i % prompts}", Micros(20_000)) for i, key in enumerate(keys))
        with ledger.transaction():
            for key in keys[::10]:
                ledger.failed(key, "moderation: <flagged> & refused")
    return out


def test_suites_collect_their_cases_when_prompt_ids_interleave(tmp_path: Path) -> None:
    # 40 prompt ids, one after another: more suites than spool files kept open.
    out = _planned_folder(tmp_path / "out", 400, prompts=40)
    path = tmp_path / "junit.xml"
    write_junit(path, out, timestamp=1_700_000_000.0)
    root = ET.parse(path).getroot()  # noqa: S314 (our own file)
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [f"p{i}" for i in range(40)]
    for number, suite in enumerate(suites):
        idxs = [int(c.get("name", "").split()[1]) for c in suite.findall("testcase")]
        assert idxs == list(range(number, 400, 40))  # every case, in expansion order
        assert {c.get("classname") for c in suite.findall("testcase")} == {f"p{number}"}
        assert int(suite.get("tests", "-1")) == 10
        assert int(suite.get("failures", "-1")) == len(suite.findall("testcase/failure"))
        assert int(suite.get("skipped", "-1")) == len(suite.findall("testcase/skipped"))
        assert suite.get("timestamp") == "2023-11-14T22:13:20"
    assert root.get("tests") == "400"
    assert root.get("failures") == "40"
    assert root.get("skipped") == "360"
    assert root.findall(".//failure")[0].get("message") == "moderation: <flagged> & refused"
    # The spool is gone, and the atomic write left no temp file beside the output.
    assert sorted(p.name for p in (out / ".runner").iterdir() if p.name.startswith("junit-")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml", "out"]


def _junit_peak(out: Path, path: Path) -> int:
    tracemalloc.start()
    try:
        write_junit(path, out)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_jobs(tmp_path: Path) -> None:
    small = _planned_folder(tmp_path / "small", 1_000, prompts=40)
    big = _planned_folder(tmp_path / "big", 3_000, prompts=40)
    write_junit(tmp_path / "warm.xml", small)  # imports and caches before measuring
    small_peak = _junit_peak(small, tmp_path / "small.xml")
    big_peak = _junit_peak(big, tmp_path / "big.xml")
    big_root = ET.parse(tmp_path / "big.xml").getroot()  # noqa: S314 (our own file)
    assert big_root.get("tests") == "3000"  # the big one did write every case
    assert big_peak <= 1.5 * small_peak, (small_peak, big_peak)
