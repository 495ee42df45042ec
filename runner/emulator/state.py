"""The emulator's state: jobs, credit accounts, rate limiters, expiry, logs.

Nothing runs in the background. A job's schedule is fixed when it is
accepted (W workers, each job starting when one frees up), so its state at
any time is read off the clock: QUEUED before `start`, PROCESSING until
`end`, then COMPLETED (or FAILED for a blocked prompt). Charges settle
lazily: every call first settles the jobs whose `end` has passed.

Times are seconds of the injected clock (`anyio.current_time` in-process,
so a trio MockClock drives it; `time.monotonic` on loopback); UTC for
headers is `utc_offset + clock`. The state is guarded by a lock because a
loopback server's thread and the test reading the logs share it.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from random import Random
from types import MappingProxyType
from typing import Literal

import anyio

from runner import params as api_params
from runner.emulator import images
from runner.emulator.config import EmulatorConfig, EndpointKind
from runner.emulator.faults import FaultInjector
from runner.emulator.limits import Limiter, make_limiter
from runner.emulator.log import CallRecord, KindFilter, RequestLog
from runner.emulator.validation import JobParams

JobState = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED"]
Endpoint = Literal["v2", "v1"]
Clock = Callable[[], float]

# Calls of these kinds count toward the rate limit under each scope.
_SCOPED_KINDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "submit": frozenset({"submit", "sync"}),
        "all": frozenset({"submit", "sync", "status", "result", "credits", "other"}),
    }
)
ANONYMOUS = "-"


def hash_key(api_key: str | None) -> str:
    """A short stand-in for an API key in logs and accounts; never the key itself."""
    if not api_key:
        return ANONYMOUS
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:12]


class CreditsRefused(Exception):  # an answer (406), not a fault of the emulator
    """The account cannot pay for a request; str() is the 406 message."""


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as of one instant. Times are clock seconds; money USD."""

    request_id: str
    key_hash: str
    endpoint: Endpoint
    params: JobParams
    state: JobState
    submitted_at: float
    started_at: float
    finished_at: float
    cost: float
    charged: float
    remaining_credits: float | None
    error: str | None
    seed: int

    @property
    def queue_time(self) -> float:
        """Seconds waited for a worker."""
        return self.started_at - self.submitted_at

    @property
    def inference_time(self) -> float:
        """Seconds on a worker."""
        return self.finished_at - self.started_at

    @property
    def total_time(self) -> float:
        """Seconds from submission to the end."""
        return self.finished_at - self.submitted_at


@dataclass(slots=True)
class _Job:
    # Mutable on purpose: `charged` / `remaining` change once, at settlement.
    request_id: str
    key_hash: str
    endpoint: Endpoint
    params: JobParams
    submitted_at: float
    started_at: float
    finished_at: float
    expires_at: float
    cost: float
    error: str | None
    seed: int
    settled: bool = False
    charged: float = 0.0
    remaining: float | None = None

    def state_at(self, now: float) -> JobState:
        if now < self.started_at:
            return "QUEUED"
        if now < self.finished_at:
            return "PROCESSING"
        return "FAILED" if self.error else "COMPLETED"

    def view(self, now: float) -> JobView:
        return JobView(
            request_id=self.request_id,
            key_hash=self.key_hash,
            endpoint=self.endpoint,
            params=self.params,
            state=self.state_at(now),
            submitted_at=self.submitted_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            cost=self.cost,
            charged=self.charged,
            remaining_credits=self.remaining,
            error=self.error,
            seed=self.seed,
        )


@dataclass(slots=True)
class _Account:
    balance: float
    reserved: float = 0.0


class Emulator:
    """The state behind the emulated API; one per app. Thread-safe.

    `clock` gives seconds; the default `anyio.current_time` follows the
    running event loop's clock (a virtual one in tests), so in-process use
    must read it inside that loop. Loopback serving passes `time.monotonic`.
    """

    def __init__(self, config: EmulatorConfig | None = None, *, clock: Clock | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._clock: Clock = clock or anyio.current_time
        self._lock = threading.RLock()
        self._utc_offset = self.config.utc_offset
        self._latency_rng = Random(f"latency-{self.config.seed}")
        self._blocks = [re.compile(p) for p in self.config.block_patterns]
        self.faults = FaultInjector(
            self.config.faults, seed=self.config.seed, burst_429=self.config.burst_429
        )
        self.media_cache = images.MediaCache(self.config.media_cache)
        self._workers: list[float] = [float("-inf")] * self.config.workers
        self._jobs: dict[str, _Job] = {}
        self._ledger: list[_Job] = []
        self._expiry: deque[_Job] = deque()
        self._unsettled: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._accounts: dict[str, _Account] = {}
        self._limiters: dict[str, Limiter] = {}
        self.log = RequestLog()

    # -- time ---------------------------------------------------------------

    def now(self) -> float:
        """The emulator clock, in seconds."""
        now = self._clock()
        if self._utc_offset is None:
            with self._lock:
                if self._utc_offset is None:
                    self._utc_offset = time.time() - now
        return now

    def utc(self, at: float) -> float:
        """UTC seconds (Unix epoch) for clock time `at`."""
        if self._utc_offset is None:
            self.now()
        assert self._utc_offset is not None
        return self._utc_offset + at

    # -- auth and rate --------------------------------------------------------

    def authorized(self, api_key: str | None) -> bool:
        """Whether `api_key` may call the API (any key does when no keys are configured)."""
        keys = self.config.api_keys
        return keys is None or (api_key is not None and api_key in keys)

    def counts_toward_rate(self, kind: EndpointKind) -> bool:
        """Whether a call of `kind` is counted by the rate limit (per `rate_scope`)."""
        return self.config.rpm is not None and kind in _SCOPED_KINDS[self.config.rate_scope]

    def admit(self, key_hash: str, kind: EndpointKind, now: float) -> float | None:
        """None if the call is within the rate limit, else the UTC second it resets at."""
        if not self.counts_toward_rate(kind):
            return None
        rpm = self.config.rpm
        assert rpm is not None
        with self._lock:
            limiter = self._limiters.get(key_hash)
            if limiter is None:
                limiter = make_limiter(
                    self.config.limiter,
                    rpm,
                    self.config.scaled(self.config.rate_window),
                    self.config.burst,
                )
                self._limiters[key_hash] = limiter
            return limiter.acquire(self.utc(now))

    # -- jobs -----------------------------------------------------------------

    def blocked(self, prompt: str) -> bool:
        """Whether the prompt matches a content block pattern."""
        return any(p.search(prompt) for p in self._blocks)

    def price(self, job: JobParams) -> float:
        """USD for one request: the per-image price times n (plus the billed source images)."""
        images = job.n + job.billed_inputs
        return api_params.price(job.mode, job.resolution, images, self.config.prices)

    def accept(self, key_hash: str, job: JobParams, endpoint: Endpoint, now: float) -> JobView:
        """Queue an accepted request and reserve its cost. Raises CreditsRefused (406)."""
        cost = self.price(job)
        with self._lock:
            self._settle(now)
            account = self._account(key_hash)
            available = account.balance - account.reserved
            if not self.config.unlimited_credits and available + 1e-9 < cost:
                raise CreditsRefused(
                    f"Insufficient credits: balance ${max(available, 0.0):.4f} is below "
                    f"the cost ${cost:.4f} of this request"
                )
            account.reserved += cost
            latency = self.config.scaled(self.config.latency.sample(self._latency_rng))
            queued = self.config.queue_delay
            # The QUEUED phase is waited before a worker is taken, so it does not
            # hold a worker (a server-side queue ahead of the workers).
            ready = now + (self.config.scaled(queued.sample(self._latency_rng)) if queued else 0.0)
            start = max(ready, heapq.heappop(self._workers))
            end = start + latency
            heapq.heappush(self._workers, end)
            record = _Job(
                # From the OS's entropy, not the seed: two emulators (two runs'
                # embedded ones, shards) never hand out one id, as Segmind never does.
                request_id=str(uuid.uuid4()),
                key_hash=key_hash,
                endpoint=endpoint,
                params=job,
                submitted_at=now,
                started_at=start,
                finished_at=end,
                expires_at=now + self.config.scaled(self.config.retention),
                cost=cost,
                error=self.config.block_message if self.blocked(job.prompt) else None,
                seed=_seed_of(job),
            )
            self._jobs[record.request_id] = record
            self._ledger.append(record)
            self._expiry.append(record)
            heapq.heappush(self._unsettled, (end, next(self._seq), record))
            return record.view(now)

    def lookup(self, request_id: str, now: float) -> JobView | None:
        """The job as of `now`, or None when the id is unknown or expired."""
        with self._lock:
            self._settle(now)
            record = self._jobs.get(request_id)
            if record is None or now >= record.expires_at:
                return None
            return record.view(now)

    def media(self, view: JobView, index: int) -> bytes:
        """The encoded bytes of image `index` of a completed job (cached, deterministic)."""
        key = (view.request_id, index)
        cached = self.media_cache.get(key)
        if cached is not None:
            return cached
        job = view.params
        if job.image is not None:
            picture = images.render_edit(
                job.image,
                job.prompt,
                mode=job.mode,
                aspect_ratio=job.aspect_ratio,
                resolution=job.resolution,
                index=index,
                sizes=self.config.sizes,
            )
        else:
            picture = images.render(
                job.prompt,
                mode=job.mode,
                aspect_ratio=job.aspect_ratio,
                resolution=job.resolution,
                index=index,
                size=images.output_size(job.aspect_ratio, job.resolution, self.config.sizes),
            )
        data = images.encode(picture, job.output_format)
        self.media_cache.put(key, data)
        return data

    # -- credits --------------------------------------------------------------

    def balance(self, api_key: str | None = None) -> float:
        """The settled balance of a key's account, USD (reservations not subtracted)."""
        return self.balance_of(hash_key(api_key))

    def balance_of(self, key_hash: str) -> float:
        """As `balance`, by key hash (what the app knows)."""
        with self._lock:
            self._settle(self.now())
            return self._account(key_hash).balance

    def set_balance(self, api_key: str | None, usd: float) -> None:
        """Set a key's settled balance, USD (for tests)."""
        with self._lock:
            self._account(hash_key(api_key)).balance = usd

    def _account(self, key_hash: str) -> _Account:
        account = self._accounts.get(key_hash)
        if account is None:
            account = self._accounts[key_hash] = _Account(self.config.credits)
        return account

    def _settle(self, now: float) -> None:
        # Charge jobs that completed by `now`, release reservations of failed ones,
        # and forget records past retention (the ledger keeps them).
        while self._unsettled and self._unsettled[0][0] <= now:
            _, _, record = heapq.heappop(self._unsettled)
            account = self._account(record.key_hash)
            account.reserved -= record.cost
            if record.error is None:
                account.balance -= record.cost
                record.charged = record.cost
            record.remaining = account.balance
            record.settled = True
        while self._expiry and self._expiry[0].expires_at <= now:
            gone = self._expiry.popleft()
            self._jobs.pop(gone.request_id, None)

    # -- logs -----------------------------------------------------------------

    def record(self, call: CallRecord) -> None:
        """Append one call to the request log."""
        self.log.append(call)

    def calls(self, kind: KindFilter = None) -> list[CallRecord]:
        """The request log, oldest first, optionally only calls of some kinds."""
        return self.log.calls(kind)

    def max_in_window(self, window: float, kinds: KindFilter = ("submit", "sync")) -> int:
        """Most calls of `kinds` received in any half-open window of `window` clock seconds."""
        return self.log.max_in_window(window, kinds)

    def accepted_submits(self, endpoint: Endpoint | None = None) -> list[JobView]:
        """Every accepted request (ledger order), as of now, expired ones included."""
        with self._lock:
            now = self.now()
            self._settle(now)
            return [j.view(now) for j in self._ledger if endpoint is None or j.endpoint == endpoint]

    def charged_total(self) -> float:
        """USD charged so far for completed jobs, over all accounts."""
        return sum(j.charged for j in self.accepted_submits())


def _seed_of(job: JobParams) -> int:
    canonical = json.dumps(job.public(), sort_keys=True)
    return int.from_bytes(hashlib.sha256(canonical.encode("utf-8")).digest()[:4], "big") >> 1
