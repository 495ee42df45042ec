"""The summary of a run: ``OUT/summary.json`` for pipelines, ``OUT/summary.md`` for people.

Counts come from the ledger, the source of truth across resumed runs; the
run's own counters (requests by kind, 429s met, retries, wall time) from the
scheduler's final `RunStats`. Money is summed in µ$ (`runner.money`) from the
ledger and written as USD:

- ``estimated_usd``: the price-table estimate of every job in the ledger;
- ``charged_usd``: the sum of costs the API reported for completed jobs
  (``charged_jobs`` of them reported one);
- ``spent_usd``: what completed jobs cost as far as known (the reported
  cost, else the estimate);
- ``possible_duplicate_usd``: submits whose answer was lost may have been
  billed although the job was submitted again: ledger ``ambiguous`` count x
  the job's estimate, summed;
- ``billed_failures_usd``: what the server billed for results that could not
  be used (too few images, none, a download that failed for good), over
  ``billed_failures`` failures (ledger ``billed_failures`` / ``billed_failed``):
  paid, never duplicates. A folder an older runner wrote counted them as
  ambiguous submits.

``summary.json`` is versioned (``schema_version``); `Summary` (summary_model.py)
is its model.
`write_summary` writes both files atomically and appends the markdown to
``$GITHUB_STEP_SUMMARY`` when that variable names a file (GitHub Actions).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final, Literal

from runner.clock import wall_time
from runner.events import RunStats
from runner.money import format_usd, micros, to_usd
from runner.params import DEFAULT_PRICES
from runner.plan import duration
from runner.reporting.exit_codes import ExitDecision
from runner.reporting.jobinfo import JobCatalog, Prices, RunJobs, key8, run_rows
from runner.reporting.summary_model import (
    Backend,
    CreditTotals,
    ExitInfo,
    Failure,
    ImageCounts,
    JobCounts,
    MergeInfo,
    RateCounters,
    RunCounters,
    Summary,
)
from runner.store import (
    STATES,
    JobRow,
    Ledger,
    LedgerMeta,
    billed_failures_text,
    store_error,
    utc_stamp,
    with_billed,
    write_atomic,
)

SUMMARY_JSON: Final = "summary.json"
SUMMARY_MD: Final = "summary.md"
STEP_SUMMARY_ENV: Final = "GITHUB_STEP_SUMMARY"

# Failures listed by name in summary.md and the terminal; the JSON lists all.
_MD_FAILURES: Final = 20
_TEXT_FAILURES: Final = 5
_EXPIRED_REASON: Final = (
    "the result expired on the server before it was fetched (results are kept 1 hour)"
)


def _failure(row: JobRow, catalog: JobCatalog) -> Failure:
    facts = catalog.get(row)
    state: Literal["failed", "expired"] = "expired" if row.state == "expired" else "failed"
    reason = row.reason or (_EXPIRED_REASON if state == "expired" else "no reason recorded")
    return Failure(
        key=row.key,
        key8=key8(row.key),
        prompt_id=row.prompt_id,
        state=state,
        reason=reason,
        label=facts.label() if facts else None,
        prompt=facts.prompt if facts else None,
        params=dict(facts.params) if facts else None,
        vars=dict(facts.vars) if facts else None,
        sweep=dict(facts.sweep) if facts else None,
        repeat=facts.repeat if facts else None,
        request_id=row.request_id,
        attempts=row.attempts,
        ambiguous_submits=row.ambiguous,
        billed_usd=to_usd(row.billed_failed),
    )


def _run_counters(stats: RunStats, started_at: float | None) -> RunCounters:
    return RunCounters(
        started_at=utc_stamp(started_at) if started_at is not None else None,
        elapsed_s=round(max(stats.elapsed, 0.0), 3),
        rate=RateCounters(**asdict(stats.rate)) if stats.rate is not None else None,
        planned=stats.planned,
        completed=stats.completed,
        failed=stats.failed,
        skipped=stats.skipped,
        cached=stats.cached,
        expired=stats.expired,
        images=stats.images,
        ambiguous=stats.ambiguous,
        rate_limited=stats.rate_limited,
        retries=stats.retries,
        requests=dict(sorted(stats.calls.items())),
        requests_total=sum(stats.calls.values()),
        stopped=stats.stopped,
        price_surprises=list(stats.price_surprises),
    )


def build_summary(
    out: Path,
    rows: Iterable[JobRow],
    *,
    meta: LedgerMeta | None = None,
    stats: RunStats | None = None,
    jobs: RunJobs | None = None,
    prices: Prices = DEFAULT_PRICES,
    exit: ExitDecision | None = None,
    manifest: str | None = None,
    started_at: float | None = None,
    now: float | None = None,
) -> Summary:
    """The summary of folder `out` from its ledger `rows` (all of them).

    `stats` is the run's final RunStats (None for a folder summarised after
    the fact); `jobs` are the run's jobs (see jobinfo.RunJobs: the summary
    then covers exactly those, with their params; else every ledger row,
    params from sidecars and remembered facts); `prices` (USD per image)
    estimate jobs the ledger has not seen; `exit` is the run's decided exit
    code (or add it later with `with_exit`); `manifest` its path as given;
    `started_at` / `now` are wall-clock epoch seconds.
    """
    catalog = JobCatalog(out, jobs)
    rows = run_rows(rows, jobs, prices=prices)
    by_state: dict[str, int] = dict.fromkeys(STATES, 0)
    images = charged_jobs = ambiguous = billed = 0
    estimated = charged = spent = duplicate = billed_cost = 0  # µ$
    failures: list[Failure] = []
    for row in rows:
        by_state[row.state] += 1
        estimated += row.estimate
        ambiguous += row.ambiguous
        duplicate += row.ambiguous * row.estimate
        billed += row.billed_failures
        billed_cost += row.billed_failed
        if row.state == "completed":
            images += len(row.files)
            spent += row.estimate if row.charged is None else row.charged
            if row.charged is not None:
                charged += row.charged
                charged_jobs += 1
        elif row.state in ("failed", "expired"):
            failures.append(_failure(row, catalog))
    total = sum(by_state.values())
    failed = by_state["failed"] + by_state["expired"]
    return Summary(
        generated_at=utc_stamp(wall_time() if now is None else now),
        folder=str(out),
        manifest=manifest,
        backend=Backend(name=meta.backend, base_url=meta.base_url) if meta else None,
        exit=ExitInfo(code=exit.code, reason=exit.reason) if exit else None,
        jobs=JobCounts(
            total=total,
            by_state=by_state,
            done=by_state["completed"],
            failed=failed,
            not_run=total - by_state["completed"] - failed,
        ),
        images=ImageCounts(total=images, this_run=stats.images if stats else None),
        credits=CreditTotals(
            estimated_usd=to_usd(estimated),
            charged_usd=to_usd(charged),
            charged_jobs=charged_jobs,
            spent_usd=to_usd(spent),
            ambiguous_submits=ambiguous,
            possible_duplicate_usd=to_usd(duplicate),
            # RunStats states USD already (converted once, by the scheduler).
            # Earlier runs' charges count toward the budget, not toward this run.
            spent_this_run_usd=(
                round(stats.credits_spent - stats.credits_earlier, 6) if stats else None
            ),
            reserved_usd=stats.credits_reserved if stats else None,
            ambiguous_this_run_usd=stats.credits_ambiguous if stats else None,
            billed_failures=billed,
            billed_failures_usd=to_usd(billed_cost),
        ),
        run=_run_counters(stats, started_at) if stats else None,
        failures=failures,
    )


def summarize_folder(
    out: Path,
    *,
    stats: RunStats | None = None,
    jobs: RunJobs | None = None,
    prices: Prices = DEFAULT_PRICES,
    exit: ExitDecision | None = None,
    manifest: str | None = None,
    started_at: float | None = None,
) -> Summary:
    """`build_summary` over the ledger of `out`, opened read-only (safe during a run).

    Raises UsageError when `out` has no ledger.
    """
    with Ledger.open_readonly(out) as ledger:
        return build_summary(
            out,
            ledger.stream_rows(),
            meta=ledger.meta,
            stats=stats,
            jobs=jobs,
            prices=prices,
            exit=exit,
            manifest=manifest,
            started_at=started_at,
        )


def with_exit(summary: Summary, decision: ExitDecision) -> Summary:
    """`summary` with the run's exit code and its reason recorded."""
    return summary.model_copy(update={"exit": ExitInfo(code=decision.code, reason=decision.reason)})


def summary_event(summary: Summary) -> str:
    """The summary as one JSON line (``"event": "summary"``) for `runner run --json`."""
    return json.dumps({"event": "summary", **summary.model_dump(mode="json")}) + "\n"


def summary_json(summary: Summary) -> str:
    """The text of summary.json (2-space indent, UTF-8, final newline)."""
    return summary.model_dump_json(indent=2) + "\n"


def read_summary(path: Path) -> Summary:
    """Load and validate a summary.json. Raises ValueError if it is not one."""
    return Summary.model_validate_json(path.read_text(encoding="utf-8"))


# -- text for people --------------------------------------------------------------------------


def money(usd: float) -> str:
    """A USD figure of a report (summary.json, a sidecar) as text, by runner.money.format_usd."""
    return format_usd(micros(usd))


# One formatting of durations for every report (the plan's).
span = duration


def shard_label(s: Summary) -> str:
    """The words naming a shard in its reports' headings ("shard 1/3"); empty for a whole run."""
    return f"shard {s.shard.index}/{s.shard.count}" if s.shard is not None else ""


def merged_label(merged: MergeInfo) -> str:
    """The words naming a merged folder in its summary.md heading ("merged from 3 of 3 shards")."""
    if merged.shards is not None:
        return f"merged from {merged.folders} of {merged.shards} shards"
    return f"merged from {merged.folders} folder{'s' if merged.folders > 1 else ''}"


def _headline(s: Summary) -> str:
    head = f"{shard_label(s)}: " if s.shard is not None else ""
    parts = [f"{head}{s.jobs.done:,} of {s.jobs.total:,} jobs done"]
    if s.jobs.failed:
        parts.append(f"{s.jobs.failed:,} failed")
    if s.jobs.not_run:
        parts.append(f"{s.jobs.not_run:,} not run")
    parts.append(f"{s.images.total:,} images")
    return ", ".join(parts)


def _emulated(s: Summary) -> bool:
    """The folder was made on the embedded emulator: its money is emulated, nothing was billed."""
    return s.backend is not None and s.backend.name == "local"


def _money_line(s: Summary) -> str:
    c = s.credits
    # The embedded emulator bills nothing: its figures are labelled so that
    # "no credits spent" in the notice is never followed by "$0.54 spent".
    emulated = _emulated(s)
    spent = "emulated, no credits spent;" if emulated else "spent ("
    text = f"{money(c.spent_usd)} {spent}"
    text += f"{' ' if emulated else ''}est. {money(c.estimated_usd)} for all jobs"
    if c.charged_jobs:
        source = "the emulator" if emulated else "the API"
        text += f"; {money(c.charged_usd)} reported by {source} for {c.charged_jobs:,} jobs"
    text += "" if emulated else ")"
    if c.billed_failures:
        text += f"; {billed_failures_text(c.billed_failures, c.billed_failures_usd)}"
    if c.ambiguous_submits:
        text += (
            f"; {c.ambiguous_submits} ambiguous submit(s): up to "
            f"{money(c.possible_duplicate_usd)} may have been billed twice"
        )
    return text


def _run_line(run: RunCounters) -> str:
    calls = ", ".join(f"{kind} {n:,}" for kind, n in run.requests.items()) or "none"
    text = f"{span(run.elapsed_s)}; requests: {calls}; 429s met: {run.rate_limited:,}"
    if run.rate is not None and run.rate.learned and run.rate.limit is not None:
        text += f"; rate limit learned: {run.rate.limit:,} per {run.rate.window_s:g} s"
    if run.retries:
        text += f"; retries: {run.retries:,}"
    if run.skipped:
        text += f"; {run.skipped:,} done by an earlier run"
    if run.cached:
        text += f"; {run.cached:,} served from the cache (no request)"
    return text


def _reason(failure: Failure) -> str:
    """A failure's reason, with what its billed failures cost (as `runner verify` says it)."""
    return with_billed(failure.reason, failure.billed_usd)


def render_text(summary: Summary, *, out_label: str | None = None) -> str:
    """The few lines `runner run` prints at its end (no trailing newline).

    `out_label` names the folder as the user knows it (default: as recorded).
    """
    s = summary
    where = out_label or s.folder
    lines = [_headline(s), f"credits: {_money_line(s)}"]
    if s.run is not None:
        lines.append(f"run: {_run_line(s.run)}")
        if s.run.stopped:
            lines.append(f"stopped: {s.run.stopped}")
    for failure in s.failures[:_TEXT_FAILURES]:
        name = failure.label or f"[{failure.key8}]"
        lines.append(f"  {failure.state}: {failure.prompt_id} {name}: {_reason(failure)}")
    if len(s.failures) > _TEXT_FAILURES:
        lines.append(f"  ... and {len(s.failures) - _TEXT_FAILURES:,} more in summary.json")
    lines.append(f"see {where}/gallery.html, {where}/{SUMMARY_JSON}")
    if s.exit is not None:
        lines.append(f"exit {s.exit.code}: {s.exit.reason}")
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    """Text safe inside a markdown table cell: no pipes, no newlines, no HTML."""
    text = " ".join(text.split())
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        text = text.replace(char, entity)
    return text.replace("`", "'")


def render_markdown(summary: Summary, *, title: str | None = None) -> str:
    """summary.md: a short report for people (and for the GitHub step summary)."""
    s = summary
    heading = title or (f"runner: {s.manifest}" if s.manifest else "runner run")
    if s.shard is not None:
        heading += f" ({shard_label(s)})"
    if s.merged is not None:
        heading += f" ({merged_label(s.merged)})"
    lines = [f"## {_md_cell(heading)}", ""]
    if s.exit is not None:
        mark = "✅" if s.exit.code == 0 else "❌"
        lines += [f"{mark} **exit {s.exit.code}**: {_md_cell(s.exit.reason)}", ""]
    # The embedded emulator's figures say so here too (summary.md lands in CI step summaries).
    spent = "spent (emulated: nothing billed)" if _emulated(s) else "spent"
    lines += [
        f"| jobs | done | failed | not run | images | {spent} | estimated |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {s.jobs.total:,} | {s.jobs.done:,} | {s.jobs.failed:,} | {s.jobs.not_run:,} "
        f"| {s.images.total:,} | {money(s.credits.spent_usd)} "
        f"| {money(s.credits.estimated_usd)} |",
        "",
    ]
    if s.credits.billed_failures:
        billed = billed_failures_text(s.credits.billed_failures, s.credits.billed_failures_usd)
        lines += [f"⚠️ {billed}: results that could not be used.", ""]
    if s.credits.ambiguous_submits:
        lines += [
            f"⚠️ {s.credits.ambiguous_submits} submit(s) lost their answer: up to "
            f"{money(s.credits.possible_duplicate_usd)} may have been billed twice.",
            "",
        ]
    if s.run is not None:
        lines += [f"Run: {_md_cell(_run_line(s.run))}.", ""]
        if s.run.stopped:
            lines += [f"Stopped: {_md_cell(s.run.stopped)}", ""]
    if s.failures:
        lines += ["| prompt | job | state | reason |", "| --- | --- | --- | --- |"]
        for f in s.failures[:_MD_FAILURES]:
            name = f.label or f"[{f.key8}]"
            lines.append(
                f"| {_md_cell(f.prompt_id)} | {_md_cell(name)} | {f.state} "
                f"| {_md_cell(_reason(f))} |"
            )
        if len(s.failures) > _MD_FAILURES:
            lines.append(f"\n… and {len(s.failures) - _MD_FAILURES:,} more in summary.json.")
        lines.append("")
    lines.append(f"Folder: `{_md_cell(s.folder)}` (open gallery.html to see the images).")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class SummaryFiles:
    """Where `write_summary` wrote: summary.json, summary.md, and the step summary if any."""

    json: Path
    markdown: Path
    step_summary: Path | None


def write_summary(
    out: Path,
    summary: Summary,
    *,
    title: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> SummaryFiles:
    """Write ``OUT/summary.json`` and ``OUT/summary.md`` atomically; append to the step summary.

    The markdown is appended to the file named by ``$GITHUB_STEP_SUMMARY``
    in `environ` (default: os.environ) when it is set. Raises StoreError.
    """
    env = os.environ if environ is None else environ
    json_path, md_path = out / SUMMARY_JSON, out / SUMMARY_MD
    markdown = render_markdown(summary, title=title)
    write_atomic(json_path, summary_json(summary).encode("utf-8"))
    write_atomic(md_path, markdown.encode("utf-8"))
    step = env.get(STEP_SUMMARY_ENV) or None
    step_path = Path(step) if step else None
    if step_path is not None:
        try:
            with step_path.open("a", encoding="utf-8") as stream:
                stream.write(markdown)
        except OSError as err:
            raise store_error(err, step_path, action=f"append to ${STEP_SUMMARY_ENV}") from None
    return SummaryFiles(json=json_path, markdown=md_path, step_summary=step_path)
