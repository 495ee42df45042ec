"""Deterministic shards for CI matrices: `--shard K/N` takes the Kth of every N jobs.

Jobs are dealt round-robin by their position in the run's expansion order
(after `--filter` / `--limit`), so shard sizes differ by at most one and
every machine of a matrix, expanding the same manifest, agrees on the split.
By default each shard also gets 1/N of the budget (`split_budget`), so that
N shards together stay under the manifest's `max_credits` and
`requests_per_minute`; `--shard-budget full` gives each the whole budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from runner.errors import UsageError
from runner.money import micros, to_usd
from runner.subset import Subset

if TYPE_CHECKING:
    from runner.manifest import Manifest

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` (1-based) of `count`."""

    index: int
    count: int

    def owns(self, position: int) -> bool:
        """Whether the job at this 0-based position of the run's job stream belongs here."""
        return position % self.count == self.index - 1


@dataclass(frozen=True, slots=True)
class ShardBudget:
    """One shard's share of the budget: USD cap (None: no cap) and requests per minute."""

    max_credits: float | None
    rpm: int | Literal["auto"]


def split_budget(
    shard: Shard, max_credits: float | None, rpm: int | Literal["auto"]
) -> ShardBudget:
    """The 1/N share of a run's budget for one of N shards (rpm at least 1 per minute;
    ``auto`` stays auto: each shard learns its own share).

    Whole micro-dollars and whole requests per minute, the remainder going
    one unit each to the first shards, so the N shares add up to exactly the
    whole (10 rpm over 3 shards: 4, 3, 3), never more (but for the floor of
    1 rpm when there are more shards than requests per minute).
    """
    cap = None
    if max_credits is not None:
        cap = to_usd(_share(micros(max_credits), shard))
    return ShardBudget(cap, rpm if rpm == "auto" else max(1, _share(rpm, shard)))


def _share(whole: int, shard: Shard) -> int:
    """Shard K's part of `whole` units over N: the quotient, one more for K <= the remainder."""
    base, extra = divmod(whole, shard.count)
    return base + (1 if shard.index <= extra else 0)


def shard_of(manifest: Manifest, shard: Shard | None) -> Manifest:
    """`manifest` whose expansion, count and plan are those of one shard (None: unchanged)."""
    if shard is None:
        return manifest
    return replace(manifest, subset=replace(manifest.subset or Subset(), shard=shard))


def parse_shard(text: str) -> Shard:
    """Parse `K/N` (1 <= K <= N)."""
    match = _SHARD.match(text)
    if not match:
        raise UsageError(f"--shard {text!r}: expected K/N, e.g. --shard 2/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise UsageError(
            f"--shard {text!r}: K must be between 1 and N, e.g. --shard 1/{max(count, 1)}"
        )
    return Shard(index, count)
