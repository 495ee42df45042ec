"""Property tests (hypothesis): the rate gate, backoff, the ledger, and whole runs with crashes.

- the rate gate never admits more than its budget into any window, whatever
  the arrivals, priorities and 429s, and admits everyone eventually;
- backoff and retry waits stay within their bounds; ambiguous submits are
  never retried by the policy itself;
- the ledger as a state machine against a model, with crashes (close and
  reopen) between any two steps;
- whole runs of the scheduler and the ledger against the in-process
  emulator, with scripted faults (5xx, 429, lost answers, broken downloads,
  blocked prompts) and crashes at any event, resumed until done: in flight
  never above the cap, reserved + spent never above the budget, every job in
  exactly one state, and what a crash leaves on disk is exactly what the
  run had committed before it (the replay).

Async examples run with `trio.run` on a fresh MockClock each, so each one is
independent and takes no real time.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)
from whole_runs import jobs_manifest, most_in_a_span

from runner.emulator import EmulatorConfig, InProcess
from runner.errors import (
    BadRequest,
    DownloadError,
    JobFailed,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
)
from runner.events import Event, RunStats
from runner.manifest import Manifest
from runner.money import micros
from runner.run import RunOptions, run_manifest
from runner.scheduling.rate import RateGate
from runner.scheduling.retry import RetryPolicy, backoff, retry_delay
from runner.store import STATES, JobRow, Ledger
from runner.sweep import expand

TEST_UTC = 1_800_000_000.0


def on_virtual_clock(fn: Callable[[], Awaitable[None]]) -> None:
    """Run `fn` under trio with a clock that jumps whenever every task waits."""
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def most_in_any_window(times: list[float], window: float) -> int:
    """Most of `times` in any half-open interval of length `window`."""
    return most_in_a_span(sorted(times), window)


# -- the rate gate ------------------------------------------------------------------

arrivals = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=200.0, allow_nan=False),  # arrival time
        st.integers(min_value=0, max_value=3),  # priority
    ),
    min_size=1,
    max_size=40,
)
limited_at = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=200.0, allow_nan=False),
        st.one_of(st.none(), st.floats(min_value=0.0, max_value=90.0, allow_nan=False)),
    ),
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(
    calls=arrivals,
    limit=st.integers(min_value=1, max_value=8),
    window=st.sampled_from([1.0, 6.0, 60.0]),
    margin=st.sampled_from([0.0, 0.5, 1.0]),
    model=st.sampled_from(["window", "smooth"]),
    rate_limits=limited_at,
)
def test_rate_gate_never_admits_more_than_the_budget_in_any_window(
    *,
    calls: list[tuple[float, int]],
    limit: int,
    window: float,
    margin: float,
    model: str,
    rate_limits: list[tuple[float, float | None]],
) -> None:
    admitted: list[float] = []

    async def main() -> None:
        gate = RateGate(limit, window, margin=margin, model=model)  # type: ignore[arg-type]

        async def caller(at: float, priority: int) -> None:
            await anyio.sleep(at)
            await gate.acquire(priority)
            gate.finished()  # the call is answered at once
            admitted.append(anyio.current_time())

        async def limiter(at: float, hint: float | None) -> None:
            await anyio.sleep(at)
            gate.rate_limited(hint)

        async with anyio.create_task_group() as tg:
            for at, priority in calls:
                tg.start_soon(caller, at, priority)
            for at, hint in rate_limits:
                tg.start_soon(limiter, at, hint)

    on_virtual_clock(main)
    assert len(admitted) == len(calls)  # nobody is starved
    # The declared cap: whatever window the 429 hints teach the learner (a short
    # one is legal), no declared window + margin holds more than the limit.
    assert most_in_any_window(admitted, window + margin) <= limit
    if model == "smooth":
        gaps = [b - a for a, b in zip(sorted(admitted), sorted(admitted)[1:], strict=False)]
        assert all(gap >= (window + margin) / limit - 1e-9 for gap in gaps)


@settings(max_examples=100, deadline=None)
@given(
    calls=arrivals,
    limit=st.integers(min_value=1, max_value=8),
)
def test_rate_gate_admits_at_once_while_the_window_has_room(
    calls: list[tuple[float, int]], limit: int
) -> None:
    # Without 429s the window model is work-conserving: a call waits only
    # when `limit` calls were admitted in the span before it.
    span = 61.0
    waits: list[tuple[float, float]] = []

    async def main() -> None:
        gate = RateGate(limit, 60.0, margin=1.0)

        async def caller(at: float) -> None:
            await anyio.sleep(at)
            await gate.acquire()
            gate.finished()  # the call is answered at once
            waits.append((at, anyio.current_time()))

        async with anyio.create_task_group() as tg:
            for at, _ in calls:
                tg.start_soon(caller, at)

    on_virtual_clock(main)
    admitted = sorted(t for _, t in waits)
    for arrived, at in waits:
        if at > arrived + 1e-9:
            # (a float's width of slack at the span's far edge)
            before = [t for t in admitted if at - span - 1e-6 <= t < at]
            assert len(before) >= limit - 1


def test_rate_gate_counts_calls_as_the_server_sees_them() -> None:
    arrivals_seen: list[float] = []

    async def main() -> None:
        gate = RateGate(5, 60.0, margin=1.0)

        async def call(index: int) -> None:
            await gate.acquire()
            # The first burst reaches the server 2 s after admission (the loop
            # was busy writing files); later calls go straight out.
            await anyio.sleep(2.0 if index < 5 else 0.0)
            arrivals_seen.append(anyio.current_time())
            gate.finished()  # the answer comes back as it arrives

        async with anyio.create_task_group() as tg:
            for index in range(10):
                tg.start_soon(call, index)
                await anyio.lowlevel.checkpoint()

    on_virtual_clock(main)
    assert most_in_any_window(arrivals_seen, 60.0) <= 5


# -- backoff and the retry policy ---------------------------------------------------

policies = st.builds(
    RetryPolicy,
    base=st.floats(min_value=0.01, max_value=5.0),
    cap=st.floats(min_value=0.1, max_value=120.0),
    attempts=st.integers(min_value=1, max_value=10),
    submit_attempts=st.integers(min_value=1, max_value=10),
    not_found_attempts=st.integers(min_value=1, max_value=5),
    scale=st.sampled_from([0.0, 0.01, 1.0]),
)


@given(policy=policies, attempt=st.integers(min_value=0, max_value=200), seed=st.integers())
def test_backoff_stays_within_its_bounds(policy: RetryPolicy, attempt: int, seed: int) -> None:
    wait = backoff(policy, attempt, random.Random(seed))
    ceiling = min(policy.cap, policy.base * 2 ** min(attempt, 30)) * policy.scale
    assert 0.0 <= wait <= ceiling + 1e-12


errors = st.sampled_from(
    [
        ServerError("x", status=502),
        RateLimited("x", status=429),
        TransportError("x", sent=False),
        TransportError("x", sent=True),
        NotFound("x", status=404),
        DownloadError("x", retryable=True),
        DownloadError("x", retryable=False),
        BadRequest("x", status=400),
        JobFailed("x"),
    ]
)
operations = st.sampled_from(["submit", "status", "result", "download", "credits", "sync"])


@given(
    policy=policies,
    op=operations,
    error=errors,
    attempt=st.integers(min_value=1, max_value=12),
    hint=st.one_of(st.none(), st.floats(min_value=0.0, max_value=3600.0)),
    seed=st.integers(),
)
def test_retry_delay_stays_within_its_bounds(
    *,
    policy: RetryPolicy,
    op: str,
    error: Exception,
    attempt: int,
    hint: float | None,
    seed: int,
) -> None:
    if hint is not None and isinstance(error, ServerError | RateLimited):
        error = type(error)("x", status=error.status, retry_after=hint)
    delay = retry_delay(op, error, attempt, policy, random.Random(seed))  # type: ignore[arg-type]
    limit = policy.submit_attempts if op in ("submit", "sync") else policy.attempts
    if attempt >= limit:
        assert delay is None
    if isinstance(error, BadRequest | JobFailed):
        assert delay is None  # final
    if isinstance(error, TransportError) and error.sent and op in ("submit", "sync"):
        assert delay is None  # ambiguous: never retried by the policy alone
    if isinstance(error, DownloadError) and (op != "download" or not error.retryable):
        assert delay is None
    if isinstance(error, NotFound) and (op not in ("status", "result")):
        assert delay is None
    if delay is None:
        return
    assert delay >= 0.0 and math.isfinite(delay)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        assert retry_after <= delay <= retry_after + min(1.0, retry_after * 0.1 + 0.01) + 1e-9
    else:
        assert delay <= min(policy.cap, policy.base * 2 ** min(attempt - 1, 30)) * policy.scale


# -- the ledger as a state machine --------------------------------------------------

_MOVES: dict[str, tuple[str, ...]] = {
    # method -> the states it may start from (docs/store.md)
    "submitting": ("planned", "submitting", "failed", "expired"),
    "submitted": ("planned", "submitting"),
    "completed": STATES,
    "failed": tuple(s for s in STATES if s != "completed"),
    "expired": ("submitting", "submitted"),
    "reset": tuple(s for s in STATES if s != "submitted"),
}
_TARGET = {
    "submitting": "submitting",
    "submitted": "submitted",
    "completed": "completed",
    "failed": "failed",
    "expired": "expired",
    "reset": "planned",
}


class LedgerMachine(RuleBasedStateMachine):
    """The ledger against a dict model, with crashes (close, reopen) at any point."""

    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        self.out = Path(self._dir.name) / "out"
        self.ledger = Ledger.open(self.out, backend="local", base_url="http://emulator.local")
        self.model: dict[str, str] = {}
        self.request_ids: dict[str, str | None] = {}
        self.counter = 0

    def teardown(self) -> None:
        self.ledger.close()
        self._dir.cleanup()

    @rule(target=keys)
    def plan(self) -> str:
        self.counter += 1
        key = f"k1:{self.counter:064x}"
        self.ledger.plan(key, self.counter, "p", micros(0.02))
        self.model[key] = "planned"
        self.request_ids[key] = None
        return key

    @rule(key=keys, method=st.sampled_from(sorted(_MOVES)))
    def move(self, key: str, method: str) -> None:
        before = self.model[key]
        allowed = before in _MOVES[method]
        try:
            if method == "submitted":
                rid = f"req-{self.counter}-{key[-4:]}"
                self.ledger.submitted(key, rid, 1000.0)
            elif method == "completed":
                self.ledger.completed(key, micros(0.02), [f"p/{key[-8:]}.png"], 1001.0)
            elif method == "failed":
                self.ledger.failed(key, "boom")
            else:
                getattr(self.ledger, method)(key)
        except ValueError:
            assert not allowed, f"{method} from {before} was refused"
            return
        assert allowed, f"{method} from {before} was accepted"
        self.model[key] = _TARGET[method]
        if method == "submitted":
            self.request_ids[key] = rid
        elif method in ("submitting", "reset"):
            self.request_ids[key] = None

    @rule(key=keys)
    def ambiguous(self, key: str) -> None:
        self.ledger.ambiguous(key)

    @rule()
    def crash(self) -> None:
        # Every write is its own committed transaction: what comes back after a
        # reopen is exactly what was there.
        before = {row.key: row for row in self.ledger.rows()}
        self.ledger.close()
        self.ledger = Ledger.open(self.out, backend="local", base_url="http://emulator.local")
        after = {row.key: row for row in self.ledger.rows()}
        assert after == before

    @precondition(lambda self: bool(self.model))
    @rule(key=consumes(keys))
    def forget(self, key: str) -> None:
        """Stop moving a key (keeps the bundle small); its row stays."""

    @invariant()
    def every_job_in_exactly_one_state(self) -> None:
        rows = list(self.ledger.rows())
        assert len({row.key for row in rows}) == len(rows)
        assert {row.key: row.state for row in rows} == self.model
        counts = self.ledger.counts()
        assert sum(counts.values()) == len(self.model)
        for row in rows:
            if row.state == "submitted":
                assert row.request_id == self.request_ids[row.key]


LedgerMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_ledger_state_machine = LedgerMachine.TestCase


# -- whole runs: scheduler and ledger, faults and crashes ---------------------------

FAULT_CHOICES = [
    ("submit", "500"),
    ("submit", "429"),
    ("submit", "drop_after"),
    ("submit", "drop_before"),
    ("status", "502"),
    ("status", "429"),
    ("result", "504"),
    ("media", "truncate"),
    ("media", "corrupt"),
    ("media", "500"),
]

scenarios = st.fixed_dictionaries(
    {
        "jobs": st.integers(min_value=2, max_value=7),
        "blocked": st.integers(min_value=0, max_value=2),
        "cap": st.integers(min_value=1, max_value=4),
        "budget_jobs": st.one_of(st.none(), st.integers(min_value=1, max_value=9)),
        "faults": st.lists(
            st.tuples(st.sampled_from(FAULT_CHOICES), st.integers(min_value=1, max_value=3)),
            max_size=5,
        ),
        "crashes": st.lists(st.integers(min_value=1, max_value=25), max_size=3),
        "seed": st.integers(min_value=0, max_value=2**16),
    }
)


def scenario_manifest(folder: Path, jobs: int, blocked: int, budget: float | None) -> Manifest:
    bad = ", ".join(f"b{i}" for i in range(blocked))
    blocked_prompt = f"""  - id: bad
    prompt: "blocked content {{thing}}"
    vars: {{thing: [{bad}]}}
"""
    return jobs_manifest(
        folder,
        jobs,
        rpm=10,
        max_credits=budget,
        extra_prompts=blocked_prompt if blocked else "",
        prefix="t",
        output_format="png",
    )


def rows_of(out: Path) -> dict[str, JobRow]:
    if not (out / ".runner" / "ledger.sqlite").is_file():
        return {}
    with Ledger.open_readonly(out) as ledger:
        return {row.key: row for row in ledger.rows()}


def _durable(rows: dict[str, JobRow]) -> dict[str, tuple[Any, ...]]:
    # updated_at is a write stamp, not state.
    return {
        k: (r.state, r.request_id, r.submitted_at, r.charged, r.files, r.attempts, r.ambiguous)
        for k, r in rows.items()
    }


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios)
@example(
    # Found by hypothesis: a 500 on submit then a crash; the resume's budget
    # counted one job's money twice ('$0.0600 committed over $0.0410').
    scenario={
        "jobs": 2,
        "blocked": 0,
        "cap": 1,
        "budget_jobs": 2,
        "faults": [(("submit", "500"), 1), (("submit", "500"), 1)],
        "crashes": [6],
        "seed": 0,
    }
)
def test_runs_with_faults_and_crashes_keep_their_invariants(scenario: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _check_scenario(Path(tmp), scenario)


def _check_final(
    final: dict[str, JobRow], keys: set[str], blocked: set[str], out: Path, *, finished: bool
) -> None:
    """Every job in exactly one state; with no budget to stop it, every job terminal."""
    assert set(final) <= keys
    assert all(row.state in STATES for row in final.values())
    if finished:
        assert set(final) == keys
        # A paid result broken in transit past the retries stays `submitted`
        # with its request id, for the next run to download: also an end state.
        assert {row.state for row in final.values()} <= {"completed", "failed", "submitted"}
        assert all(row.request_id for row in final.values() if row.state == "submitted")
        for key in blocked:
            assert final[key].state == "failed"
    for row in final.values():
        if row.state == "completed":
            assert len(row.files) == 1 and (out / row.files[0]).is_file()


def _check_scenario(folder: Path, scenario: dict[str, Any]) -> None:
    jobs, blocked, cap = scenario["jobs"], scenario["blocked"], scenario["cap"]
    budget = None if scenario["budget_jobs"] is None else 0.02 * scenario["budget_jobs"] + 0.001
    manifest = scenario_manifest(folder, jobs, blocked, budget)
    key_of = {job.request.prompt: job.key for job in expand(manifest)}
    keys = set(key_of.values())
    blocked_keys = {job.key for job in expand(manifest) if job.prompt_id == "bad"}
    out = folder / "out"
    problems: list[str] = []
    drops = sum(t for (e, f), t in scenario["faults"] if (e, f) == ("submit", "drop_after"))

    async def main() -> None:
        emu = InProcess.create(EmulatorConfig(seed=scenario["seed"], utc_offset=TEST_UTC))
        for (endpoint, fault), times in scenario["faults"]:
            emu.emulator.faults.script(endpoint, fault, times)

        def wall() -> float:
            return TEST_UTC + anyio.current_time()

        def listener(event: Event, stats: RunStats) -> None:
            if stats.in_flight > cap:
                problems.append(f"{stats.in_flight} in flight over the cap {cap}")
            committed = stats.credits_reserved + stats.credits_spent + stats.credits_ambiguous
            if budget is not None and committed > budget + 1e-9:
                problems.append(f"${committed:.4f} committed over ${budget:.4f}")

        async def segment(crash_at: int | None) -> bool:
            """One run; with `crash_at`, stopped dead at that event. True if it crashed."""
            seen = 0
            with anyio.CancelScope() as scope:

                def crasher(event: Event, stats: RunStats) -> None:
                    nonlocal seen
                    seen += 1
                    if crash_at is not None and seen == crash_at:
                        scope.cancel()

                options = RunOptions(
                    backend="local",
                    out=out,
                    time_scale=1.0,
                    seed=scenario["seed"],
                    max_in_flight=cap,
                )
                await run_manifest(
                    manifest,
                    options,
                    emulator=emu.emulator,
                    env={},
                    wall=wall,
                    listeners=[listener, crasher],
                )
            return scope.cancelled_caught

        # key -> (request id, accepted submits so far) for jobs a crash left submitted;
        # key -> files for jobs a crash left completed.
        pinned: dict[str, tuple[str | None, int]] = {}
        done: dict[str, tuple[str, ...]] = {}
        crashes = 0
        for crash_at in [*scenario["crashes"], None]:
            if not await segment(crash_at):
                continue
            crashes += 1
            durable = rows_of(out)
            # Replay: a fresh open of the folder sees exactly what was committed.
            assert _durable(rows_of(out)) == _durable(durable)
            accepted_now = len(emu.emulator.accepted_submits())
            for key, row in durable.items():
                if row.state == "submitted":
                    pinned.setdefault(key, (row.request_id, accepted_now))
                elif row.state == "completed":
                    done.setdefault(key, row.files)

        final = rows_of(out)
        accepted = emu.emulator.accepted_submits()
        _check_final(final, keys, blocked_keys, out, finished=budget is None)
        if budget is not None:
            assert emu.emulator.charged_total() <= budget + 1e-9
        # Re-attached by request id, never paid again; completed work never redone.
        for key, (rid, count) in pinned.items():
            assert final[key].request_id == rid, (key, final[key])
            later = {key_of[v.params.prompt] for v in accepted[count:]}
            assert key not in later
        for key, files in done.items():
            assert final[key].state == "completed" and final[key].files == files
        # Extra submits only from lost answers and from crashes (at most the cap each).
        assert len(accepted) <= len(keys) + drops + crashes * cap

    on_virtual_clock(main)
    assert problems == []
