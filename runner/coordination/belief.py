"""What every worker on one API key believes of its rate limit: one learner, replayed.

The local gate learns the server's real limit with
runner/scheduling/quota.py's `QuotaLearner` (a 429 teaches the quota and
the window, one cut per server window, a careful growth back). The shared
gate must learn the same way, from the calls of *every* worker, and every
worker must apply the same belief. So the learner is not written again (in
Lua or here): each worker keeps its own `QuotaLearner` and feeds it the
same events in the same order, and a deterministic learner fed the same
sequence ends in the same state.

The sequence is a Redis stream (`RateKeys.events`), one entry per event of
a counted call, all stamped with Redis's clock:

- ``s`` started: the admission script admitted a call at ``at``;
- ``a`` accepted: the call sent at ``at`` got an answer other than 429 at ``now``;
- ``r`` refused: the call sent at ``at`` got a 429 at ``now``, ``wait`` seconds
  to the server's reset ('' when it gave none), ``c`` 1 when that hint is good
  only to the second.

The admission script admits only a worker whose belief has applied every
event in the stream (it answers the unseen ones instead), so no call is
admitted under an outdated belief. This module is pure: it turns stream
entries into learner calls; gate.py does the I/O.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Mapping
from typing import Final

from runner.scheduling.quota import QuotaLearner, QuotaPolicy, QuotaStats

STARTED: Final = "s"
ACCEPTED: Final = "a"
REFUSED: Final = "r"

# The jitter's seed: the same for every worker, so their learners draw alike.
_SEED: Final = 0

Entry = tuple[str, Mapping[str, str]]
"""One stream entry as redis-py answers it: (id, fields)."""


def stream_id(text: str) -> tuple[int, int]:
    """A stream entry id ("<ms>-<seq>", or "0") as a pair that sorts as Redis orders them."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def policy_for(limit: int | None, window: float, *, auto: bool = False) -> QuotaPolicy:
    """The learner's policy of a declared `limit` per `window` clock seconds.

    The same starting belief as runner/scheduling/rate.py's RateGate: the
    declared window is a (time-scaled) minute, so one real second on Redis's
    clock is `window / 60` of it, and the back-off starts there. `auto`: no
    declared limit (`limit` is ignored): one call, doubled per round trip.
    """
    second = window / 60.0
    declared = None if auto else limit
    return QuotaPolicy(declared=declared, window=window, auto=auto, second=second, backoff=second)


class SharedBelief:
    """One worker's replay of the key's event stream (see the module docstring).

    `seen` is the id of the last entry applied ('0' before the first).
    """

    def __init__(self, policy: QuotaPolicy) -> None:
        self._policy = policy
        self.learner = QuotaLearner(policy, rng=random.Random(_SEED))
        self.seen = "0"

    def apply(self, entries: Iterable[Entry]) -> None:
        """Feed the learner these stream entries, in order, each once.

        Entries at or before `seen` are skipped (two answers of one worker may
        carry the same entries); unknown kinds too.
        """
        learner = self.learner
        for entry_id, fields in entries:
            if stream_id(entry_id) <= stream_id(self.seen):
                continue
            self.seen = entry_id
            kind = fields.get("k")
            at = float(fields.get("at", "0"))
            if kind == STARTED:
                learner.started(at)
            elif kind == ACCEPTED:
                learner.accepted(at, float(fields["now"]))
            elif kind == REFUSED:
                now = float(fields["now"])
                wait = fields.get("wait", "")
                reset_at = None if wait == "" else now + float(wait)
                learner.refused(at, now, reset_at, fields.get("c") == "1")

    def forget_stream(self) -> None:
        """The stream is gone (Redis came back empty): start a new replay from what was learned.

        What this worker learned is kept as the starting belief (as a resumed
        run starts from OUT/.runner/rate.json); the replay starts again at the
        new stream's first entry.
        """
        stats = self.learner.stats()
        policy = self._policy
        if stats.learned and stats.limit is not None:
            policy = dataclasses.replace(policy, learned=stats.limit, learned_window=stats.window)
        self.learner = QuotaLearner(policy, rng=random.Random(_SEED))
        self.seen = "0"

    def stats(self) -> QuotaStats:
        """The learner's snapshot."""
        return self.learner.stats()
