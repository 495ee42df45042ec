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
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from runner.cache import CACHED
from runner.clock import utc_datetime
from runner.params import DEFAULT_PRICES
from runner.reporting.jobinfo import JobCatalog, Prices, RunJobs, key8, run_rows
from runner.store import JobRow, Ledger, write_atomic

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
    if row.submitted_at is None or row.completed_at is None:
        return 0.0
    return max(row.completed_at - row.submitted_at, 0.0)


def junit_xml(
    rows: Iterable[JobRow],
    out: Path,
    *,
    jobs: RunJobs | None = None,
    prices: Prices = DEFAULT_PRICES,
    name: str = "runner",
    timestamp: float | None = None,
) -> str:
    """The JUnit XML text for the ledger `rows` of folder `out`.

    `jobs` are the run's jobs (see jobinfo.RunJobs: then exactly those are
    test cases, the ones the ledger has not seen as skipped, estimated with
    `prices`; else every ledger row, named from sidecars and remembered
    facts); `name` names the top
    ``<testsuites>`` (e.g. the manifest's name); `timestamp` is wall-clock
    epoch seconds (default: now).
    """
    catalog = JobCatalog(out, jobs)
    rows = run_rows(rows, jobs, prices=prices)
    stamp = utc_datetime(timestamp)
    suites: dict[str, list[ET.Element]] = {}
    tallies: dict[str, list[int]] = {}  # prompt id -> [failures, skipped]
    times: dict[str, float] = {}
    for row in rows:
        facts = catalog.get(row)
        label = facts.label() if facts else f"job {row.idx} [{key8(row.key)}]"
        seconds = _seconds(row)
        case = ET.Element(
            "testcase",
            classname=_xml_text(row.prompt_id),
            name=_xml_text(label),
            time=f"{seconds:.3f}",
        )
        tally = tallies.setdefault(row.prompt_id, [0, 0])
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
            tally[0] += 1
        elif row.state != "completed":
            ET.SubElement(case, "skipped", message=_NOT_RUN[row.state])
            tally[1] += 1
        elif row.reason == CACHED:
            # Passed, at no charge: the cache held its verified images.
            props = ET.SubElement(case, "properties")
            ET.SubElement(props, "property", name="runner.outcome", value=CACHED)
            ET.SubElement(case, "system-out").text = "served from the cache: no request sent"
        suites.setdefault(row.prompt_id, []).append(case)
        times[row.prompt_id] = times.get(row.prompt_id, 0.0) + seconds
    root = ET.Element("testsuites", name=_xml_text(name))
    for prompt_id, cases in suites.items():
        failures, skipped = tallies[prompt_id]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=_xml_text(prompt_id),
            tests=str(len(cases)),
            failures=str(failures),
            errors="0",
            skipped=str(skipped),
            time=f"{times[prompt_id]:.3f}",
            timestamp=stamp.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        suite.extend(cases)
    root.set("tests", str(sum(len(c) for c in suites.values())))
    root.set("failures", str(sum(t[0] for t in tallies.values())))
    root.set("errors", "0")
    root.set("skipped", str(sum(t[1] for t in tallies.values())))
    root.set("time", f"{sum(times.values()):.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


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

    Raises UsageError when `out` has no ledger, StoreError when `path` cannot
    be written (the message names it).
    """
    with Ledger.open_readonly(out) as ledger:
        text = junit_xml(
            ledger.stream_rows(), out, jobs=jobs, prices=prices, name=name, timestamp=timestamp
        )
    write_atomic(path, text.encode("utf-8"))
