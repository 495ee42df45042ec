"""Deterministic shards for CI matrices: `--shard K/N` takes the jobs whose key falls in K."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.errors import UsageError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` (1-based) of `count`."""

    index: int
    count: int

    def owns(self, key: str) -> bool:
        """Whether the job with this key belongs to this shard.

        The key's hash digits are uniform, so shards are balanced, and the
        split depends on the job alone: every machine of a matrix agrees.
        """
        digest = key.split(":", 1)[-1]
        return int(digest[:12], 16) % self.count == self.index - 1


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
