"""The run's record in Redis: created by its first worker, checked by every other.

The first worker to join creates, in one MULTI under WATCH, the run's
`meta` hash (job count and digest, budget, manifest, layout), its budget in
`credits`, and the job stream with one entry per job and its consumer group.
Every later worker compares its own expansion of the manifest (a digest of
every job key), budget and key layout with the record and is refused at
start (exit 2) when they differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from runner.clock import WallClock, wall_time
from runner.coordination.client import RedisLink, Unreachable
from runner.coordination.identity import GROUP, LAYOUT, RUNS_INDEX, RunKeys
from runner.errors import UsageError
from runner.jobs import Job
from runner.manifest import Manifest
from runner.money import Micros, format_usd, parse_micros


def jobs_digest(jobs: Sequence[Job]) -> str:
    """A digest of the expansion (every job key in order): workers must agree on it."""
    digest = hashlib.sha256()
    for job in jobs:
        digest.update(job.key.encode("ascii"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


async def init_run(
    link: RedisLink,
    keys: RunKeys,
    manifest: Manifest,
    *,
    run_id: str | None,
    jobs: Sequence[Job],
    budget: Micros | None,
    wall: WallClock = wall_time,
) -> None:
    """Create the run's record (meta, the job stream and its group) or check this worker
    agrees with it: same jobs, budget (µ$) and key layout. UsageError when not."""
    fields = {
        "total": str(len(jobs)),
        "jobs_digest": jobs_digest(jobs),
        "budget": "" if budget is None else str(budget),
        "layout": LAYOUT,
        "manifest_sha256": manifest.sha256,
        "name": manifest.name,
        "path": manifest.path,
        "run_id": run_id or "",
        "created": f"{wall():.3f}",
    }

    def create(pipe: Any) -> None:
        # WATCH meta (redis-py's transaction): the first worker creates the
        # run (its record, the job stream and its group) in one MULTI; a
        # second one starting at the same moment retries and finds it.
        if pipe.exists(keys.meta):
            return
        pipe.multi()
        pipe.hset(keys.meta, mapping=fields)
        if fields["budget"]:
            pipe.hset(keys.credits, "budget", fields["budget"])
        pipe.delete(keys.jobs)
        pipe.xgroup_create(keys.jobs, GROUP, "0", mkstream=True)
        for job in jobs:
            pipe.xadd(keys.jobs, {"job": str(job.index)})
        pipe.sadd(RUNS_INDEX, keys.run)

    def init() -> dict[str, str]:
        client: Any = link.client
        client.transaction(create, keys.meta)
        meta: dict[str, str] = client.hgetall(keys.meta)
        return meta

    try:
        meta = await link.run(init)
    except Unreachable as err:
        raise UsageError(f"{err}; check that it is up, then run again") from None
    where = f"run {keys.run} on {link.url}"
    if meta.get("layout") != LAYOUT:
        raise UsageError(
            f"{where} was made by another runner version (layout {meta.get('layout')!r}, "
            f"this one {LAYOUT!r}): run the same runner version everywhere, or use another --run-id"
        )
    if (meta.get("total"), meta.get("jobs_digest")) != (fields["total"], fields["jobs_digest"]):
        raise UsageError(
            f"{where} has {meta.get('total')} jobs that differ from this worker's "
            f"{fields['total']}: every worker needs the same manifest and input images "
            "(and runner version); or use another --run-id"
        )
    if meta.get("budget", "") != fields["budget"]:

        def usd(micro: str) -> str:
            return "no cap" if not micro else format_usd(parse_micros(micro))

        raise UsageError(
            f"{where} has a budget of {usd(meta.get('budget', ''))}; this worker asks for "
            f"{usd(fields['budget'])}: give every worker the same --max-credits "
            "(or budget.max_credits), or use another --run-id"
        )
