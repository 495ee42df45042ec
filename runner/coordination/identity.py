"""Who is who in Redis: the run, the rate key, the worker, and the URL shown to people.

A **run** is the manifest's bytes (its sha256) plus an optional ``--run-id``:
every worker started with the same manifest file and run id joins the same
run, wherever it runs. Its keys share one Redis Cluster hash tag
(``runner:run:{<run>}:...``) so each Lua script touches a single slot.

The **rate key** is the API key and base URL the calls go to, hashed: the
limit belongs to the key, so two runs on one key share one gate, and
neither the key nor anything it could be recovered from cheaply goes into
Redis (a salted sha256 of a high-entropy key).

A coordinator URL may carry a password (``redis://:secret@host:6379/0``);
`runner.redact.redact_url` is the only form that reaches a message, a log,
the ledger or a printed command.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from runner.errors import UsageError
from runner.redact import redact_url

SCHEMES: Final = ("redis", "rediss", "unix")
KEY_ROOT: Final = "runner"
RUNS_INDEX: Final = f"{KEY_ROOT}:runs"
"""A set of every run id (the hash part) this Redis has seen, for `runner status`."""

# Bumped when the layout of a run's keys changes: a worker of another layout
# refuses to join rather than misread the run.
LAYOUT: Final = "s1"
GROUP: Final = "workers"
"""The consumer group of a run's job stream: every worker is one consumer of it."""
POOL: Final = "pool"
"""The consumer that holds jobs handed back, idle since long: the next claim takes them."""


def check_url(url: str) -> str:
    """`url` if it is a Redis URL we can use; else UsageError naming the fix."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise UsageError(
            f"--coordinator {redact_url(url)!r}: expected redis://HOST:PORT/DB "
            "(or rediss:// for TLS, unix:///path/redis.sock), e.g. redis://127.0.0.1:6379/0"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise UsageError(
            f"--coordinator {redact_url(url)!r}: the URL names no host, "
            "e.g. redis://127.0.0.1:6379/0"
        )
    return url


def _digest(*parts: str) -> str:
    text = "\0".join(parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class RunKeys:
    """The Redis keys of one run (see docs/distributed.md for what each holds)."""

    run: str

    def _key(self, name: str) -> str:
        return f"{KEY_ROOT}:run:{{{self.run}}}:{name}"

    @property
    def meta(self) -> str:
        """Hash: the run's identity, job count, budget, and final-state counters."""
        return self._key("meta")

    @property
    def jobs(self) -> str:
        """Stream: one entry per job (its index), read by the consumer group `GROUP`."""
        return self._key("jobs")

    @property
    def requests(self) -> str:
        """Hash: index -> JSON (state submitting | submitted, request id, submitted at)."""
        return self._key("requests")

    @property
    def back(self) -> str:
        """Set: indexes handed back and not claimed again (a claim of one is no take-over)."""
        return self._key("back")

    @property
    def done(self) -> str:
        """Hash: index -> JSON of the job's final state; set exactly once (HSETNX)."""
        return self._key("done")

    @property
    def credits(self) -> str:
        """Hash: budget, reserved, spent, ambiguous, refunded (micro-USD), stop reason."""
        return self._key("credits")

    @property
    def held(self) -> str:
        """Hash: job key -> micro-USD reserved for it."""
        return self._key("held")

    @property
    def workers(self) -> str:
        """Hash: worker id -> JSON (host, pid, output folder, lease, started, ended)."""
        return self._key("workers")

    @property
    def seen(self) -> str:
        """Hash: worker id -> last heartbeat (Redis server time)."""
        return self._key("seen")


@dataclass(frozen=True, slots=True)
class RateKeys:
    """The Redis keys of one API key's shared rate gate."""

    gate: str

    @property
    def log(self) -> str:
        """Sorted set: admissions, scored by Redis server time."""
        return f"{KEY_ROOT}:rate:{{{self.gate}}}:log"

    @property
    def state(self) -> str:
        """Hash: paused_until (the hold after an empty restart), last_admit."""
        return f"{KEY_ROOT}:rate:{{{self.gate}}}:state"

    @property
    def epoch(self) -> str:
        """String: a token set on the gate's first use; missing after an empty restart."""
        return f"{KEY_ROOT}:rate:{{{self.gate}}}:epoch"

    @property
    def inflight(self) -> str:
        """Sorted set: admissions whose call has not ended yet, by admission time."""
        return f"{KEY_ROOT}:rate:{{{self.gate}}}:inflight"

    @property
    def belief(self) -> str:
        """Hash: id, state: the learner as of one `events` entry (entries before it are trimmed)."""
        return f"{KEY_ROOT}:rate:{{{self.gate}}}:belief"

    @property
    def events(self) -> str:
        """Stream: every counted call's admission and outcome, replayed by each worker's learner."""
        return f"{KEY_ROOT}:rate:{{{self.gate}}}:events"


def run_hash(manifest_sha256: str, run_id: str | None) -> str:
    """The run's id in Redis: 16 hex digits of the manifest's sha256 and the run id."""
    return _digest("run", LAYOUT, manifest_sha256, run_id or "")


def run_keys(manifest_sha256: str, run_id: str | None) -> RunKeys:
    """The keys of the run of this manifest (its sha256) and run id."""
    return RunKeys(run_hash(manifest_sha256, run_id))


def rate_keys(base_url: str, api_key: str | None) -> RateKeys:
    """The shared gate of calls to `base_url` with `api_key` (None: the local emulator)."""
    return RateKeys(_digest("rate", LAYOUT, base_url.rstrip("/"), api_key or ""))


def check_run_id(run_id: str) -> str:
    """`run_id` if it is a usable run id (printable, at most 128 characters)."""
    if not run_id or len(run_id) > 128 or not run_id.isprintable():
        raise UsageError(
            f"--run-id {run_id!r}: expected 1-128 printable characters, e.g. ci-${{GITHUB_RUN_ID}}"
        )
    return run_id


def new_worker_id() -> str:
    """A worker id unique across hosts: host name, pid and a random suffix."""
    host = socket.gethostname().split(".")[0][:40] or "host"
    return f"{host}:{os.getpid()}:{secrets.token_hex(3)}"
