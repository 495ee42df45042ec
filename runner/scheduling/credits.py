"""The credit guard: a run never reserves past its USD budget.

Each job's cost is estimated from the price table (price(mode, resolution) x
n), reserved before its submit, settled with the cost the API reports when
it reports one (else the estimate counts as spent), and refunded when the job
ends in a final failure that was not billed. An *ambiguous* submit (the
answer was lost, so the server may have accepted and billed it) keeps its
reservation until the run ends: it is reported as possible spend, never
silently freed.

Amounts are kept in integer micro-dollars so that a million reservations and
refunds add up exactly; the public API speaks USD floats.

The scheduler sees a guard through the `Credits` protocol. Its changes are
async because a guard shared by several workers (runner.coordination) makes
a network call for each; `CreditGuard`, the single-process guard, never
waits, so its awaits cost nothing and keep each change atomic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from runner.jobs import Job
from runner.params import DEFAULT_PRICES, price

_MICRO = 1_000_000


def _to_micro(usd: float) -> int:
    return round(usd * _MICRO)


def _to_usd(micro: int) -> float:
    return micro / _MICRO


@dataclass(frozen=True, slots=True)
class CreditStats:
    """A snapshot in USD."""

    budget: float | None
    reserved: float
    spent: float
    ambiguous: float
    refunded: float
    stopped: str | None

    @property
    def committed(self) -> float:
        """Spent plus everything still reserved (in flight or ambiguous)."""
        return self.reserved + self.spent + self.ambiguous


class Credits(Protocol):
    """What the scheduler needs of a credit guard. Amounts in USD."""

    def estimate(self, job: Job) -> float:
        """Estimated USD of one job."""
        ...

    @property
    def stopped(self) -> str | None:
        """Why new submits are stopped (budget reached, 406), or None."""
        ...

    async def stop(self, reason: str) -> None:
        """Stop new reservations; the first reason wins."""

    async def reserve(self, key: str, amount: float) -> bool:
        """Hold `amount` for job `key`; False (nothing held) when it does not fit."""
        ...

    async def hold(self, key: str, amount: float) -> None:
        """Hold `amount` for a job already submitted (re-attached), whatever the budget."""
        ...

    async def settle(self, key: str, charged: float | None) -> float:
        """The job completed: its reservation becomes spend; returns the USD counted."""
        ...

    async def refund(self, key: str) -> None:
        """The job ended without being billed: free its reservation."""

    async def mark_ambiguous(self, key: str) -> None:
        """The submit's answer was lost: keep its cost held as possible spend."""

    def stats(self) -> CreditStats:
        """A frozen snapshot (for a shared guard: the whole run's, as last seen)."""
        ...


class CreditGuard:
    """Reserve, settle and refund job costs against `budget` (USD, None = no cap).

    Implements `Credits` for one process.
    """

    def __init__(
        self,
        budget: float | None,
        prices: Mapping[str, Mapping[str, float]] = DEFAULT_PRICES,
    ) -> None:
        self._budget = None if budget is None else _to_micro(budget)
        self._prices = prices
        self._held: dict[str, int] = {}
        self._reserved = 0
        self._spent = 0
        self._ambiguous = 0
        self._refunded = 0
        self._stopped: str | None = None

    def estimate(self, job: Job) -> float:
        """Estimated USD of one job."""
        r = job.request
        return price(r.mode, r.resolution, r.n, self._prices)

    @property
    def stopped(self) -> str | None:
        """Why new submits are stopped (budget reached, 406), or None."""
        return self._stopped

    async def stop(self, reason: str) -> None:
        """Stop new reservations (e.g. the API answered 406); the first reason wins."""
        if self._stopped is None:
            self._stopped = reason

    def fits(self, amount: float) -> bool:
        """Whether a reservation of `amount` USD would stay within the budget."""
        if self._budget is None:
            return True
        return self._reserved + self._spent + self._ambiguous + _to_micro(amount) <= self._budget

    async def reserve(self, key: str, amount: float) -> bool:
        """Hold `amount` USD for job `key`. False (and nothing held) when it does not fit."""
        if self._stopped is not None:
            return False
        if key in self._held:
            return True
        if not self.fits(amount):
            return False
        micro = _to_micro(amount)
        self._held[key] = micro
        self._reserved += micro
        return True

    async def hold(self, key: str, amount: float) -> None:
        """A job an earlier run submitted may be billed: hold its cost, budget or not.

        The budget then counts it, so the run starts fewer new jobs instead of
        overspending.
        """
        if key not in self._held:
            micro = _to_micro(amount)
            self._held[key] = micro
            self._reserved += micro

    async def settle(self, key: str, charged: float | None) -> float:
        """The job completed: its reservation becomes spend (the reported cost if any).

        Returns the USD counted as spent for it: 0 when nothing is held (settled
        already, or its hold became ambiguous), so an end counts once, as in
        the shared guard (tests/coordination/test_coord_contract.py).
        """
        if key not in self._held:
            return 0.0
        micro = self._held.pop(key)
        self._reserved -= micro
        spent = micro if charged is None else _to_micro(charged)
        self._spent += spent
        return _to_usd(spent)

    async def refund(self, key: str) -> None:
        """The job ended without being billed: free its reservation."""
        micro = self._held.pop(key, 0)
        self._reserved -= micro
        self._refunded += micro

    async def mark_ambiguous(self, key: str) -> None:
        """The submit's answer was lost: its cost may have been billed. Keep it held."""
        micro = self._held.pop(key, 0)
        self._reserved -= micro
        self._ambiguous += micro

    def add_spent(self, usd: float, *, possible: float = 0.0) -> None:
        """Count earlier runs of the same folder (resume) against the budget.

        `usd` was charged; `possible` may have been (ambiguous submits): it is
        held as ambiguous spend.
        """
        self._spent += _to_micro(usd)
        self._ambiguous += _to_micro(possible)

    def stats(self) -> CreditStats:
        """A frozen snapshot in USD."""
        return CreditStats(
            budget=None if self._budget is None else _to_usd(self._budget),
            reserved=_to_usd(self._reserved),
            spent=_to_usd(self._spent),
            ambiguous=_to_usd(self._ambiguous),
            refunded=_to_usd(self._refunded),
            stopped=self._stopped,
        )
