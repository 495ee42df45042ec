"""`runner plan --provider segmind,xai`: one manifest planned for several providers, side by side.

Each provider loads the manifest with its own limits (runner.providers), so a
manifest one of them cannot run (n = 8 on Segmind) shows that provider's
load-time error in its row instead of a plan. Credits are the estimate of the
manifest's price table; durations the shortest the rate budget allows with
that provider's call shape (an xAI job is one synchronous call). No request
is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from typing import Any

from runner.errors import ManifestError, UsageError
from runner.money import to_usd
from runner.plan import Plan, make_plan, usd
from runner.providers import PROVIDERS

__all__ = ["ProviderPlan", "compare", "comparison_json", "parse_providers", "render_comparison"]


@dataclass(frozen=True, slots=True)
class ProviderPlan:
    """The plan of one provider, or why the manifest cannot run there (`problem`)."""

    provider: str
    plan: Plan | None
    problem: str | None = None


def parse_providers(text: str) -> tuple[str, ...]:
    """``segmind,xai`` as names, in order, without repeats. Raises UsageError for unknown ones."""
    names: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if name not in PROVIDERS:
            raise UsageError(
                f"--provider {text!r}: {name!r} is not a provider; use {' or '.join(PROVIDERS)}, "
                "or several separated by commas (segmind,xai)"
            )
        if name not in names:
            names.append(name)
    return tuple(names)


def compare(
    path: str | PathLike[str],
    providers: tuple[str, ...],
    *,
    rpm: int | None = None,
    max_credits: float | None = None,
) -> tuple[ProviderPlan, ...]:
    """Plan the manifest at `path` once per provider (in the order given)."""
    from runner.manifest import load_manifest

    rows: list[ProviderPlan] = []
    for name in providers:
        try:
            manifest = load_manifest(path, provider=name)
        except ManifestError as err:
            rows.append(ProviderPlan(name, None, str(err)))
            continue
        rows.append(ProviderPlan(name, make_plan(manifest, rpm=rpm, max_credits=max_credits)))
    return tuple(rows)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def render_comparison(rows: tuple[ProviderPlan, ...]) -> str:
    """A text table: jobs, images, endpoint, credits and shortest duration per provider."""
    plans = [r.plan for r in rows if r.plan is not None]
    credits = [p.credits for p in plans]
    durations = [p.min_duration_s for p in plans]
    # A mark only for a strict winner: a tie says nothing.
    cheapest = min(credits) if credits and credits.count(min(credits)) == 1 else None
    fastest = min(durations) if durations and durations.count(min(durations)) == 1 else None
    lines = [f"{'provider':<9} {'endpoint':<8} {'jobs':>7} {'images':>7} {'credits':>11} shortest"]
    for row in rows:
        plan = row.plan
        if plan is None:
            lines.append(f"{row.provider:<9} cannot run this manifest: {row.problem}")
            continue
        marks = []
        if plan.credits == cheapest and len(plans) > 1:
            marks.append("cheapest")
        if plan.min_duration_s == fastest and len(plans) > 1:
            marks.append("fastest")
        tail = f"  ({', '.join(marks)})" if marks else ""
        lines.append(
            f"{row.provider:<9} {plan.endpoint:<8} {plan.jobs:>7,} {plan.images:>7,} "
            f"{usd(plan.credits):>11} {_duration(plan.min_duration_s)}{tail}"
        )
    lines.append(
        "credits: the price table's estimate (xAI's answers then report the exact charge); "
        "shortest: at the budget's requests per minute"
    )
    return "\n".join(lines) + "\n"


def comparison_json(rows: tuple[ProviderPlan, ...]) -> dict[str, Any]:
    """The comparison as JSON-able values: one entry per provider."""
    out: list[dict[str, Any]] = []
    for row in rows:
        plan = row.plan
        if plan is None:
            out.append({"provider": row.provider, "ok": False, "problem": row.problem})
            continue
        out.append(
            {
                "provider": row.provider,
                "ok": True,
                "endpoint": plan.endpoint,
                "jobs": plan.jobs,
                "images": plan.images,
                "credits": to_usd(plan.credits),
                "rate_calls": plan.rate_calls,
                "min_duration_s": plan.min_duration_s,
            }
        )
    return {"providers": out}
