"""The plan of a manifest: jobs, images and estimated credits, with no request sent. Pure.

`make_plan` counts by arithmetic over the sweep units (`runner.sweep.tally`),
so a manifest of a million jobs plans in about the time of a small one. Two
estimates are derived from the counts:

- the shortest possible duration at the budget's rate: with R calls allowed
  per minute and N calls to make, the last call can go out no earlier than
  ``ceil(N / R) - 1`` full minutes after the first, and finishes about one
  latency (~10 s for this model) later;
- how much of the run fits under `max_credits`, taking jobs in expansion
  order, as the credit guard reserves them.

Credits are integer micro-dollars (`runner.money.Micros`): the sweep's USD
tallies become Micros as they come in, and USD again only in `plan_json`
and the text.

`render_text` and `plan_json` turn a Plan into what `runner plan` prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

from runner.manifest import Manifest
from runner.money import Micros, format_usd, maybe_micros, micros, to_usd
from runner.sweep import (
    Space,
    Tally,
    fit_in,
    spaces,
    tally,
    tally_files,
    tally_subset,
)

LATENCY_S: Final = 10.0
"""Typical seconds from submit to a finished image (the vendor page shows ~10.3 s)."""

CALLS_PER_JOB_ALL: Final = 3
"""Rate-counted calls per v2 job when every call counts: submit, one poll, the result."""


@dataclass(frozen=True, slots=True)
class PromptPlan:
    """One prompt's share: jobs, images (sum of n) and estimated credits in µ$."""

    prompt_id: str
    jobs: int
    images: int
    credits: Micros


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run of the manifest would do. Credits in µ$, durations in seconds.

    `rate_calls` is the number of calls the rate limit counts (jobs, or
    jobs x 3 with `rate_scope: all` on v2). `fits` is None without a
    `max_credits`; otherwise `jobs_within_budget` / `credits_within_budget`
    are the jobs, in expansion order, that fit under it.
    """

    manifest: str
    name: str
    model: str
    endpoint: str
    prompts: tuple[PromptPlan, ...]
    jobs: int
    images: int
    credits: Micros
    requests_per_minute: int | Literal["auto"]  # auto: learned at run time
    rate_scope: Literal["submit", "all"]
    rate_calls: int
    min_duration_s: float
    max_credits: Micros | None
    fits: bool | None
    jobs_within_budget: int | None
    credits_within_budget: Micros | None

    @property
    def credits_usd(self) -> float:
        """The estimated credits in USD (for people and the Python API)."""
        return to_usd(self.credits)


def shortest_duration(calls: int, per_minute: int, latency_s: float = LATENCY_S) -> float:
    """Seconds, at best, to make `calls` rate-limited calls at `per_minute` and finish the last."""
    if calls <= 0:
        return 0.0
    return (math.ceil(calls / per_minute) - 1) * 60.0 + latency_s


def make_plan(
    manifest: Manifest,
    *,
    rpm: int | Literal["auto"] | None = None,
    max_credits: float | None = None,
) -> Plan:
    """Plan `manifest`; `rpm` and `max_credits` (USD) override its budget (as the CLI flags do)."""
    budget = manifest.budget
    per_minute = rpm if rpm is not None else budget.requests_per_minute
    cap = maybe_micros(max_credits if max_credits is not None else budget.max_credits)
    cap_usd = None if cap is None else to_usd(cap)
    # A subset (--filter/--limit) is walked job by job; the whole manifest by arithmetic,
    # streaming the prompts of a prompts_from file (one row for the file, not one each).
    walked = (
        tally_subset(manifest, cap_usd)
        if manifest.subset is not None
        else tally_files(manifest, cap_usd)
        if manifest.prompt_files
        else None
    )
    per_prompt = (
        [] if walked is not None else [(sp, tally(manifest, sp)) for sp in spaces(manifest)]
    )
    rows = walked.prompts if walked is not None else tuple((s.prompt.id, t) for s, t in per_prompt)
    total = sum((t for _, t in rows), Tally())
    per_job = 1
    if budget.rate_scope == "all" and manifest.api.endpoint == "v2":
        per_job = CALLS_PER_JOB_ALL
    calls = total.jobs * per_job
    credits = micros(total.credits)
    fits = within_jobs = within_credits = None
    if cap is not None:
        fits = credits <= cap
        within_jobs, within_credits = (
            (total.jobs, credits)
            if fits
            else (walked.within_jobs, micros(walked.within_credits))
            if walked is not None
            else _within(manifest, per_prompt, cap)
        )
    return Plan(
        manifest=manifest.path,
        name=manifest.name,
        model=manifest.model,
        endpoint=manifest.api.endpoint,
        prompts=tuple(PromptPlan(pid, t.jobs, t.images, micros(t.credits)) for pid, t in rows),
        jobs=total.jobs,
        images=total.images,
        credits=credits,
        requests_per_minute=per_minute,
        rate_scope=budget.rate_scope,
        rate_calls=calls,
        # Under auto the rate is learned at run time: only the latency is known.
        min_duration_s=LATENCY_S if per_minute == "auto" else shortest_duration(calls, per_minute),
        max_credits=cap,
        fits=fits,
        jobs_within_budget=within_jobs,
        credits_within_budget=within_credits,
    )


def _within(
    manifest: Manifest, per_prompt: list[tuple[Space, Tally]], cap: Micros
) -> tuple[int, Micros]:
    """Jobs and µ$, in expansion order, before the first job that would pass `cap` (µ$).

    Whole prompts are added by their tallies; in the prompt where the cap
    falls, `runner.sweep.fit_in` finds the cut by arithmetic.
    """
    jobs, spent = 0, 0
    for space, t in per_prompt:
        share = micros(t.credits)
        if spent + share <= cap:
            jobs, spent = jobs + t.jobs, spent + share
            continue
        fits, cost = fit_in(manifest, space, Micros(cap - spent))
        return jobs + fits, Micros(spent + cost)
    return jobs, Micros(spent)


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as a JSON-ready dict (`runner plan --json`)."""
    return {
        "manifest": plan.manifest,
        "name": plan.name,
        "model": plan.model,
        "endpoint": plan.endpoint,
        "prompts": [
            {"id": p.prompt_id, "jobs": p.jobs, "images": p.images, "credits": to_usd(p.credits)}
            for p in plan.prompts
        ],
        "total": {"jobs": plan.jobs, "images": plan.images, "credits": to_usd(plan.credits)},
        "rate": {
            "requests_per_minute": plan.requests_per_minute,
            "scope": plan.rate_scope,
            "calls": plan.rate_calls,
            "min_duration_s": plan.min_duration_s,
            "latency_s": LATENCY_S,
        },
        "budget": {
            "max_credits": None if plan.max_credits is None else to_usd(plan.max_credits),
            "fits": plan.fits,
            "jobs_within": plan.jobs_within_budget,
            "credits_within": (
                None if plan.credits_within_budget is None else to_usd(plan.credits_within_budget)
            ),
        },
        "estimate": "credits from the price table (USD per image); duration is a lower bound",
    }


def render_text(plan: Plan) -> str:
    """The plan as the table `runner plan` prints."""
    rows = [("prompt", "jobs", "images", "est. credits")]
    rows += [(p.prompt_id, f"{p.jobs:,}", f"{p.images:,}", usd(p.credits)) for p in plan.prompts]
    rows.append(("total", f"{plan.jobs:,}", f"{plan.images:,}", usd(plan.credits)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        f"plan for {plan.manifest} ({plan.name}): model {plan.model}, endpoint {plan.endpoint}",
        "",
    ]
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    scope = "submits" if plan.rate_scope == "submit" else "every API call"
    rpm, calls = plan.requests_per_minute, plan.rate_calls
    if rpm == "auto":
        lines += [
            "",
            f"rate:     learned at run time (auto) counting {scope}: {calls:,} calls",
            f"duration: at least ~{duration(plan.min_duration_s)} (the latency; the rate"
            " is not known before the run)",
        ]
    else:
        lines += [
            "",
            f"rate:     {rpm:,} requests/minute counting {scope}: {calls:,} calls",
            f"duration: at least ~{duration(plan.min_duration_s)} (estimate: "
            f"(ceil({calls:,} / {rpm:,}) - 1) x 60 s + ~{LATENCY_S:.0f} s latency)",
        ]
    if plan.max_credits is None:
        lines.append(
            f"budget:   no max_credits: the run may spend the estimated {usd(plan.credits)}"
            " (set budget.max_credits or --max-credits to cap it)"
        )
    elif plan.fits:
        lines.append(f"budget:   fits under {usd(plan.max_credits)} (est. {usd(plan.credits)})")
    else:
        lines.append(
            f"budget:   does NOT fit under {usd(plan.max_credits)} (est. {usd(plan.credits)}):"
            f" the first {plan.jobs_within_budget or 0:,} jobs fit"
            f" ({usd(plan.credits_within_budget or 0)}); the run would stop there"
        )
    lines.append("credits are estimates from the price table (USD per image x n)")
    return "\n".join(lines) + "\n"


def usd(amount: int) -> str:
    """`amount` µ$ as text: runner.money.format_usd, the one formatter."""
    return format_usd(amount)


def duration(seconds: float) -> str:
    """A short human duration: `45 s`, `2 min 10 s`, `3 h 05 min`, `2 d 4 h`."""
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
