"""Several workers, one run: the coordination of `runner run --coordinator redis://...`.

    identity.py    the run's keys (manifest sha256 + --run-id), the rate key
    client.py      the connection: redis-py's blocking client in worker threads; `Unreachable`
    scripts.py     the Lua scripts, only where no Redis primitive fits: rate admission, credits
    gate.py        SharedRateGate: the sliding-window log of rate.py, in Redis
    belief.py      the key's learned limit: quota.py's QuotaLearner replayed from one stream
    credits.py     SharedCreditGuard: reservations, settlements and the stop flag, in Redis
    handover.py    what a worker does with a claimed job, given its folder and the lease
    pool.py        the job pool on a Redis stream and consumer group: one worker's calls
    claims.py      ClaimSource: the scheduler's WorkSource over the pool
    record.py      the run's record: created (meta, job stream, group) or checked at join
    session.py     join_run: join or start the run, heartbeat (XCLAIM JUSTID), reconcile, leave
    status.py      `runner status --coordinator URL`: a run's progress across workers

Redis is the only coordinator: no network protocol of our own. What each
guarantee rests on is written in docs/distributed.md. Nothing outside this
package imports redis, and the single-process run never imports this package.
"""

from runner.coordination.identity import check_url, run_hash
from runner.coordination.session import (
    DEFAULT_LEASE_S,
    Coordination,
    CoordinatorSpec,
    join_run,
)
from runner.redact import redact_url  # re-exported: callers of the package name it here

__all__ = [
    "DEFAULT_LEASE_S",
    "Coordination",
    "CoordinatorSpec",
    "check_url",
    "join_run",
    "redact_url",
    "run_hash",
]
