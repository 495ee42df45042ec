"""The model of ``OUT/summary.json`` (versioned by ``schema_version``); summary.py builds it.

Pipelines read this file: fields are added, never renamed or removed,
within one schema version. Money is USD, durations seconds, stamps
ISO-8601 UTC; summary.py's docstring says what each credit figure means.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobCounts(_Model):
    """Jobs in the ledger after the run, by state and in three plain groups."""

    total: int = Field(ge=0)
    by_state: dict[str, int] = Field(description="Every ledger state, zeros included.")
    done: int = Field(ge=0, description="Completed: images and sidecars written.")
    failed: int = Field(ge=0, description="Failed or expired.")
    not_run: int = Field(ge=0, description="Planned, or left in flight (resumable).")


class ImageCounts(_Model):
    """Image files (one job makes n of them)."""

    total: int = Field(ge=0, description="Files of completed jobs in the ledger.")
    this_run: int | None = Field(default=None, ge=0, description="Written by this run.")


class CreditTotals(_Model):
    """USD. See the module docstring for what each figure means."""

    estimated_usd: float = Field(ge=0)
    charged_usd: float = Field(ge=0)
    charged_jobs: int = Field(ge=0)
    spent_usd: float = Field(ge=0)
    ambiguous_submits: int = Field(ge=0)
    possible_duplicate_usd: float = Field(ge=0)
    spent_this_run_usd: float | None = None
    reserved_usd: float | None = Field(
        default=None, description="Still held by the credit guard when the run ended."
    )
    ambiguous_this_run_usd: float | None = None
    billed_failures: int = Field(
        default=0,
        ge=0,
        description="Failures the server billed (a result that could not be used), every run.",
    )
    billed_failures_usd: float = Field(default=0.0, ge=0, description="What they cost.")


class RateCounters(_Model):
    """The server's rate limit as the run learned it (issue #12)."""

    limit: int | None = Field(description="Calls per window (null: no limit known).")
    window_s: float = Field(gt=0, description="The window's length, real seconds.")
    learned: bool = Field(description="A 429 taught it (else the declared or auto-grown belief).")
    rate_limited: int = Field(ge=0, description="429s on calls the limit counts.")
    declared: int | None = Field(description="requests_per_minute (null: auto).")


class RunCounters(_Model):
    """This run's counters, from the scheduler. `elapsed_s` is wall time in seconds."""

    started_at: str | None = None
    elapsed_s: float = Field(ge=0)
    planned: int | None = None
    completed: int = Field(ge=0)
    failed: int = Field(ge=0)
    skipped: int = Field(ge=0, description="Done by an earlier run.")
    cached: int = Field(
        default=0, ge=0, description="Served from the cache of finished jobs (--cache): no request."
    )
    expired: int = Field(ge=0)
    images: int = Field(ge=0)
    ambiguous: int = Field(ge=0, description="Submits whose answer was lost.")
    rate_limited: int = Field(ge=0, description="429 answers met.")
    retries: int = Field(ge=0)
    requests: dict[str, int] = Field(description="API calls made, by kind (submit, status, ...).")
    requests_total: int = Field(ge=0)
    stopped: str | None = Field(default=None, description="Why new submits stopped, if they did.")
    rate: RateCounters | None = Field(default=None, description="The learned rate limit.")
    price_surprises: list[str] = Field(
        default_factory=list, description="Each time the API charged more than the price table."
    )


class ExitInfo(_Model):
    """The exit code `runner run` returns and why."""

    code: int
    reason: str


class Failure(_Model):
    """A failed or expired job: which one, where it came from, and why."""

    key: str
    key8: str
    prompt_id: str
    state: Literal["failed", "expired"]
    reason: str
    label: str | None = None
    prompt: str | None = None
    params: dict[str, str | int] | None = None
    vars: dict[str, str] | None = None
    sweep: dict[str, str | int] | None = None
    repeat: int | None = None
    request_id: str | None = None
    attempts: int = Field(ge=0)
    ambiguous_submits: int = Field(ge=0)
    billed_usd: float = Field(default=0.0, ge=0, description="What its billed failures cost.")


class Backend(_Model):
    """The API the folder was made with."""

    name: str
    base_url: str


class ShardInfo(_Model):
    """The part of the manifest a `--shard K/N` run did, and the share of the budget it had."""

    index: int = Field(ge=1, description="K: this shard, counted from 1.")
    count: int = Field(ge=1, description="N: the number of shards.")
    budget: Literal["split", "full"] = Field(
        description="split: 1/N of max_credits and requests_per_minute; full: all of it."
    )


class MergeInfo(_Model):
    """The folders `runner merge` made this one of (OUT itself not counted)."""

    folders: int = Field(ge=1)
    shards: int | None = Field(
        default=None,
        ge=1,
        description="N when the folders were shards of one --shard K/N run (their summary.json "
        "say so), else null (a shared run's workers, or folders without a summary).",
    )


class Summary(_Model):
    """``OUT/summary.json``: what a run left in its folder."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="runner run summary")

    schema_version: Literal[1] = 1
    generated_at: str = Field(description="ISO-8601 UTC.")
    folder: str
    manifest: str | None = None
    shard: ShardInfo | None = Field(default=None, description="Set when the run was one shard.")
    merged: MergeInfo | None = Field(default=None, description="Set in a merged folder.")
    backend: Backend | None = None
    exit: ExitInfo | None = None
    jobs: JobCounts
    images: ImageCounts
    credits: CreditTotals
    run: RunCounters | None = None
    failures: list[Failure]
