"""Price beliefs: a cap that holds when the table is wrong, on a simulated run.

The simulation is a dispatcher with `max_in_flight` jobs out at once under a
budget, reserving what the price book says and settling what the "server"
charges (a factor times the table). Amounts are integer micro-dollars.
"""

from __future__ import annotations

import math
from collections import deque

import pytest

from runner.jobs import Job, Request, make_job
from runner.money import Micros, micros
from runner.scheduling.prices import PriceBook, PricePolicy, believable, price_class


def a_job(index: int, *, mode: str = "standard", n: int = 1) -> Job:
    request = Request(
        prompt=f"fox {index}",
        mode=mode,
        aspect_ratio="1:1",
        resolution="1k",
        n=n,
        output_format="png",
    )
    return make_job(index=index, prompt_id="fox", request=request, model="grok-imagine-image")


def run(jobs: list[Job], cap: float, factor: float, max_in_flight: int) -> tuple[Micros, int]:
    """(spent, jobs done) of a run whose server charges `factor` x the table."""
    book = PriceBook()
    budget = micros(cap)
    committed = 0  # held + spent
    spent = 0
    done = 0
    flight: deque[tuple[Job, Micros]] = deque()
    queue = deque(jobs)

    def settle_one() -> None:
        nonlocal committed, spent, done
        job, held = flight.popleft()
        charge = book.charged(job, factor * book.table_price(job) / 1e6, held)
        committed += charge.amount - held
        spent += charge.amount
        done += 1

    while queue:
        job = queue[0]
        if len(flight) >= max_in_flight or not book.may_start(job):
            settle_one()
            continue
        held = book.reservation(job)
        if committed + held > budget:
            break  # the budget stop: nothing more is sent
        queue.popleft()
        committed += held
        book.started(job)
        flight.append((job, held))
    while flight:
        settle_one()
    return Micros(spent), done


@pytest.mark.parametrize("in_flight", [1, 4, 16])
@pytest.mark.parametrize("factor", [0.5, 1.0, 1.5, 2.0])
def test_spend_stays_within_the_cap_when_the_true_price_is_up_to_twice_the_table(
    factor: float, in_flight: int
) -> None:
    spent, done = run([a_job(i) for i in range(50)], 0.50, factor, in_flight)
    assert spent <= micros(0.50)
    assert done >= 1


@pytest.mark.parametrize("in_flight", [1, 4, 16])
@pytest.mark.parametrize("factor", [3.0, 10.0, 100.0])
def test_spend_overshoots_by_at_most_one_jobs_true_price_up_to_100x(
    factor: float, in_flight: int
) -> None:
    jobs = [a_job(i) for i in range(50)]
    spent, _ = run(jobs, 0.50, factor, in_flight)
    one_job = math.ceil(factor * PriceBook().table_price(jobs[0]))
    assert spent <= micros(0.50) + one_job


def test_the_first_charge_above_the_table_is_said_once_and_raises_later_reservations() -> None:
    book = PriceBook()
    first, second = a_job(0), a_job(1)
    assert book.reservation(first) == micros(0.04)  # 2 x $0.02 until observed
    book.started(first)
    assert not book.may_start(second)  # one scout per class
    charge = book.charged(first, 0.20, held=book.reservation(first))
    assert charge.amount == micros(0.20) and charge.reported
    assert charge.surprise is not None and "10.0x" in charge.surprise
    assert book.may_start(second)
    assert book.reservation(second) == micros(0.20)
    assert book.charged(second, 0.20, held=micros(0.20)).surprise is None


def test_classes_are_learned_apart() -> None:
    book = PriceBook()
    standard, quality = a_job(0), a_job(1, mode="quality")
    assert price_class(standard) != price_class(quality)
    book.started(standard)
    assert book.may_start(quality)  # its own scout


@pytest.mark.parametrize("cost", [None, -1000.0, math.nan, math.inf, -math.inf, 5000.0])
def test_unbelievable_costs_count_at_the_reservation_and_never_lower(cost: float | None) -> None:
    book = PriceBook()
    job = a_job(0)
    held = book.reservation(job)
    book.started(job)
    charge = book.charged(job, cost, held=held)
    assert charge.amount == held and not charge.reported
    assert book.knowledge(job) == "unreported"
    assert book.may_start(a_job(1))  # nothing more to learn: no scout
    assert book.reservation(a_job(1)) == held


def test_a_cost_below_the_table_does_not_lower_the_reservation() -> None:
    book = PriceBook()
    job = a_job(0, n=2)
    book.started(job)
    book.charged(job, 0.01, held=book.reservation(job))
    assert book.reservation(a_job(1, n=2)) == micros(0.04)  # the table's, not $0.01


def test_believable() -> None:
    policy = PricePolicy(absurd=1000.0)
    assert believable(0.0, 1, policy)
    assert believable(1999.0, 2, policy)
    assert not believable(2001.0, 2, policy)
    assert not believable(True, 1, policy)  # type: ignore[arg-type]
