"""A run's job pool on a Redis stream: the blocking operations of one worker.

Every job of the manifest's expansion is one entry `{job: index}` of the
run's stream (`RunKeys.jobs`, written with the run's record, record.py);
every worker is one consumer of the group `GROUP`. Redis's own primitives:

    take a lapsed job   XAUTOCLAIM with min-idle = the lease: a dead worker's
                        job, or one handed back (held by `POOL`, idle since long)
    read a new job      XREADGROUP ... >, blocking (on its own connections)
                        at most until the first lease of another worker could lapse
    heartbeat           XCLAIM ... JUSTID of the entries held (session.py)
    request ids         `RunKeys.requests`, written before a submit's answer
                        is acted on
    final state         HSETNX on `RunKeys.done` (once, whoever is first), XACK
    wake-ups            `{wake}` and `{end}` entries: a job handed back, the run's
                        end (each reader passes the end on to the next)

Each method is one hop to Redis, run in a worker thread through
`RedisLink.run`; claims.py's ClaimSource decides what to do with what they
return.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass
from typing import Any, Final

from runner.coordination.client import BLOCK_MAX_S, RedisLink
from runner.coordination.identity import GROUP, POOL, RunKeys
from runner.resume import LeaseRecord

PENDING: Final = 10_000
"""XPENDING reads at most this many entries at once (a run's jobs in flight)."""
# A job handed back is made this many leases idle, so the next XAUTOCLAIM takes it.
_BACK_LEASES: Final = 1000


@dataclass(frozen=True, slots=True)
class Entry:
    """A job's stream entry as claimed: `taken` by XAUTOCLAIM or XCLAIM, not read new."""

    index: int
    entry: str
    taken: bool


@dataclass(frozen=True, slots=True)
class Pending:
    """A job in another worker's hands (or lapsed) after a stop. `idle_ms` its lease's age."""

    index: int
    entry: str
    idle_ms: int
    paid: bool  # its request id is known: re-attaching costs nothing
    submitting: bool  # its submit may be on the wire


def done_entry(state: str, worker: str, key: str, at: float, request_id: str | None) -> str:
    """The JSON a job's final state is recorded as (`at`: wall-clock epoch seconds)."""
    doc: dict[str, Any] = {"state": state, "worker": worker, "key": key, "at": round(at, 3)}
    if request_id:
        doc["request_id"] = request_id
    return json.dumps(doc)


def to_ms(seconds: float) -> int:
    """Seconds as whole milliseconds, at least 1 (Redis's idle times)."""
    return max(1, math.ceil(seconds * 1000))


class JobPool:
    """The run's stream as one worker (`worker`, a consumer) sees it. Blocking calls."""

    def __init__(self, link: RedisLink, keys: RunKeys, worker: str, lease: float) -> None:
        self._link = link
        self._keys = keys
        self._worker = worker
        self._lease = lease
        self.lease_ms = to_ms(lease)

    @property
    def _client(self) -> Any:
        # Replies are text (decode_responses); redis-py's types cannot say so.
        return self._link.client

    def head(self) -> str | None:
        """'gone' (the run's record vanished), the credit stop's reason, or None."""
        pipe = self._client.pipeline(transaction=False)
        pipe.exists(self._keys.meta)
        pipe.hget(self._keys.credits, "stopped")
        exists, stopped = pipe.execute()
        if not exists:
            return "gone"
        return str(stopped) if stopped else None

    def take_lapsed(self) -> Entry | str | None:
        """An entry idle for a lease (its worker died, or it was handed back), or None;
        'again' / 'end' when it was a wake-up / the run's end."""
        start = "0-0"
        while True:
            start, entries, *_ = self._client.xautoclaim(
                self._keys.jobs, GROUP, self._worker, self.lease_ms, start, count=1
            )
            for entry, fields in entries:
                if "job" in fields:
                    return Entry(int(fields["job"]), entry, taken=True)
                return self._control(entry, fields)
            if start == "0-0":
                return None

    def read(self, block_ms: int | None) -> Entry | str | None:
        """The next entry nobody read, waiting up to `block_ms` (None: not at all)."""
        client: Any = self._link.blocking if block_ms is not None else self._client
        got = client.xreadgroup(
            GROUP, self._worker, {self._keys.jobs: ">"}, count=1, block=block_ms
        )
        if not got:
            return None
        entry, fields = got[0][1][0]
        if "job" in fields:
            return Entry(int(fields["job"]), entry, taken=False)
        return self._control(entry, fields)

    def _control(self, entry: str, fields: dict[str, str]) -> str:
        """A wake-up or the run's end, read: drop it (pass the end on)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.xack(self._keys.jobs, GROUP, entry)
        pipe.xdel(self._keys.jobs, entry)
        pipe.execute()
        if "end" in fields and self.finished():
            # The next blocked reader wakes on this one, and passes it on too.
            self._client.xadd(self._keys.jobs, {"end": "1"})
            return "end"
        return "again"

    def finished(self) -> bool:
        """Every job of the run has its final state."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hlen(self._keys.done)
        pipe.hget(self._keys.meta, "total")
        done, total = pipe.execute()
        return int(done) >= int(total or 0)

    def until_lapse(self) -> int:
        """Milliseconds until the first lease of another worker could lapse (capped)."""
        pending = self._client.xpending_range(self._keys.jobs, GROUP, "-", "+", PENDING)
        wait = to_ms(min(self._lease, BLOCK_MAX_S))
        for p in pending:
            if p["consumer"] != self._worker:
                wait = min(wait, max(1, self.lease_ms - int(p["time_since_delivered"]) + 1))
        return wait

    def pending(self) -> list[Pending]:
        """Every job pending with some consumer and not final (after a stop)."""
        client = self._client
        pending = client.xpending_range(self._keys.jobs, GROUP, "-", "+", PENDING)
        if not pending:
            return []
        pipe = client.pipeline(transaction=False)
        for p in pending:
            pipe.xrange(self._keys.jobs, p["message_id"], p["message_id"])
        rows = [
            (int(found[0][1]["job"]), p["message_id"], int(p["time_since_delivered"]))
            for p, found in zip(pending, pipe.execute(), strict=True)
            if found and "job" in found[0][1]
        ]
        if not rows:
            return []
        names = [str(index) for index, _, _ in rows]
        records = client.hmget(self._keys.requests, names)
        finals = client.hmget(self._keys.done, names)
        out: list[Pending] = []
        for (index, entry, idle), raw, final in zip(rows, records, finals, strict=True):
            if final is None:
                record = LeaseRecord.parse(raw or "")
                paid, on_wire = bool(record.request_id), record.state == "submitting"
                out.append(Pending(index, entry, idle, paid, on_wire))
        return out

    def claim(self, entry: str) -> bool:
        """Take one lapsed entry (False: another worker was first)."""
        got = self._client.xclaim(self._keys.jobs, GROUP, self._worker, self.lease_ms, [entry])
        return bool(got)

    def look(self, entry: Entry) -> tuple[str, bool]:
        """A claimed job's request record (JSON or '') and whether it is final already
        (then acknowledged); a lapsed one not handed back is counted as a take-over."""
        keys, index = self._keys, str(entry.index)
        pipe = self._client.pipeline(transaction=False)
        pipe.hget(keys.requests, index)
        pipe.hexists(keys.done, index)
        pipe.srem(keys.back, index)
        pipe.hincrby(keys.meta, "claims", 1)
        raw, final, returned, _ = pipe.execute()
        if final:
            pipe.xack(keys.jobs, GROUP, entry.entry)
        elif entry.taken and not returned:
            pipe.hincrby(keys.meta, "takeovers", 1)
        pipe.execute()
        return str(raw or ""), bool(final)

    def is_final(self, index: int) -> bool:
        """Whether the job's final state is recorded for the run."""
        return bool(self._client.hexists(self._keys.done, str(index)))

    def mine(self, entry: str) -> bool:
        """Whether this worker still holds `entry` (no other took it over)."""
        got = self._client.xpending_range(self._keys.jobs, GROUP, entry, entry, 1)
        return bool(got) and got[0]["consumer"] == self._worker

    def note(self, index: int, entry: str, record: str) -> bool:
        """Write a held job's request record (`record`: JSON); False when it is not held here."""
        if not self.mine(entry):
            return False
        self._client.hset(self._keys.requests, str(index), record)
        return True

    def hand_back(self, index: int, entry: str, *, unsent: bool) -> None:
        """A held job goes back to the pool, first in line; `unsent`: its submit never went
        out (a 'submitting' record is forgotten)."""
        if not self.mine(entry):
            return
        client, keys = self._client, self._keys
        if unsent:
            raw = client.hget(keys.requests, str(index))
            if LeaseRecord.parse(raw or "").state == "submitting":
                client.hdel(keys.requests, str(index))
        self.to_pool([entry])
        pipe = client.pipeline(transaction=False)
        pipe.sadd(keys.back, str(index))
        pipe.hincrby(keys.meta, "returns", 1)
        pipe.xadd(keys.jobs, {"wake": secrets.token_hex(2)})
        pipe.execute()

    def to_pool(self, entries: list[str]) -> None:
        """Entries go to the `POOL` consumer, idle since long: the next XAUTOCLAIM takes them."""
        if entries:
            idle = self.lease_ms * _BACK_LEASES
            self._client.xclaim(self._keys.jobs, GROUP, POOL, 0, entries, idle=idle, justid=True)

    def final(self, index: int, entry: str, state: str, key: str, at: float) -> bool:
        """Record a held job's final state (`at`: wall-clock epoch seconds), once for the
        run; False when another worker took it over or recorded it first."""
        if not self.mine(entry):
            return False  # another worker took it over: its record stands
        client, keys = self._client, self._keys
        rid = LeaseRecord.parse(client.hget(keys.requests, str(index)) or "").request_id
        text = done_entry(state, self._worker, key, at, rid)
        first = bool(client.hsetnx(keys.done, str(index), text))
        pipe = client.pipeline(transaction=False)
        if first:
            pipe.hincrby(keys.meta, state, 1)
        pipe.xack(keys.jobs, GROUP, entry)
        pipe.execute()
        if first and self.finished():
            client.xadd(keys.jobs, {"end": "1"})  # wakes the idle readers
        return first
