"""JUnit XML for CI (`runner run --junit PATH`): one test case per job.

The common JUnit schema (as read by Jenkins, GitLab and GitHub test
reporters): ``<testsuites>`` holds one ``<testsuite>`` per prompt id, in
which each job is a ``<testcase classname="<prompt id>" name="<label>">``.
A failed or expired job carries ``<failure message="<reason>">``; a job not
run (planned, or left in flight by a stop) carries ``<skipped>``; a job
served from the cache (``--cache``) passes, with the property
``runner.outcome = cached``. A test
case's `time` is its job's seconds from submit to completion, when known.

Text from users and servers (prompt ids, reasons) goes through ElementTree,
which escapes it; characters XML 1.0 cannot hold at all (most control
characters) are replaced first.

Streamed, so memory does not grow with the number of jobs: each test case
is serialized alone (ElementTree, indented as the whole tree would be) into
a spool file of its suite under ``OUT/.runner/``, while the counts per
suite are tallied (a dict of prompt ids: bounded by the manifest); then the
suites are copied, counts first, into the output. Rows need not be ordered
by prompt id. The text is the one a whole ElementTree would have written.
"""

from __future__ import annotations

import io
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from runner.cache import CACHED
from runner.clock import utc_datetime
from runner.params import DEFAULT_PRICES
from runner.reporting.jobinfo import JobCatalog, Prices, RunJobs, key8, run_rows
from runner.store import JobRow, Ledger
from runner.store.atomic import TEMP_SUFFIX, ensure_dir, open_atomic, store_error
from runner.store.ledger import RUNNER_DIR

_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_NOT_RUN: Final = {
    "planned": "not run (the run stopped before submitting it)",
    "submitting": "not run: its submit did not complete",
    "submitted": "still in flight on the server; run again to fetch the result",
}
_EXPIRED: Final = "the result expired on the server before it was fetched"


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _seconds(row: JobRow) -> float:
    # A failed or expired job has no completed_at: it ended when its row last changed.
    end = row.completed_at if row.state == "completed" else row.updated_at
    if row.submitted_at is None or end is None or row.state not in _ENDED:
        return 0.0
    return max(end - row.submitted_at, 0.0)


_ENDED: Final = frozenset({"completed", "failed", "expired"})


# Spool files of suites kept open at once: rows come in expansion order,
# usually one prompt id after another, so a few handles avoid reopening;
# more prompt ids than this only cost reopens (in append mode), never fds.
_OPEN_SPOOLS: Final = 32
_COPY_CHUNK: Final = 1 << 16  # bytes copied at a time from a spool into the output


def _open_tag(element: ET.Element) -> str:
    """`element`'s start tag as ElementTree writes it (same attribute escaping)."""
    text = ET.tostring(element, encoding="unicode", short_empty_elements=False)
    return text.removesuffix(f"</{element.tag}>")


def _declaration() -> str:
    # The declaration ET.tostring(..., xml_declaration=True) writes (its encoding name included).
    return ET.tostring(ET.Element("x"), encoding="unicode", xml_declaration=True).split("\n")[0]


def _case(row: JobRow, catalog: JobCatalog) -> ET.Element:
    facts = catalog.get(row)
    label = facts.label() if facts else f"job {row.idx} [{key8(row.key)}]"
    case = ET.Element(
        "testcase",
        classname=_xml_text(row.prompt_id),
        name=_xml_text(label),
        time=f"{_seconds(row):.3f}",
    )
    if row.state in ("failed", "expired"):
        reason = row.reason or (_EXPIRED if row.state == "expired" else "failed")
        failure = ET.SubElement(
            case, "failure", message=_xml_text(reason), type=f"runner.{row.state}"
        )
        details = [f"job {row.key}", f"state: {row.state}", f"reason: {reason}"]
        if row.request_id:
            details.append(f"request id: {row.request_id}")
        if facts is not None:
            details.append(f"prompt: {facts.prompt}")
            details += [f"{k}: {v}" for k, v in facts.params]
        failure.text = _xml_text("\n".join(details))
    elif row.state != "completed":
        ET.SubElement(case, "skipped", message=_NOT_RUN[row.state])
    elif row.reason == CACHED:
        # Passed, at no charge: the cache held its verified images.
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="runner.outcome", value=CACHED)
        ET.SubElement(case, "system-out").text = "served from the cache: no request sent"
    ET.indent(case, level=2)  # as ET.indent of the whole tree: root 0, suite 1, case 2
    return case


@dataclass(slots=True)
class _Suite:
    """One prompt id's tally (`time` in seconds) and the spool file holding its cases."""

    spool: Path
    tests: int = 0
    failures: int = 0
    skipped: int = 0
    time: float = 0.0


class _Spools:
    """Appends to per-suite spool files, at most `_OPEN_SPOOLS` of them open at once."""

    def __init__(self) -> None:
        self._open: dict[Path, BinaryIO] = {}

    def append(self, spool: Path, data: bytes) -> None:
        file = self._open.pop(spool, None)
        if file is None:
            if len(self._open) >= _OPEN_SPOOLS:
                oldest = next(iter(self._open))
                self._open.pop(oldest).close()
            file = spool.open("ab")
        self._open[spool] = file  # most recently used last
        file.write(data)

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()


def write_junit_stream(
    rows: Iterable[JobRow],
    out: Path,
    dest: BinaryIO,
    *,
    jobs: RunJobs | None = None,
    prices: Prices = DEFAULT_PRICES,
    name: str = "runner",
    timestamp: float | None = None,
) -> None:
    """Write the JUnit XML (UTF-8) for the ledger `rows` of folder `out` into `dest`.

    `jobs` are the run's jobs (see jobinfo.RunJobs: then exactly those are
    test cases, the ones the ledger has not seen as skipped, estimated with
    `prices`; else every ledger row, named from sidecars and remembered
    facts); `name` names the top ``<testsuites>`` (e.g. the manifest's
    name); `timestamp` is wall-clock epoch seconds (default: now). Cases
    are spooled under ``OUT/.runner/`` (removed before returning); memory
    holds one row and one tally per prompt id. Raises StoreError when the
    spool cannot be written.
    """
    catalog = JobCatalog(out, jobs)
    stamp = utc_datetime(timestamp).strftime("%Y-%m-%dT%H:%M:%S")
    runner_dir = out / RUNNER_DIR
    ensure_dir(runner_dir)
    try:
        # Spool files are named as temp files, so a crash leftover is removed on resume.
        holder = tempfile.TemporaryDirectory(
            prefix="junit-", dir=runner_dir, ignore_cleanup_errors=True
        )
    except OSError as err:
        raise store_error(err, runner_dir, action="create a spool folder in") from None
    with holder as spool_dir:
        suites = _spool(run_rows(rows, jobs, prices=prices), catalog, Path(spool_dir))
        # An OSError here is the output's: the caller's writer names it (open_atomic).
        _assemble(suites, dest, name=name, stamp=stamp)


def _spool(rows: Iterable[JobRow], catalog: JobCatalog, folder: Path) -> dict[str, _Suite]:
    """Each row's test case appended to its suite's spool in `folder`; the suites' tallies."""
    suites: dict[str, _Suite] = {}
    spools = _Spools()
    try:
        for row in rows:
            suite = suites.get(row.prompt_id)
            if suite is None:
                spool = folder / f".suite-{len(suites)}{TEMP_SUFFIX}"
                suite = suites[row.prompt_id] = _Suite(spool)
            case = _case(row, catalog)
            suite.tests += 1
            suite.failures += case.find("failure") is not None
            suite.skipped += case.find("skipped") is not None
            suite.time += _seconds(row)
            text = "\n    " + ET.tostring(case, encoding="unicode")
            spools.append(suite.spool, text.encode("utf-8"))
    except OSError as err:
        raise store_error(err, folder) from None
    finally:
        spools.close()
    return suites


def _assemble(suites: dict[str, _Suite], dest: BinaryIO, *, name: str, stamp: str) -> None:
    root = ET.Element("testsuites", name=_xml_text(name))
    root.set("tests", str(sum(s.tests for s in suites.values())))
    root.set("failures", str(sum(s.failures for s in suites.values())))
    root.set("errors", "0")
    root.set("skipped", str(sum(s.skipped for s in suites.values())))
    # Summed in suite order, as the tree writer did (float sums depend on order).
    root.set("time", f"{sum(s.time for s in suites.values()):.3f}")
    head = _declaration() + "\n"
    if not suites:
        dest.write((head + ET.tostring(root, encoding="unicode") + "\n").encode("utf-8"))
        return
    dest.write((head + _open_tag(root)).encode("utf-8"))
    for prompt_id, suite in suites.items():
        element = ET.Element(
            "testsuite",
            name=_xml_text(prompt_id),
            tests=str(suite.tests),
            failures=str(suite.failures),
            errors="0",
            skipped=str(suite.skipped),
            time=f"{suite.time:.3f}",
            timestamp=stamp,
        )
        dest.write(("\n  " + _open_tag(element)).encode("utf-8"))
        with suite.spool.open("rb") as spool:
            shutil.copyfileobj(spool, dest, _COPY_CHUNK)
        dest.write(b"\n  </testsuite>")
    dest.write(b"\n</testsuites>\n")


def junit_xml(
    rows: Iterable[JobRow],
    out: Path,
    *,
    jobs: RunJobs | None = None,
    prices: Prices = DEFAULT_PRICES,
    name: str = "runner",
    timestamp: float | None = None,
) -> str:
    """The JUnit XML text for the ledger `rows` of folder `out` (see write_junit_stream).

    Holds the whole text: for tests and small folders; `write_junit` streams to a file.
    """
    buffer = io.BytesIO()
    write_junit_stream(rows, out, buffer, jobs=jobs, prices=prices, name=name, timestamp=timestamp)
    return buffer.getvalue().decode("utf-8")


def write_junit(
    path: Path,
    out: Path,
    *,
    jobs: RunJobs | None = None,
    prices: Prices = DEFAULT_PRICES,
    name: str = "runner",
    timestamp: float | None = None,
) -> None:
    """Write the JUnit XML of folder `out`'s ledger to `path` atomically (`--junit PATH`).

    Streamed (see write_junit_stream): memory does not grow with the number of
    jobs. Raises UsageError when `out` has no ledger, StoreError when `path`
    cannot be written (the message names it).
    """
    with Ledger.open_readonly(out) as ledger, open_atomic(path) as file:
        write_junit_stream(
            ledger.stream_rows(), out, file, jobs=jobs, prices=prices, name=name,
            timestamp=timestamp,
        )  # fmt: skip
