"""The credit guard: a run never reserves past its budget.

Each job's cost is estimated from the price table (price(mode, resolution) x
n), reserved before its submit, settled with the cost the API reports when
it reports one (else the estimate counts as spent), and refunded when the job
ends in a final failure that was not billed. An *ambiguous* submit (the
answer was lost, so the server may have accepted and billed it) keeps its
reservation until the run ends: it is reported as possible spend, never
silently freed.

Every amount in and out is integer micro-dollars (`runner.money.Micros`), so
that a million reservations and refunds add up exactly; the USD floats of a
price table become Micros in `estimate_micros`, a reported cost in
`runner.money.maybe_micros` where the answer comes in.

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
from runner.money import ZERO, Micros, micros
from runner.params import DEFAULT_PRICES, price


def estimate_micros(job: Job, prices: Mapping[str, Mapping[str, float]] = DEFAULT_PRICES) -> Micros:
    """Estimated µ$ of one job from the price table (USD per image x the images billed:
    n, and an edit's sources where the provider bills them)."""
    r = job.request
    return micros(price(r.mode, r.resolution, r.billed_images, prices))


@dataclass(frozen=True, slots=True)
class CreditStats:
    """A snapshot; amounts in µ$ (budget None = no cap)."""

    budget: Micros | None
    reserved: Micros
    spent: Micros
    ambiguous: Micros
    refunded: Micros
    stopped: str | None
    # Of `spent`: what earlier runs of the folder were charged (`add_spent`).
    earlier: Micros = ZERO

    @property
    def committed(self) -> Micros:
        """Spent plus everything still reserved (in flight or ambiguous), µ$."""
        return Micros(self.reserved + self.spent + self.ambiguous)


class Credits(Protocol):
    """What the scheduler needs of a credit guard. Amounts in µ$."""

    def estimate(self, job: Job) -> Micros:
        """Estimated µ$ of one job."""
        ...

    @property
    def stopped(self) -> str | None:
        """Why new submits are stopped (budget reached, 406), or None."""
        ...

    async def stop(self, reason: str) -> None:
        """Stop new reservations; the first reason wins."""

    async def reserve(self, key: str, amount: Micros) -> bool:
        """Hold `amount` for job `key`; False (nothing held) when it does not fit."""
        ...

    async def hold(self, key: str, amount: Micros) -> None:
        """Hold `amount` for a job already submitted (re-attached), whatever the budget."""
        ...

    async def settle(self, key: str, charged: Micros | None) -> Micros:
        """The job completed: its reservation becomes spend (`charged` if reported).

        Returns the µ$ counted as spent for it.
        """
        ...

    async def refund(self, key: str) -> None:
        """The job ended without being billed: free its reservation."""

    async def mark_ambiguous(self, key: str) -> None:
        """The submit's answer was lost: keep its cost held as possible spend."""

    def stats(self) -> CreditStats:
        """A frozen snapshot (for a shared guard: the whole run's, as last seen)."""
        ...


class CreditGuard:
    """Reserve, settle and refund job costs against `budget` (µ$, None = no cap).

    Implements `Credits` for one process.
    """

    def __init__(
        self,
        budget: Micros | None,
        prices: Mapping[str, Mapping[str, float]] = DEFAULT_PRICES,
    ) -> None:
        self._budget = budget
        self._prices = prices
        self._held: dict[str, Micros] = {}
        self._reserved = ZERO
        self._spent = ZERO
        self._earlier = ZERO
        self._ambiguous = ZERO
        self._refunded = ZERO
        self._stopped: str | None = None

    def estimate(self, job: Job) -> Micros:
        """Estimated µ$ of one job."""
        return estimate_micros(job, self._prices)

    @property
    def stopped(self) -> str | None:
        """Why new submits are stopped (budget reached, 406), or None."""
        return self._stopped

    async def stop(self, reason: str) -> None:
        """Stop new reservations (e.g. the API answered 406); the first reason wins."""
        if self._stopped is None:
            self._stopped = reason

    def fits(self, amount: Micros) -> bool:
        """Whether a reservation of `amount` µ$ would stay within the budget."""
        if self._budget is None:
            return True
        return self._reserved + self._spent + self._ambiguous + amount <= self._budget

    async def reserve(self, key: str, amount: Micros) -> bool:
        """Hold `amount` µ$ for job `key`. False (and nothing held) when it does not fit."""
        if self._stopped is not None:
            return False
        if key in self._held:
            return True
        if not self.fits(amount):
            return False
        self._held[key] = amount
        self._reserved = Micros(self._reserved + amount)
        return True

    async def hold(self, key: str, amount: Micros) -> None:
        """A job an earlier run submitted may be billed: hold its cost, budget or not.

        The budget then counts it, so the run starts fewer new jobs instead of
        overspending.
        """
        if key not in self._held:
            self._held[key] = amount
            self._reserved = Micros(self._reserved + amount)

    async def settle(self, key: str, charged: Micros | None) -> Micros:
        """The job completed: its reservation becomes spend (the reported cost if any).

        Returns the µ$ counted as spent for it: 0 when nothing is held (settled
        already, or its hold became ambiguous), so an end counts once, as in
        the shared guard (tests/coordination/test_coord_contract.py).
        """
        if key not in self._held:
            return ZERO
        held = self._held.pop(key)
        self._reserved = Micros(self._reserved - held)
        spent = held if charged is None else charged
        self._spent = Micros(self._spent + spent)
        return spent

    async def refund(self, key: str) -> None:
        """The job ended without being billed: free its reservation."""
        held = self._held.pop(key, ZERO)
        self._reserved = Micros(self._reserved - held)
        self._refunded = Micros(self._refunded + held)

    async def mark_ambiguous(self, key: str) -> None:
        """The submit's answer was lost: its cost may have been billed. Keep it held."""
        held = self._held.pop(key, ZERO)
        self._reserved = Micros(self._reserved - held)
        self._ambiguous = Micros(self._ambiguous + held)

    def add_spent(self, charged: Micros, *, possible: Micros = ZERO) -> None:
        """Count earlier runs of the same folder (resume) against the budget.

        `charged` µ$ were charged; `possible` may have been (ambiguous
        submits): it is held as ambiguous spend.
        """
        self._spent = Micros(self._spent + charged)
        self._earlier = Micros(self._earlier + charged)
        self._ambiguous = Micros(self._ambiguous + possible)

    def stats(self) -> CreditStats:
        """A frozen snapshot, µ$."""
        return CreditStats(
            budget=self._budget,
            reserved=self._reserved,
            spent=self._spent,
            ambiguous=self._ambiguous,
            refunded=self._refunded,
            stopped=self._stopped,
            earlier=self._earlier,
        )
