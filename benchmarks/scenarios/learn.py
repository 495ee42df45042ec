"""Scenario 7: pacing that learns the server (issue #12), every case against its target.

The manifest does not tell the truth, and the server does not say much:

- (a) the declared `requests_per_minute` is 3x or 10x the server's real
  quota, under a sliding and a fixed window, with reset hints truncated to
  the whole second; and a server of 20 per 6 s under a declared 200 per
  minute (the same average rate, a much shorter window);
- (b) no limit declared at all (`requests_per_minute: auto`);
- (c) the latency prior (10 s) right, 5x too long (jobs take 2 s) and 5x
  too short (jobs take 50 s), at the emulator's spread (lognormal, sigma
  0.25) and at a narrow one (sigma 0.05); submits paced evenly (`smooth`),
  about four jobs' worth per latency, so that most jobs are submitted after
  the first five are done and poll with what those taught.

Each case is one `runner run` against a fresh loopback emulator; every
figure is counted from the emulator's own request log: 429s in the first
server window (from the first 429) and after it, makespan against the ideal
bound of the *real* limit (benchmarks.bounds), status calls per job after
the first five completions, and the detection delay. The runner talks to the
emulator as to a remote host (`--backend segmind --base-url`), so it polls
by status and fetches the result after COMPLETED: at least three API calls a
job (submit, status, result).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import cache
from statistics import NormalDist
from typing import Any, Literal

from benchmarks.bounds import ratio, windowed_bound
from benchmarks.clients import bench_emulator, run_runner, scratch, served
from benchmarks.manifests import Batch, write_manifest
from benchmarks.report import Section, Table, Target
from benchmarks.serverlog import ServerView, median
from benchmarks.settings import Settings

Kind = Literal["loose", "auto", "latency"]
Limiter = Literal["fixed", "sliding"]

# Rate cases run at this scale: a nominal 60 s window takes 9 s, so that a reset
# hint truncated to the (true) second costs the ~1/9 of a window it would cost a
# 9 s window, not the third of one it costs at the rate scenario's 0.05 (3 s).
LEARN_SCALE = 0.15
QUICK_SCALE = 0.1
LATENCY_S = 10.0  # nominal seconds per job in the rate cases
# Status calls are counted over the jobs submitted after this many completions
# were noticed (issue #12: "once 5 jobs have completed"): the first jobs teach
# the latency, and a job submitted before they did cannot poll with it.
WARM_UP = 5
# A latency case's jobs, submitted over this many latencies (smooth pacing).
LATENCY_JOBS = 60
LATENCY_SPAN = 4.0
# Its scale: at least this many real seconds per job, so that the runner's own
# milliseconds per call stay small against a 10 % detection delay.
LATENCY_REAL_S = 2.0


@dataclass(frozen=True, slots=True)
class Case:
    """One run: the server's real limit (`real` per `window` nominal s), what is declared."""

    label: str
    kind: Kind
    limiter: Limiter
    real: int | None
    declared: int | Literal["auto"]
    jobs: int
    scale: float
    window: float = 60.0
    latency: str = f"fixed:{LATENCY_S:g}"
    latency_s: float = LATENCY_S  # nominal, for the bound
    reset_hint: Literal["exact", "second", "none"] = "second"
    rate_model: Literal["window", "smooth"] = "window"


def latency_case(
    label: str, median_s: float, sigma: float, small_scale: float, jobs: int = LATENCY_JOBS
) -> Case:
    """A polling case: jobs of `median_s` nominal seconds, submitted evenly over 4 latencies."""
    rpm = round(60.0 * jobs / (LATENCY_SPAN * median_s))
    scale = max(small_scale, LATENCY_REAL_S / median_s)
    return Case(label, "latency", "fixed", None, rpm, jobs, scale,
                latency=f"lognormal:{median_s:g},{sigma:g}", latency_s=median_s,
                rate_model="smooth")  # fmt: skip


def cases(settings: Settings) -> list[Case]:
    """Every case of the scenario (fewer and faster with --quick)."""
    scale = QUICK_SCALE if settings.quick else LEARN_SCALE
    real = 10
    jobs = 3 * real  # N >= 3R: the auto target's condition, and two windows of pacing
    # The 6 s window runs unscaled (a hint's whole second is a sixth of it already);
    # its jobs take the prior's 10 s, so that polling is not what it measures.
    short = Case("20 per 6 s under 200/min", "loose", "sliding", 20, 200, 60, 1.0, 6.0)
    timed = [
        latency_case(f"prior {name}, sigma {sigma:g}", median_s, sigma, settings.small_scale)
        for sigma in (0.25, 0.05)
        for name, median_s in (("right", 10.0), ("5x too long", 2.0), ("5x too short", 50.0))
    ]
    # --quick: the prior 5x off either way at the emulator's spread, fewer jobs.
    quick_timed = [
        latency_case(f"prior {name}, sigma 0.25", median_s, 0.25, settings.small_scale, jobs=40)
        for name, median_s in (("5x too long", 2.0), ("5x too short", 50.0))
    ]
    if settings.quick:
        return [
            Case("declared 3x", "loose", "sliding", real, 3 * real, jobs, scale),
            Case(short.label, "loose", "sliding", 20, 200, 40, 1.0, 6.0),
            Case("auto", "auto", "sliding", real, "auto", jobs, scale),
            *quick_timed,
        ]
    limiters: tuple[Limiter, ...] = ("sliding", "fixed")
    out: list[Case] = []
    for factor in (3, 10):
        for limiter in limiters:
            out.append(Case(f"declared {factor}x", "loose", limiter, real, factor * real, jobs,
                            scale))  # fmt: skip
    out.append(short)
    # (auto under a fixed window is tested, tests/scheduling/test_quota_run.py; one
    # case here keeps `make bench` within minutes)
    out.append(Case("auto", "auto", "sliding", real, "auto", jobs, scale))
    out += timed
    return out


def run_case(case: Case) -> dict[str, Any]:
    """One runner run of `case`; its figures (seconds nominal)."""
    from runner.store.learned_rate import load_learned

    config = bench_emulator(
        case.scale,
        latency=case.latency,
        rpm=case.real,
        limiter=case.limiter,
        rate_window=case.window,
        reset_hint=case.reset_hint,
    )
    with scratch("learn") as folder, served(config) as server:
        batch = Batch(jobs=case.jobs, rpm=case.declared, rate_model=case.rate_model)
        manifest = write_manifest(batch, folder)
        result = run_runner(server, manifest, folder / "out", case.scale)
        refused = sorted(c.time for c in server.emulator.calls() if c.status == 429)
        learned = load_learned(folder / "out")
    view = result.server
    first, after = _split(refused, case.window * case.scale)
    bound = (
        windowed_bound(case.jobs, case.real, case.window, case.latency_s)
        if case.real is not None
        else case.latency_s
    )
    makespan = view.makespan / case.scale
    warm = _after_warm_up(view)
    return {
        "label": case.label,
        "kind": case.kind,
        "limiter": case.limiter,
        "real": case.real,
        "window_s": case.window,
        "declared": case.declared,
        "jobs": case.jobs,
        "time_scale": case.scale,
        "latency": case.latency,
        "reset_hint": case.reset_hint,
        "completed": result.completed,
        "failed": result.failed,
        "lost": case.jobs - result.completed,
        "http_429": len(refused),
        "http_429_first_window": first,
        "http_429_after": after,
        "bound_s": bound,
        "makespan_s": makespan,
        "ratio": ratio(makespan, bound),
        "api_calls_per_job": view.api_calls_per_job(case.jobs),
        "measured_jobs": len(warm),
        "status_calls_median_warm": median([float(t.status_calls) for t in warm]),
        "detection_ratio_median_warm": median(
            [r for t in warm if (r := t.detection_ratio) is not None]
        ),
        "learned_limit": learned.limit if learned is not None else None,
        "learned_window_s": learned.window_s if learned is not None else None,
        "learned": bool(learned and learned.learned),
        "exit": result.process.returncode,
        "process_wall_s": result.process.wall_s,
    }


def _split(refused: list[float], window: float) -> tuple[int, int]:
    """429s in the server window that starts at the first 429, and after it."""
    if not refused:
        return 0, 0
    first = sum(1 for t in refused if t < refused[0] + window)
    return first, len(refused) - first


def _after_warm_up(view: ServerView) -> list[Any]:
    """The jobs submitted after the first WARM_UP completions were noticed (all if none was).

    A completion is noticed at the first status call that came after the
    job's end, on the server's clock.
    """
    noticed = sorted(t.noticed for t in view.traces if t.noticed is not None)
    if len(noticed) < WARM_UP:
        return list(view.traces)
    warm = noticed[WARM_UP - 1]
    return [t for t in view.traces if t.submitted > warm] or list(view.traces)


def run(settings: Settings) -> Section:
    """Every case, in one run, side by side."""
    started = time.perf_counter()
    results = [run_case(case) for case in cases(settings)]
    return _section(results, time.perf_counter() - started)


def _rate_bounds(c: dict[str, Any]) -> tuple[int, int, float]:
    """The issue's bounds for a case: 429s in the first window, after, makespan ratio."""
    if c["kind"] == "auto":
        return 3, 3, 1.3
    declared = c["declared"] if isinstance(c["declared"], int) else 0
    return max(0, declared - (c["real"] or 0)) + 2, 2, 1.15


def _rate_met(c: dict[str, Any]) -> bool:
    first, after, times = _rate_bounds(c)
    if c["kind"] == "auto":
        ok_429 = bool(c["http_429"] <= 3)
    else:
        ok_429 = bool(c["http_429_first_window"] <= first and c["http_429_after"] <= after)
    return ok_429 and bool(c["ratio"] <= times) and c["lost"] == 0


@cache
def status_floor(sigma: float, delay: float = 0.10) -> float:
    """The fewest API calls per job on the status path that find half the jobs within `delay`.

    For jobs of a lognormal latency of shape `sigma` (any median), polled
    independently: submit + result + the expected status calls of the best
    schedule of a family (a first poll, then steps of `delay`, then
    doubling) that finds at least half the jobs within `delay` of their
    latency (issue 12's median target). A reference for the measured calls,
    not the runner's own rule.
    """
    unit = NormalDist()
    width = math.log(1.0 + delay) / sigma  # a poll's window of "found in time", in sigmas
    best = math.inf
    for first in range(-150, 200):
        for fine in range(0, 16):
            polls = [first / 50.0 + k * width for k in range(fine + 1)]
            while polls[-1] < 6.0:
                polls.append(polls[-1] + math.log(2.0) / sigma)
            found, cost, previous = 0.0, 1.0, -math.inf
            for k, at in enumerate(polls):
                found += unit.cdf(at) - unit.cdf(max(previous, at - width))
                cost += 1.0 - unit.cdf(at) if k + 1 < len(polls) else 0.0
                previous = at
            if found >= 0.5:
                best = min(best, cost)
    return 2.0 + best


def _sigma(c: dict[str, Any]) -> float:
    return float(str(c["latency"]).rsplit(",", 1)[1])


def _medians_met(c: dict[str, Any]) -> bool:
    return bool(
        c["status_calls_median_warm"] <= 1.5
        and c["detection_ratio_median_warm"] <= 0.10
        and c["lost"] == 0
    )


def _latency_met(c: dict[str, Any]) -> bool:
    return _medians_met(c) and bool(c["api_calls_per_job"] <= 3.2)


def _section(results: list[dict[str, Any]], seconds: float) -> Section:
    rated = [c for c in results if c["kind"] != "latency"]
    timed = [c for c in results if c["kind"] == "latency"]
    rate_table = Table(
        "Rate learning: measured (bound) from the server's log; nominal seconds",
        (
            "case",
            "server",
            "declared",
            "N",
            "429s first window",
            "429s after",
            "makespan / bound",
            "done",
            "learned",
            "",
        ),
        tuple(
            (
                c["label"],
                f"{c['real']} per {c['window_s']:g} s, {c['limiter']}",
                c["declared"],
                c["jobs"],
                f"{c['http_429_first_window']} ({_bound_429(c, 0)})",
                f"{c['http_429_after']} ({_bound_429(c, 1)})",
                f"{c['ratio']:.2f} (<= {_rate_bounds(c)[2]:g})",
                f"{c['completed']}/{c['jobs']}",
                _learned(c),
                "met" if _rate_met(c) else "**missed**",
            )
            for c in rated
        ),
    )
    latency_table = Table(
        f"Polling by status with the latency prior (10 s) right or 5x off: after the first "
        f"{WARM_UP} completions",
        (
            "case",
            "job latency",
            "N",
            "status calls/job, median (<= 1.5)",
            "detection delay, median (<= 10 %)",
            "API calls/job (<= 3.2)",
            "least any schedule needs at this spread",
            "done",
            "",
        ),
        tuple(
            (
                c["label"],
                c["latency"],
                f"{c['jobs']} ({c['measured_jobs']} measured)",
                c["status_calls_median_warm"],
                f"{100 * c['detection_ratio_median_warm']:.1f} %",
                c["api_calls_per_job"],
                f"{status_floor(_sigma(c)):.2f}",
                f"{c['completed']}/{c['jobs']}",
                "met" if _latency_met(c) else "**missed**",
            )
            for c in timed
        ),
    )
    targets = []
    for name, kind, pick in (
        ("declared limit 3x too loose", "loose", lambda c: c["label"] == "declared 3x"),
        ("declared limit 10x too loose (3x's bounds)", "loose",
         lambda c: c["label"] == "declared 10x"),
        ("a 6 s server window under a declared minute", "loose",
         lambda c: c["label"].startswith("20 per 6 s")),
        ("`auto` (N >= 3R)", "auto", lambda c: True),
    ):  # fmt: skip
        chosen = [c for c in rated if c["kind"] == kind and pick(c)]
        if chosen:
            targets.append(
                Target(
                    name,
                    "429s <= 3 per run; <= 1.3 x bound"
                    if kind == "auto"
                    else "429s <= (declared - real) + 2 first window, <= 2 after; "
                    "<= 1.15 x bound; none lost",
                    "; ".join(
                        f"{c['limiter']}: {c['http_429_first_window']}+{c['http_429_after']} "
                        f"429s, {c['ratio']:.2f} x, {c['completed']}/{c['jobs']}"
                        for c in chosen
                    ),
                    all(_rate_met(c) for c in chosen),
                )
            )
    if timed:
        targets.append(
            Target(
                "polling with the prior right or 5x off (status path)",
                "<= 1.5 status calls/job and <= 10 % delay (medians, after 5 completions)",
                "; ".join(
                    f"{c['label']}: {c['status_calls_median_warm']:g}, "
                    f"{100 * c['detection_ratio_median_warm']:.1f} %"
                    for c in timed
                ),
                all(_medians_met(c) for c in timed),
            )
        )
        targets.append(
            Target(
                "API calls per job on the status path",
                "<= 3.2 (least any schedule needs: "
                + ", ".join(
                    f"{status_floor(sigma):.2f} at sigma {sigma:g}"
                    for sigma in sorted({_sigma(c) for c in timed}, reverse=True)
                )
                + ")",
                "; ".join(f"{c['label']}: {c['api_calls_per_job']:.2f}" for c in timed),
                all(c["api_calls_per_job"] <= 3.2 for c in timed),
            )
        )
    minute = 60 * min((c["time_scale"] for c in rated), default=LEARN_SCALE)
    notes = (
        "The bound is the real limit's (`floor((N - 1) / R) x W + L`), whatever was declared. "
        "A reset hint truncated to the second is waited past by one true second, so a learned "
        "window is the server's plus up to one second: at this scale (a nominal minute of "
        f"{minute:g} s) that is up to 1/{minute:g} of a window, against 1/60 at Segmind's "
        "real minute. The 20-per-6-s case runs unscaled.",
        '"Learned" is what the run wrote to OUT/.runner for the next run: calls per window '
        '(real seconds), or "-" when no 429 taught anything.',
        "The latency cases have no server limit (the limit declared right is not in question "
        "here); their status calls and delays are counted over the jobs submitted after the "
        f'first {WARM_UP} completions were noticed ("measured"), API calls over every job. '
        "The runner polls them by status (a remote host), so a job costs at least three calls; "
        '"least any schedule needs" is the fewest calls per job with which any poll schedule '
        "(a first poll, 10 % steps, then doubling) finds half the jobs within 10 % of their "
        "latency at that lognormal spread: the issue's 3.2 is reachable at a narrow spread, "
        "not at the emulator's sigma of 0.25.",
    )
    return Section(
        key="learn",
        title="7. Pacing that learns the server (issue #12)",
        intro=(__doc__ or "").split("\n\n", 1)[1],
        tables=(rate_table, latency_table),
        targets=tuple(targets),
        notes=notes,
        figures={"cases": results},
        seconds=seconds,
    )


def _bound_429(c: dict[str, Any], which: int) -> str:
    if c["kind"] == "auto":
        return "<= 3 in all"
    return f"<= {_rate_bounds(c)[which]}"


def _learned(c: dict[str, Any]) -> str:
    if not c["learned"] or c["learned_limit"] is None:
        return "-"
    return f"{c['learned_limit']} per {c['learned_window_s']:g} s"
