"""`runner status --coordinator URL`: each shared run's progress, across its workers.

Read-only: a snapshot of the run's keys (see docs/distributed.md), taken
while workers go on. Without `--run-id` (or a manifest) every run this
Redis knows is shown.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Final

from runner.coordination.client import RedisLink
from runner.coordination.identity import GROUP, POOL, RUNS_INDEX, RunKeys
from runner.coordination.session import DEFAULT_LEASE_S
from runner.errors import UsageError
from runner.money import Micros, format_usd, parse_micros, to_usd

_PENDING = 100_000  # XPENDING reads at most this many entries: a run's jobs in flight


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker of a run. Times are seconds (ages against Redis's clock)."""

    worker: str
    host: str
    pid: int | None
    out: str
    leased: int
    done: int
    seen_s_ago: float | None
    ended: bool

    @property
    def state(self) -> str:
        """alive, ended, or silent (no heartbeat: dead, or stalled)."""
        if self.ended:
            return "ended"
        return "alive" if self.seen_s_ago is not None else "silent"


@dataclass(frozen=True, slots=True)
class RunStatus:
    """A shared run's figures. Money in USD."""

    run: str
    name: str
    manifest: str
    manifest_sha256: str
    run_id: str
    total: int
    claimed: int
    completed: int
    failed: int
    expired: int
    leased: int
    lapsed: int
    returned: int
    takeovers: int
    budget: Micros | None
    spent: Micros
    reserved: Micros
    ambiguous: Micros
    stopped: str | None
    workers: tuple[WorkerStatus, ...]

    @property
    def done(self) -> int:
        """Jobs in a final state."""
        return self.completed + self.failed + self.expired

    @property
    def finished(self) -> bool:
        """Every job is in a final state."""
        return self.done >= self.total


def _int(value: Any) -> int:
    return int(value) if value not in (None, "") else 0


def _micros(value: Any) -> Micros:
    """A credits field of the run's hash (µ$ as text; absent: 0)."""
    return parse_micros(value) if value not in (None, "") else Micros(0)


def run_json(status: RunStatus) -> dict[str, Any]:
    """`status` as JSON-ready data: money as ``*_usd`` floats, as `status --json` prints."""
    doc: dict[str, Any] = {}
    for name, value in asdict(status).items():
        if name in _MONEY:
            doc[f"{name}_usd"] = None if value is None else to_usd(value)
        else:
            doc[name] = value
    return doc


_MONEY: Final = frozenset({"budget", "spent", "reserved", "ambiguous"})


def _read(link: RedisLink, run: str) -> RunStatus | None:
    """Blocking: one run's snapshot, or None when Redis has no such run."""
    # Replies are text (decode_responses); redis-py's types cannot say so.
    client: Any = link.client
    keys = RunKeys(run)
    meta = client.hgetall(keys.meta)
    if not meta:
        return None
    seconds, microseconds = client.time()
    now = float(seconds) + float(microseconds) / 1e6  # Redis's clock, not money
    infos = {w: json.loads(raw) for w, raw in client.hgetall(keys.workers).items()}
    # What the job stream's consumer group holds: entries in flight, by
    # consumer, with their idle time (a lease); a job neither final nor
    # pending was never claimed.
    pending = client.xpending_range(keys.jobs, GROUP, "-", "+", _PENDING)
    owners: dict[str, int] = {}
    leased = lapsed = returned = 0
    for p in pending:
        owner = p["consumer"]
        lease = float(infos.get(owner, {}).get("lease") or DEFAULT_LEASE_S)
        if owner == POOL:
            returned += 1
        elif p["time_since_delivered"] >= lease * 1000:
            lapsed += 1
        else:
            leased += 1
            owners[owner] = owners.get(owner, 0) + 1
    finished_by: dict[str, int] = {}
    for raw in client.hvals(keys.done):
        who = json.loads(raw).get("worker", "")
        finished_by[who] = finished_by.get(who, 0) + 1
    seen = {w: float(t) for w, t in client.hgetall(keys.seen).items()}
    workers: list[WorkerStatus] = []
    for worker, info in sorted(infos.items()):
        age = now - seen[worker] if worker in seen else None
        # A worker beats every lease/3: silent once a whole lease passed
        # without a beat (its jobs are lapsing). Its own lease, as it joined.
        lease = float(info.get("lease") or DEFAULT_LEASE_S)
        workers.append(
            WorkerStatus(
                worker=worker,
                host=str(info.get("host", "?")),
                pid=info.get("pid"),
                out=str(info.get("out", "")),
                leased=owners.get(worker, 0),
                done=finished_by.get(worker, 0),
                seen_s_ago=None if age is None or age > lease else age,
                ended="ended" in info,
            )
        )
    total = _int(meta.get("total"))
    done = client.hlen(keys.done)
    credits = client.hgetall(keys.credits)
    budget = credits.get("budget")
    return RunStatus(
        run=run,
        name=meta.get("name", "?"),
        manifest=meta.get("path", "?"),
        manifest_sha256=meta.get("manifest_sha256", ""),
        run_id=meta.get("run_id", ""),
        total=total,
        claimed=min(total, done + len(pending)),
        completed=_int(meta.get("completed")),
        failed=_int(meta.get("failed")),
        expired=_int(meta.get("expired")),
        leased=leased,
        lapsed=lapsed,
        returned=returned,
        takeovers=_int(meta.get("takeovers")),
        budget=_micros(budget) if budget else None,
        spent=_micros(credits.get("spent")),
        reserved=_micros(credits.get("reserved")),
        ambiguous=_micros(credits.get("ambiguous")),
        stopped=credits.get("stopped") or None,
        workers=tuple(workers),
    )


def coordinator_status(url: str, run: str | None = None) -> list[RunStatus]:
    """Every run this coordinator knows (or the one whose id is `run`).

    A worker is shown silent when a whole lease (its `coordinator.lease`)
    passed without a heartbeat. Raises UsageError when Redis cannot be
    reached or holds no such run.
    """
    link = RedisLink.connect(url)
    try:
        client: Any = link.client
        runs = [run] if run is not None else sorted(client.smembers(RUNS_INDEX))
        found = [s for s in (_read(link, r) for r in runs) if s is not None]
    finally:
        link.close()
    if run is not None and not found:
        raise UsageError(
            f"the coordinator at {link.url} has no run {run}: check --run-id and the manifest"
        )
    return found


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f} s ago" if seconds >= 1 else "now"


def render_status(runs: list[RunStatus], url: str) -> str:
    """A text report of `runs` for the terminal."""
    if not runs:
        return f"{url}: no runs\n"
    lines: list[str] = []
    for s in runs:
        ident = f"run {s.run}" + (f" (--run-id {s.run_id})" if s.run_id else "")
        lines.append(f"{ident}: {s.name}, {s.manifest} (sha256 {s.manifest_sha256[:12]})")
        verdict = "finished" if s.finished else "in progress"
        lines.append(
            f"  jobs: {s.done} of {s.total} done ({verdict}): {s.completed} completed, "
            f"{s.failed} failed, {s.expired} expired; {s.leased} in flight, "
            f"{s.lapsed} lapsed, {s.returned} handed back, "
            f"{max(0, s.total - s.claimed)} never claimed; {s.takeovers} taken over"
        )
        budget = "no cap" if s.budget is None else format_usd(s.budget)
        money = (
            f"  credits: {format_usd(s.spent)} spent, {format_usd(s.reserved)} reserved, "
            f"{format_usd(s.ambiguous)} ambiguous of {budget}"
        )
        if s.stopped:
            money += f"; stopped: {s.stopped}"
        lines.append(money)
        for w in s.workers:
            lines.append(
                f"  worker {w.worker} ({w.state}, seen {_age(w.seen_s_ago)}): "
                f"{w.done} done, {w.leased} leased; out {w.out}"
            )
        lines.append("")
    return "\n".join(lines)


def status_text(
    url: str, *, run_id: str | None = None, manifest: str | None = None, as_json: bool = False
) -> str:
    """What `runner status --coordinator URL` prints: text, or JSON with `as_json`.

    `manifest` (a path) and `run_id` narrow the runs shown to that run.
    Raises UsageError (no URL, unreachable, no such run, unreadable manifest).
    """

    from runner.coordination.identity import check_url, run_hash
    from runner.redact import redact_url

    if not url:
        raise UsageError(
            "--coordinator needs a URL (or $RUNNER_COORDINATOR), e.g. redis://127.0.0.1:6379/0"
        )
    check_url(url)
    run = None
    if manifest is not None:
        from runner.manifest import load_manifest

        run = run_hash(load_manifest(manifest).sha256, run_id)
    runs = coordinator_status(url, run)
    if run is None and run_id is not None:
        runs = [s for s in runs if s.run_id == run_id]
        if not runs:
            raise UsageError(f"the coordinator at {redact_url(url)} has no run --run-id {run_id}")
    if as_json:
        doc = {"coordinator": redact_url(url), "runs": [run_json(s) for s in runs]}
        return json.dumps(doc, indent=2) + "\n"
    return render_status(runs, redact_url(url))
