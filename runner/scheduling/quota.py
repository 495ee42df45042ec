"""What the server's rate limit really is, learned from its answers. Pure: no clock, no I/O.

The declared `requests_per_minute` is a belief, not a fact (STYLE.md 15): a
plan's limit may be lower than the manifest says, its window shorter or
longer than a minute, fixed or sliding, and its reset hints truncated to the
second. `QuotaLearner` turns the answers a run gets into the allowance the
rate gate applies: calls per window, the window's length, when sending may
resume, and whether the next call must go alone as a probe.

The rules (issue #12):

- **A 429 stops new sends at once.** The pause lasts until the server's
  reset hint; a hint good only to the second (no fraction) is waited until
  reset + 1 s; a hint in the past, zero or absent is never "retry now": the
  pause is a capped exponential back-off with jitter instead.
- **The quota is the count this client got accepted** in the window before
  the refusal (answers that arrive late for calls of that window raise it:
  the server did accept them). Refused calls never count as spent.
- **The window** is learned from the reset hint: the server will admit again
  at `reset`, so its window is at least `reset - first`, where `first` is the
  earliest call of ours it still counted. That is exact for a sliding window
  and a lower bound for a fixed one, so a changed estimate is *unconfirmed*:
  at the start of the next estimated window one call goes alone, and only its
  acceptance confirms the estimate (a fixed window's misestimate then costs
  one refused call, not a window's worth). The estimate may be shorter
  than the declared window: the rate gate keeps the declared limit as a
  separate cap on its own window, so the learned (quota, window) only ever
  narrows what the declared one allows.
- **One cut per server window**: a burst of 429s answering calls already in
  flight is one signal. A 429 that arrives while the window holds well under
  a learned quota (a fault, not the quota) pauses but does not cut.
- **Growth back is careful**: one call per window above the learned quota
  after `quiet_windows` windows without a 429, never above the declared limit,
  so a transient 429 does not cap the run for good.
- **`auto`** (no declared limit): start from one call and double the
  allowance each time a whole allowance has been answered without a 429,
  until the first 429; then hold the learned quota as above. The calls of
  a doubled allowance above the half already taken go one at a time
  (`solo`), so the overshoot costs one 429, not a burst.

Times are the caller's clock seconds (anyio's inside the runner, already
time-scaled); `second` says how long one real second is on that clock.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass

# Window estimates are kept within these bounds (in real seconds): a shorter one
# is noise, a longer one a server bug.
_MIN_WINDOW_S = 0.5
_MAX_WINDOW_S = 3600.0
# Jitter added to a precise reset, in real seconds: callers of one key do not
# all arrive in the same millisecond.
_RESET_JITTER_S = 0.05


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    """How to learn. `declared`: the manifest's calls per window (None: auto / unknown).

    `window` is the declared window in clock seconds; `second` one nominal
    second on the clock (the time scale); `hint_step`, `backoff` and
    `backoff_cap` in clock seconds.
    """

    declared: int | None
    window: float = 60.0
    auto: bool = False
    second: float = 1.0
    # A coarse hint's resolution in clock seconds: the wire's whole second. Not
    # `second`: the clock runs in true seconds whatever the time scale (only
    # durations are scaled), and a hint truncated to the second may be up to
    # one true second early.
    hint_step: float = 1.0
    quiet_windows: int = 2
    # A 429 is isolated when the window holds fewer than this share of a learned quota.
    isolated_share: float = 0.5
    backoff: float = 1.0
    backoff_cap: float = 60.0
    auto_ceiling: int = 1000
    # What an earlier run of the folder learned (calls per `learned_window`
    # clock seconds): held from the start, grown back carefully, as after a 429.
    learned: int | None = None
    learned_window: float | None = None

    def __post_init__(self) -> None:
        if self.declared is not None and self.declared < 1:
            raise ValueError("declared: at least 1 call per window")
        if not (self.window > 0 and self.second > 0):
            raise ValueError("window and second must be above 0")
        if self.learned is not None and self.learned < 1:
            raise ValueError("learned: at least 1 call per window")


@dataclass(frozen=True, slots=True)
class QuotaStats:
    """A snapshot. `limit` calls per `window` clock seconds (None: no limit known)."""

    limit: int | None
    window: float
    declared: int | None
    learned: bool
    confirmed: bool
    rate_limited: int
    cuts: int
    paused_until: float


class QuotaLearner:
    """The run's belief about the server's limit; see the module docstring.

    Feed it every call the limit counts: `started(now)` when it is sent,
    then `accepted(sent_at, now)` for any answer but a 429, or
    `refused(sent_at, now, reset_at, coarse)` for a 429. Ask it
    `limit(now)`, `window`, `paused_until` and `solo(now)`.
    """

    def __init__(self, policy: QuotaPolicy, *, rng: random.Random | None = None) -> None:
        self._policy = policy
        self._rng = rng or random.Random(0)
        self._ceiling = policy.declared or policy.auto_ceiling
        # Before any 429: the declared limit, or one call growing per round trip.
        self._quota: int | None = 1 if policy.auto else policy.declared
        self._window = policy.learned_window or policy.window
        self._learned = False  # a 429 taught the quota
        self._window_known = policy.learned_window is not None  # a reset hint taught the window
        if policy.learned is not None:
            self._quota = min(self._ceiling, policy.learned)
            self._learned = True
        self._confirmed = True
        self._accepted: list[float] = []  # send times of accepted calls, sorted
        self._paused_until = -math.inf
        self._backoffs = 0
        self._cut_before = -math.inf  # refusals of calls sent before this are one signal
        self._quiet_since = -math.inf
        self._quiet_needed = policy.quiet_windows  # doubles after each refused growth
        self._window_start = -math.inf  # first send after the last pause
        self._probe_at = math.nan  # when the last probe went out
        self._rate_limited = 0
        self._cuts = 0

    # -- what the gate asks --------------------------------------------------

    @property
    def window(self) -> float:
        """The window the limit applies to, in clock seconds."""
        return self._window

    @property
    def paused_until(self) -> float:
        """No call may be sent before this clock time."""
        return self._paused_until

    def limit(self, now: float) -> int | None:
        """Calls allowed per window at `now` (None: unlimited).

        After a 429 taught the quota: the quota, plus one call after
        `quiet_windows` windows without a 429 (never above the declared limit).
        """
        quota = self._quota
        if quota is None or not self._learned:
            return quota
        quiet = now - self._quiet_since >= self._quiet_needed * self._window
        return min(self._ceiling, quota + 1) if quiet else quota

    def solo(self, now: float) -> bool:
        """Whether the next call must go alone: a probe of an unconfirmed window, or,
        while `auto` grows, a call above the allowance the server has already taken."""
        return self._probing(now) or self._exploring(now)

    def _probing(self, now: float) -> bool:
        return not self._confirmed and now >= self._window_start + self._window

    def _exploring(self, now: float) -> bool:
        # Doubling from q to 2q: the first q of the window are known to pass;
        # the calls above them go one at a time, so the overshoot that ends
        # the growth costs one 429, not a burst of all the calls on the wire.
        if not self._policy.auto or self._learned or self._quota is None:
            return False
        return self._count(now - self._window, now) >= max(1, self._quota // 2)

    def started(self, now: float) -> None:
        """A call the limit counts is being sent at `now`."""
        if self._probing(now):
            self._probe_at = now
        if self._window_start < self._paused_until <= now or self._window_start == -math.inf:
            self._window_start = now  # the first call after a pause opens a window

    # -- what the answers say ------------------------------------------------

    def accepted(self, sent_at: float, now: float) -> None:
        """A call sent at `sent_at` got an answer other than 429 at `now`."""
        bisect.insort(self._accepted, sent_at)
        self._prune(now)
        self._backoffs = 0
        if not self._confirmed and sent_at >= self._window_start + self._window:
            self._confirmed = True  # the probe of the next window went through
        quota = self._quota
        if quota is None:
            return
        if self._learned:
            # The server took more than we believed (late answers of a cut
            # window, or the one call above the quota): it is the quota now.
            count = self._count(sent_at - self._window, sent_at)
            if count > quota:
                self._quota = min(self._ceiling, count)
                self._quiet_since = now
        elif self._policy.auto and self._count(sent_at - self._window, sent_at) >= quota:
            # A whole allowance answered without a 429: double it (one round trip).
            self._quota = min(self._ceiling, quota * 2)

    def refused(self, sent_at: float, now: float, reset_at: float | None, coarse: bool) -> None:
        """A call sent at `sent_at` was answered 429 at `now`.

        `reset_at` is the server's hint as a clock time (None: none given);
        `coarse`: the hint is only good to the second.
        """
        self._rate_limited += 1
        policy = self._policy
        self._prune(now)
        if reset_at is not None and math.isfinite(reset_at) and reset_at > now:
            slack = policy.hint_step if coarse else 0.0
            jitter = policy.second * self._rng.uniform(0.0, _RESET_JITTER_S)
            resume = reset_at + slack + jitter
            self._learn_window(self._oldest_counted(sent_at), sent_at, reset_at + slack)
        else:
            # A reset in the past, now or missing is never "retry now".
            wait = min(policy.backoff_cap, policy.backoff * 2.0**self._backoffs)
            self._backoffs += 1
            resume = now + wait * self._rng.uniform(0.5, 1.0)
        self._paused_until = max(self._paused_until, resume)
        quota = self._quota
        if self._learned and quota is not None and (self.limit(now) or 0) > quota:
            # The one call above the quota was refused: the quota was right, so
            # the next try waits twice as long (a long run pays O(log) such 429s).
            self._quiet_needed = min(64, self._quiet_needed * 2)
        self._quiet_since = max(self._quiet_since, now)
        if sent_at < self._cut_before:
            return  # sent before the last cut was known: the same signal
        count = self._count(sent_at - self._window, sent_at)
        if self._learned and quota is not None and count < policy.isolated_share * quota:
            return  # a fault, not the quota: pause, keep the quota
        self._quota = max(1, count)
        self._learned = True
        self._cuts += 1
        self._cut_before = now

    def stats(self) -> QuotaStats:
        """A frozen snapshot."""
        return QuotaStats(
            limit=self._quota,
            window=self._window,
            declared=self._policy.declared,
            learned=self._learned,
            confirmed=self._confirmed,
            rate_limited=self._rate_limited,
            cuts=self._cuts,
            paused_until=self._paused_until,
        )

    # -- inside ------------------------------------------------------------------

    def _oldest_counted(self, sent_at: float) -> int:
        """Index in `_accepted` of the oldest call the server still counted at `sent_at`."""
        if not self._confirmed and sent_at == self._probe_at:
            # A refused probe: the server still counts the window we opened at
            # `window_start` (our estimate was short).
            return bisect.bisect_left(self._accepted, self._window_start)
        hi = bisect.bisect_right(self._accepted, sent_at)
        lo = bisect.bisect_left(self._accepted, sent_at - self._window)
        if self._learned and self._quota is not None:
            # The server counts about a quota of our calls: the oldest of the
            # last `quota` is the one its reset waits for. (Counting from the
            # believed window instead would reach calls a shorter real window
            # no longer counts, and teach a window far too long.)
            return max(lo, hi - self._quota)
        # The first 429: every call of ours in the window we believe in.
        return lo

    def _learn_window(self, lo: int, sent_at: float, reset_at: float) -> None:
        # `lo`: the earliest call of ours that the server still counted.
        if lo >= len(self._accepted) or self._accepted[lo] > sent_at:
            return
        second = self._policy.second
        observed = reset_at - self._accepted[lo]
        observed = min(max(observed, _MIN_WINDOW_S * second), _MAX_WINDOW_S * second)
        # A window shorter than the declared one is allowed: the gate keeps the
        # declared R per declared window as a separate hard cap (rate.py), so a
        # fault's 429 that teaches a short window cannot send more than R per minute.
        if not self._window_known:
            changed = not math.isclose(observed, self._window, rel_tol=0.02)
            self._window, self._window_known = observed, True
        else:
            # Only longer: a fixed window's first estimate is a lower bound.
            changed = observed > self._window * 1.02
            self._window = max(self._window, observed)
        if changed:
            self._confirmed = False

    def _count(self, after: float, until: float) -> int:
        """Accepted calls sent in (after, until]."""
        return bisect.bisect_right(self._accepted, until) - bisect.bisect_right(
            self._accepted, after
        )

    def _prune(self, now: float) -> None:
        horizon = now - 2 * max(self._window, self._policy.window) - self._policy.second
        cut = bisect.bisect_left(self._accepted, horizon)
        if cut:
            del self._accepted[:cut]
