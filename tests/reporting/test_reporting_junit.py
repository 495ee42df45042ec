"""JUnit XML parsed back and checked against the folder's ledger."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from reporting_helpers import Folder, make_folder, make_sweep_folder, sweep_jobs

from runner.errors import StoreError, UsageError
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
