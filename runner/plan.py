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

`render_text` and `plan_json` turn a Plan into what `runner plan` prints.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Final, Literal

from runner.manifest import Manifest
from runner.sweep import Space, Tally, assignments, job_credits, spaces, tally

LATENCY_S: Final = 10.0
"""Typical seconds from submit to a finished image (the vendor page shows ~10.3 s)."""

CALLS_PER_JOB_ALL: Final = 3
"""Rate-counted calls per v2 job when every call counts: submit, one poll, the result."""

_EPSILON = 1e-9  # USD; keeps float sums like 0.1 + 0.2 from failing an exact budget


@dataclass(frozen=True, slots=True)
class PromptPlan:
    """One prompt's share: jobs, images (sum of n) and estimated credits in USD."""

    prompt_id: str
    jobs: int
    images: int
    credits: float


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run of the manifest would do. Credits in USD, durations in seconds.

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
    credits: float
    requests_per_minute: int
    rate_scope: Literal["submit", "all"]
    rate_calls: int
    min_duration_s: float
    max_credits: float | None
    fits: bool | None
    jobs_within_budget: int | None
    credits_within_budget: float | None


def shortest_duration(calls: int, per_minute: int, latency_s: float = LATENCY_S) -> float:
    """Seconds, at best, to make `calls` rate-limited calls at `per_minute` and finish the last."""
    if calls <= 0:
        return 0.0
    return (math.ceil(calls / per_minute) - 1) * 60.0 + latency_s


def make_plan(
    manifest: Manifest, *, rpm: int | None = None, max_credits: float | None = None
) -> Plan:
    """Plan `manifest`; `rpm` and `max_credits` override its budget (as the CLI flags do)."""
    per_prompt = [(space, tally(manifest, space)) for space in spaces(manifest)]
    total = sum((t for _, t in per_prompt), Tally())
    budget = manifest.budget
    per_minute = rpm if rpm is not None else budget.requests_per_minute
    cap = max_credits if max_credits is not None else budget.max_credits
    per_job = 1
    if budget.rate_scope == "all" and manifest.api.endpoint == "v2":
        per_job = CALLS_PER_JOB_ALL
    calls = total.jobs * per_job
    fits = within_jobs = within_credits = None
    if cap is not None:
        fits = total.credits <= cap + _EPSILON
        within_jobs, within_credits = (
            (total.jobs, total.credits) if fits else _within(manifest, per_prompt, cap)
        )
    return Plan(
        manifest=manifest.path,
        name=manifest.name,
        model=manifest.model,
        endpoint=manifest.api.endpoint,
        prompts=tuple(
            PromptPlan(space.prompt.id, t.jobs, t.images, t.credits) for space, t in per_prompt
        ),
        jobs=total.jobs,
        images=total.images,
        credits=total.credits,
        requests_per_minute=per_minute,
        rate_scope=budget.rate_scope,
        rate_calls=calls,
        min_duration_s=shortest_duration(calls, per_minute),
        max_credits=cap,
        fits=fits,
        jobs_within_budget=within_jobs,
        credits_within_budget=within_credits,
    )


def _within(
    manifest: Manifest, per_prompt: list[tuple[Space, Tally]], cap: float
) -> tuple[int, float]:
    """Jobs and credits, in expansion order, before the first job that would pass `cap`.

    Whole prompts are added by their tallies; only the prompt where the cap
    falls is walked job by job.
    """
    # Integer micro-dollars: a million float additions of $0.02 drift below
    # the cap and would count one job too few.
    def micro(usd: float) -> int:
        return round(usd * 1_000_000)

    limit = micro(cap)
    jobs, spent = 0, 0
    for space, t in per_prompt:
        if spent + micro(t.credits) <= limit:
            jobs, spent = jobs + t.jobs, spent + micro(t.credits)
            continue
        for values in assignments(space):
            cost = micro(job_credits(manifest, values))
            for _ in itertools.repeat(None, manifest.repeat):
                if spent + cost > limit:
                    return jobs, spent / 1_000_000
                jobs, spent = jobs + 1, spent + cost
    return jobs, spent / 1_000_000


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as a JSON-ready dict (`runner plan --json`)."""
    return {
        "manifest": plan.manifest,
        "name": plan.name,
        "model": plan.model,
        "endpoint": plan.endpoint,
        "prompts": [
            {"id": p.prompt_id, "jobs": p.jobs, "images": p.images, "credits": round(p.credits, 6)}
            for p in plan.prompts
        ],
        "total": {"jobs": plan.jobs, "images": plan.images, "credits": round(plan.credits, 6)},
        "rate": {
            "requests_per_minute": plan.requests_per_minute,
            "scope": plan.rate_scope,
            "calls": plan.rate_calls,
            "min_duration_s": plan.min_duration_s,
            "latency_s": LATENCY_S,
        },
        "budget": {
            "max_credits": plan.max_credits,
            "fits": plan.fits,
            "jobs_within": plan.jobs_within_budget,
            "credits_within": (
                None if plan.credits_within_budget is None else round(plan.credits_within_budget, 6)
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
            f" ({usd(plan.credits_within_budget or 0.0)}); the run would stop there"
        )
    lines.append("credits are estimates from the price table (USD per image x n)")
    return "\n".join(lines) + "\n"


def usd(amount: float) -> str:
    """Dollars with cents, or with 4 decimals when cents would hide a fraction."""
    amount = round(amount, 6)  # float sums of many prices carry noise in the last digits
    if abs(amount * 100 - round(amount * 100)) < 1e-6:
        return f"${amount:,.2f}"
    return f"${amount:,.4f}"


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
