"""The gallery's cap and its bounded selection: the first `size` of a stream, in O(size).

The gallery reads a folder's sidecars and ledger rows one by one and keeps
only the entries its page shows (at most `GALLERY_MAX_ITEMS`), so its
memory is bounded by that cap, not by the folder. Two helpers make that
possible: `Smallest`, the `size` smallest values offered (a heap), and
`DigestSet`, a membership test over every image of the folder at 8 bytes
per member (64-bit digests in a sorted array, not a set of strings).
"""

from __future__ import annotations

import hashlib
import heapq
from array import array
from bisect import bisect_left
from typing import Final, Generic, Protocol, Self, TypeVar

GALLERY_MAX_ITEMS: Final = 10_000
"""At most this many entries on one page (images and jobs without one).

A contact sheet of 100,000 images helps nobody and no browser lays it out;
above the cap the page shows the entries that need attention first, then
images in job order, and its header says how to see another part
(`runner gallery OUT --filter ...`). Only entries shown get thumbnails,
and writing the page holds memory for the cap's entries, not the folder's.
"""


class _Ordered(Protocol):
    def __lt__(self, other: Self, /) -> bool: ...


T = TypeVar("T", bound=_Ordered)


class _Desc(Generic[T]):
    """A value with its order reversed: heapq's min-heap then keeps the largest on top."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __lt__(self, other: _Desc[T]) -> bool:
        return other.value < self.value


class Smallest(Generic[T]):
    """The `size` smallest values offered (None: every one), in O(size) memory.

    Values must be unique, or with `distinct` a value already kept is
    ignored (a job's key offered once per image). `offered` counts the
    offers not ignored.
    """

    def __init__(self, size: int | None, *, distinct: bool = False) -> None:
        if size is not None and size < 0:
            raise ValueError(f"size must be 0 or more, got {size}")
        self._size = size
        self._heap: list[_Desc[T]] = []
        self._kept: set[object] | None = set() if distinct else None
        self.offered = 0

    def admits(self, value: T) -> bool:
        """Whether `offer(value)` would keep it (a value not already kept): so a caller
        makes a costly value only when it is kept. Changes nothing.
        """
        if self._size is None or len(self._heap) < self._size:
            return True
        return bool(self._size) and value < self._heap[0].value

    def offer(self, value: T) -> T | None:
        """Keep `value` if it is among the `size` smallest so far; the value it pushed
        out, if any. A value pushed out is never kept again: once `size` are kept, the
        largest of them only falls.
        """
        kept = self._kept
        if kept is not None and value in kept:
            return None
        self.offered += 1
        dropped = None
        if self._size is None or len(self._heap) < self._size:
            heapq.heappush(self._heap, _Desc(value))
        elif self._size and value < self._heap[0].value:
            dropped = heapq.heapreplace(self._heap, _Desc(value)).value
            if kept is not None:
                kept.discard(dropped)
        else:
            return None
        if kept is not None:
            kept.add(value)
        return dropped

    def __contains__(self, value: object) -> bool:
        """Whether `value` is kept (only for `distinct`; O(1))."""
        if self._kept is None:
            raise TypeError("membership needs Smallest(..., distinct=True)")
        return value in self._kept

    def __len__(self) -> int:
        return len(self._heap)

    def sorted(self) -> list[T]:
        """The kept values, smallest first."""
        return sorted(d.value for d in self._heap)


def digest(text: str) -> int:
    """A 64-bit digest of `text` (blake2b): collisions among 10**6 names have odds ~ 3e-8."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


_RUN: Final = 4096  # digests sorted at a time by DigestSet.freeze


class DigestSet:
    """A set of strings held as 64-bit digests: 8 bytes a member, a few MB for 10**5.

    `add` every member, `freeze` once, then test with `in` (binary search).
    """

    def __init__(self) -> None:
        self._digests = array("Q")
        self._frozen = False

    def add(self, text: str) -> None:
        """Add `text` (before `freeze`)."""
        if self._frozen:
            raise RuntimeError("DigestSet is frozen")
        self._digests.append(digest(text))

    def freeze(self) -> None:
        """Sort the digests so that `in` can search them; no `add` after this.

        Sorted in runs of `_RUN` merged into one array: `sorted` of the whole would
        hold every digest as a Python int (~44 bytes each, 4 MB per 100,000) at once.
        """
        digests = self._digests
        runs = [array("Q", sorted(digests[at : at + _RUN])) for at in range(0, len(digests), _RUN)]
        self._digests = runs[0] if len(runs) == 1 else array("Q", heapq.merge(*runs))
        self._frozen = True

    def __contains__(self, text: object) -> bool:
        if not self._frozen:
            raise RuntimeError("freeze a DigestSet before testing membership")
        if not isinstance(text, str):
            return False
        value = digest(text)
        at = bisect_left(self._digests, value)
        return at < len(self._digests) and self._digests[at] == value

    def __len__(self) -> int:
        return len(self._digests)
