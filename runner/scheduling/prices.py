"""What a job will cost, as a belief the run checks against every charge. Pure.

The price table (runner.params, overridable in the manifest) is what we were
told, not what the API charges (STYLE.md 15). A table 10x too low let a
$0.50 cap spend $5.00, because reservations used the table and the charges
never fed back. `PriceBook` holds one belief per *price class* (mode,
resolution, edit or not), per image:

- **Unobserved**: reserve `safety` x the table, and let only one job of the
  class be in flight (the scout). Then spend <= cap whenever the true price
  is <= `safety` x the table, and spend <= cap + one job's true price for a
  class whose true price is anything up to `absurd` (its scout may overshoot
  its reservation once; every later job of the class is reserved at what the
  scout was charged).
- **Observed**: reserve max(table, highest charge seen) per image, at full
  concurrency. A charge above the table is a *surprise*, said loudly once per
  class (and again if it rises further).
- **Charged, cost unknown**: a job completed and its answer stated no usable
  cost (missing, negative, NaN, infinite, or above `absurd` per image): that
  cost is recorded as unknown and counted at the reservation, never trusted
  downward; the class stays reserved at `safety` x the table, without a scout
  (nothing more can be learned from the answers).

Amounts are integer micro-dollars (runner.money).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from runner.backends.hints import MAX_COST_PER_IMAGE
from runner.jobs import Job
from runner.money import ZERO, Micros, format_usd, micros, to_usd
from runner.params import DEFAULT_PRICES

PriceClass = tuple[str, str, int]
"""(mode, resolution, source images): jobs that one price per image covers. The count
(0: a generation) keeps a multi-image edit, billed for its inputs on xAI, apart from a
one-image edit; 0 and 1 hash as the False and True this once was."""

Knowledge = Literal["unobserved", "observed", "unreported"]


@dataclass(frozen=True, slots=True)
class PricePolicy:
    """`safety`: the reservation factor of an unobserved class; `absurd`: USD per image
    above which a reported cost is not believed (by default the wire's own bound, so
    a cost the answer parser keeps is never one the book refuses)."""

    safety: float = 2.0
    absurd: float = MAX_COST_PER_IMAGE
    scout: bool = True


@dataclass(frozen=True, slots=True)
class Charge:
    """What a completed job counts as spent: `amount` (µ$), and whether the API said it.

    `surprise` is a sentence for the user when the charge showed the table wrong.
    """

    amount: Micros
    reported: bool
    surprise: str | None = None


def price_class(job: Job) -> PriceClass:
    """The price class of a job's request."""
    r = job.request
    return (r.mode, r.resolution, len(r.images))


def believable(cost: float | None, images: int, policy: PricePolicy) -> bool:
    """Whether a reported cost of a job of `images` images can be taken as the charge."""
    if cost is None or isinstance(cost, bool) or not math.isfinite(cost) or cost < 0:
        return False
    return cost <= policy.absurd * max(1, images)


class PriceBook:
    """The run's beliefs about prices; see the module docstring."""

    def __init__(
        self,
        table: Mapping[str, Mapping[str, float]] = DEFAULT_PRICES,
        policy: PricePolicy = PricePolicy(),
    ) -> None:
        self._table = table
        self._policy = policy
        self._seen: dict[PriceClass, Micros] = {}  # highest believable charge per image
        self._knowledge: dict[PriceClass, Knowledge] = {}
        self._scouts: Counter[PriceClass] = Counter()
        self._surprises: list[str] = []

    @property
    def surprises(self) -> tuple[str, ...]:
        """Every surprise said so far, oldest first."""
        return tuple(self._surprises)

    def table_price(self, job: Job) -> Micros:
        """The table's estimate for the whole job: n images, and its source images where the
        provider bills them."""
        r = job.request
        return micros(self._table[r.mode][r.resolution] * r.billed_images)

    def knowledge(self, job: Job) -> Knowledge:
        """What is known of the job's class."""
        return self._knowledge.get(price_class(job), "unobserved")

    def reservation(self, job: Job) -> Micros:
        """What to hold for the job before it is sent (µ$)."""
        cls = price_class(job)
        table = self.table_price(job)
        if self.knowledge(job) == "observed":
            return Micros(max(table, self._seen[cls] * job.request.n))
        return Micros(math.ceil(table * self._policy.safety))

    def may_start(self, job: Job) -> bool:
        """Whether the job may be sent now: not while its unobserved class has a scout out."""
        if not self._policy.scout or self.knowledge(job) != "unobserved":
            return True
        return self._scouts[price_class(job)] == 0

    def started(self, job: Job) -> None:
        """The job was sent (a scout, while its class is unobserved)."""
        if self.knowledge(job) == "unobserved":
            self._scouts[price_class(job)] += 1

    def ended(self, job: Job) -> None:
        """The job ended without a charge to learn from (failed, refunded, left)."""
        cls = price_class(job)
        if self._scouts[cls] > 0:
            self._scouts[cls] -= 1

    def recall(self, job: Job, charged: Micros) -> bool:
        """An earlier run of the folder was charged `charged` µ$ for `job`: believe it.

        Learned as that run's answer taught it, but silently (that run said
        any surprise). True when it was learned (a believable charge).
        """
        n = job.request.n
        if not believable(to_usd(charged), n, self._policy):
            return False
        cls = price_class(job)
        self._knowledge[cls] = "observed"
        self._seen[cls] = max(self._seen.get(cls, ZERO), Micros(math.ceil(charged / n)))
        return True

    def charged(self, job: Job, reported: float | None, held: Micros) -> Charge:
        """The job completed, the API reporting `reported` USD (None: not stated).

        `held` is what was reserved for it. Returns what counts as spent.
        """
        cls = price_class(job)
        self.ended(job)
        n = job.request.n
        if not believable(reported, n, self._policy):
            if self._knowledge.get(cls) != "observed":
                self._knowledge[cls] = "unreported"
            return Charge(held, reported=False)
        assert reported is not None
        amount = micros(reported)
        per_image = Micros(math.ceil(amount / n))
        before = self._seen.get(cls)
        self._knowledge[cls] = "observed"
        surprise = None
        table = self.table_price(job)
        if before is None or per_image > before:
            self._seen[cls] = per_image
            if amount > table:
                mode, resolution, edit = cls
                edits = "" if not edit else " edit" if edit == 1 else f" {edit}-image edit"
                what = f"{mode} {resolution}{edits}"
                ratio = amount / table if table else math.inf
                surprise = (
                    f"the API charged {format_usd(amount)} for a {what} job of {n} image(s), "
                    f"{ratio:.1f}x the price table's {format_usd(table)}: later jobs of this "
                    f"kind are reserved at {format_usd(Micros(per_image * n))}"
                )
                self._surprises.append(surprise)
        return Charge(amount, reported=True, surprise=surprise)


def recall_charges(book: PriceBook, jobs: Iterable[Job], charges: Mapping[str, Micros]) -> int:
    """Teach `book` the folder's charges (µ$ by job key) of `jobs`; how many were learned.

    A resumed run's book would otherwise start unobserved and hold each job it
    re-attaches at `safety` x the table, although the crashed run had learned
    the price and reserved it at that: a hold the budget cannot refuse (the job
    may be billed already) then committed past the cap. The walk of `jobs`
    stops once every charge is matched.
    """
    learned = matched = 0
    if not charges:
        return 0
    for job in jobs:
        charge = charges.get(job.key)
        if charge is None:
            continue
        learned += book.recall(job, charge)
        matched += 1
        if matched == len(charges):
            break
    return learned


def book_for(
    table: Mapping[str, Mapping[str, float]] = DEFAULT_PRICES, budget: Micros | None = None
) -> PriceBook:
    """The price book of a run: a safety factor and scouts only under a cap (`budget` µ$).

    Without a cap (None) there is nothing a wrong table could overspend, so
    the run reserves the table at full concurrency; the charges are still
    checked and a surprise still said.
    """
    if budget is None:
        return PriceBook(table, PricePolicy(safety=1.0, scout=False))
    return PriceBook(table)
