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

The stream is trimmed, and no replay needs what was trimmed: every
`CHECKPOINT_EVERY` entries a worker stores its learner's whole state as of
the last entry it applied (`RateKeys.belief`: that entry's id and the
state), and the entries before that id are trimmed. A worker whose replay
is behind the checkpoint (it joined late, or stalled) loads the checkpoint
instead of the entries: since every learner fed the same entries is in the
same state, the checkpoint *is* the state it would reach. Trimming by age
alone would not do: a 429 long ago taught the quota every worker holds, and
a late joiner replaying only the last windows would start from the
declared limit and admit above it.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterable, Mapping
from typing import Any, Final

from runner.scheduling.quota import QuotaLearner, QuotaPolicy, QuotaStats

STARTED: Final = "s"
ACCEPTED: Final = "a"
REFUSED: Final = "r"

# The jitter's seed: the same for every worker, so their learners draw alike.
_SEED: Final = 0

CHECKPOINT_EVERY: Final = 100
"""Entries applied between two checkpoints of the learner (the stream keeps about this many)."""

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


def is_before(a: str, b: str) -> bool:
    """Whether stream id `a` comes before `b` (ids as Redis orders them)."""
    return stream_id(a) < stream_id(b)


# The learner's fields that are not state: its policy (each worker has its
# own, the same one) and its random generator (stored as the generator's state).
_NOT_STATE: Final = ("_policy", "_rng")


def snapshot(learner: QuotaLearner) -> str:
    """The learner's whole state as JSON text (exact: floats round-trip, infinities too).

    Every field but the policy is taken as it is, so a field added to
    QuotaLearner is carried without a change here (the round-trip test
    compares every field).
    """
    fields = {k: v for k, v in vars(learner).items() if k not in _NOT_STATE}
    rng: Any = learner._rng.getstate()  # the jitter draws are state too
    return json.dumps({"fields": fields, "rng": rng})


def restore(policy: QuotaPolicy, text: str) -> QuotaLearner:
    """A learner with `policy` in the state `snapshot` wrote."""
    doc = json.loads(text)
    rng = random.Random(_SEED)
    version, internal, gauss = doc["rng"]
    rng.setstate((version, tuple(internal), gauss))
    learner = QuotaLearner(policy, rng=rng)
    vars(learner).update(doc["fields"])
    return learner


class SharedBelief:
    """One worker's replay of the key's event stream (see the module docstring).

    `seen` is the id of the last entry applied ('0' before the first).
    """

    def __init__(self, policy: QuotaPolicy) -> None:
        self._policy = policy
        self.learner = QuotaLearner(policy, rng=random.Random(_SEED))
        self.seen = "0"
        # Entries applied since the last checkpoint this worker wrote or loaded.
        self._since_checkpoint = 0

    def checkpoint_due(self) -> bool:
        """Whether this worker should store a checkpoint (`snapshot` at `seen`)."""
        return self._since_checkpoint >= CHECKPOINT_EVERY and self.seen != "0"

    def checkpointed(self) -> None:
        """A checkpoint at `seen` is stored (by this worker or another)."""
        self._since_checkpoint = 0

    def load(self, entry_id: str, state: str) -> bool:
        """Take the checkpoint at `entry_id` when this replay is behind it; whether it did.

        The entries up to `entry_id` may be trimmed: the checkpoint is the
        state applying them gives.
        """
        if not entry_id or not is_before(self.seen, entry_id):
            return False
        self.learner = restore(self._policy, state)
        self.seen = entry_id
        self._since_checkpoint = 0
        return True

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
            self._since_checkpoint += 1
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
        self._policy = policy
        self.learner = QuotaLearner(policy, rng=random.Random(_SEED))
        self.seen = "0"
        self._since_checkpoint = 0

    def stats(self) -> QuotaStats:
        """The learner's snapshot."""
        return self.learner.stats()
