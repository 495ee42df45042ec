"""The credit guard shared by every worker of a run.

The same rules as runner/scheduling/credits.py's `CreditGuard` (reserve
before a submit, settle with the reported cost, refund a failure that was
not billed, keep an ambiguous submit's cost held, a stop reason that ends
new reservations), with the figures in one Redis hash and the reservations
in another, changed by one Lua script per step. Reservations are keyed by
job, not by worker: a job taken over from a dead worker is settled against
the reservation that worker made, so nothing is counted twice or lost.

`stats()` is the whole run's figures as the last reply showed them (every
call returns them), so the scheduler's synchronous snapshot costs no call.

When the coordinator is lost no new reservation is made (`reserve` says
False and `stopped` says why), and settlements are kept locally: the ledger
holds every outcome, and the next start of this worker reconciles it with
the run (`*_if_held`, so nothing is counted twice).

Amounts are µ$ (`runner.money.Micros`) here, in the Lua script and in Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.coordination.client import RedisLink, Unreachable
from runner.coordination.identity import RunKeys
from runner.coordination.scripts import CREDITS
from runner.jobs import Job
from runner.money import ZERO, Micros
from runner.params import DEFAULT_PRICES
from runner.scheduling.credits import CreditStats, estimate_micros


class SharedCreditGuard:
    """Implements runner.scheduling.credits.Credits with the run's figures in Redis."""

    def __init__(
        self,
        link: RedisLink,
        keys: RunKeys,
        budget: Micros | None,
        prices: Mapping[str, Mapping[str, float]] = DEFAULT_PRICES,
    ) -> None:
        self._link = link
        self._keys = [keys.credits, keys.held]
        self._prices = prices
        self._budget = budget
        # This worker's reservations, to answer `settle` when Redis cannot.
        self._mine: dict[str, Micros] = {}
        # Jobs another worker took over before this one sent them: their hold is the taker's.
        self._disowned: set[str] = set()
        self._figures = (ZERO, ZERO, ZERO, ZERO)  # reserved, spent, ambiguous, refunded
        self._stopped: str | None = None

    def estimate(self, job: Job) -> Micros:
        """Estimated µ$ of one job."""
        return estimate_micros(job, self._prices)

    @property
    def stopped(self) -> str | None:
        """The run's stop reason (budget, 406), or why this worker cannot reserve (lost)."""
        return self._stopped or self._link.lost

    def _take(self, reply: Any) -> Micros:
        result, reserved, spent, ambiguous, refunded, budget, stopped = reply
        self._figures = (
            Micros(int(reserved)),
            Micros(int(spent)),
            Micros(int(ambiguous)),
            Micros(int(refunded)),
        )
        if int(budget) >= 0:
            self._budget = Micros(int(budget))
        if stopped:
            self._stopped = str(stopped)
        return Micros(int(result))

    async def _op(self, op: str, key: str, amount: Micros | None = None) -> Micros | None:
        """Run one credits op; None when the coordinator is lost."""
        try:
            reply = await self._link.script(
                CREDITS, self._keys, [op, key, "" if amount is None else amount]
            )
        except Unreachable:
            return None
        return self._take(reply)

    async def refresh(self) -> None:
        """Read the run's figures (start-up, status)."""
        await self._op("read", "")

    async def stop(self, reason: str) -> None:
        """Stop new reservations for the whole run; the first reason wins."""
        if self._link.lost is not None:
            return  # not a credit stop: this worker just cannot reserve any more
        if self._stopped is None:
            self._stopped = reason
        await self._op("stop", reason)

    async def reserve(self, key: str, amount: Micros) -> bool:
        """Hold `amount` µ$ for job `key`, against the run's budget."""
        result = await self._op("reserve", key, amount)
        if result != 1:
            return False
        self._mine[key] = amount
        return True

    async def hold(self, key: str, amount: Micros) -> None:
        """Hold `amount` µ$ for a job already submitted, whatever the budget says."""
        if await self._op("hold", key, amount) is not None:
            self._mine[key] = amount

    async def settle(self, key: str, charged: Micros | None) -> Micros:
        """The job completed: its reservation (whoever made it) becomes spend; µ$ counted."""
        held = self._mine.pop(key, ZERO)
        result = await self._op("settle", key, charged)
        if result is None:
            spent = held if charged is None else charged
            self._offline(held, spent=spent)
            return spent
        return result

    def disown(self, key: str) -> None:
        """Another worker took the job over before this one sent it: leave its hold alone.

        A refund or an ambiguous mark of it from here would free or count the
        hold the taker settles against.
        """
        self._disowned.add(key)
        self._mine.pop(key, None)

    async def refund(self, key: str) -> None:
        """The job ended without being billed: free its reservation."""
        if key in self._disowned:
            return
        held = self._mine.pop(key, ZERO)
        if await self._op("refund", key) is None:
            self._offline(held, refunded=held)

    async def mark_ambiguous(self, key: str) -> None:
        """The submit's answer was lost: keep its cost held as possible spend."""
        if key in self._disowned:
            return
        held = self._mine.pop(key, ZERO)
        if await self._op("ambiguous", key) is None:
            self._offline(held, ambiguous=held)

    def _offline(
        self, held: Micros, *, spent: int = 0, ambiguous: int = 0, refunded: int = 0
    ) -> None:
        """Keep the figures this worker reports moving while the coordinator is lost (µ$)."""
        reserved, spent0, ambiguous0, refunded0 = self._figures
        self._figures = (
            Micros(max(0, reserved - held)),
            Micros(spent0 + spent),
            Micros(ambiguous0 + ambiguous),
            Micros(refunded0 + refunded),
        )

    async def reconcile(self, key: str, state: str, charged: Micros | None) -> None:
        """Count a final state this worker's ledger holds, if the job still holds a reservation."""
        op = {"completed": "settle", "failed": "refund"}.get(state, "ambiguous")
        await self._op(f"{op}_if_held", key, charged)

    def stats(self) -> CreditStats:
        """The run's figures in µ$, as last seen."""
        reserved, spent, ambiguous, refunded = self._figures
        return CreditStats(
            budget=self._budget,
            reserved=reserved,
            spent=spent,
            ambiguous=ambiguous,
            refunded=refunded,
            stopped=self._stopped,
        )
