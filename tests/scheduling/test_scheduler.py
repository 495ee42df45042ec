"""The run loop against the in-process emulator, on trio's virtual clock.

Everything is counted from the emulator's own request log and ledger (the
server's view), never from timing: pacing, 429s, retries, credits, ambiguity.
Tests that take the `provider` fixture run against Segmind's submit-and-poll
routes and against xAI's synchronous route (tests/provider_cases.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from provider_cases import ProviderCase
from whole_runs import jobs_manifest

from runner.emulator import FaultRate, InProcess, Latency
from runner.errors import AuthError
from runner.manifest import Manifest
from runner.money import micros
from runner.reporting.exit_codes import decide_exit
from runner.run import RunOptions, RunReport, run_manifest
from runner.shard import Shard, ShardBudget, shard_of, split_budget
from runner.store import Ledger, verify
from runner.sweep import count_jobs, expand

pytestmark = pytest.mark.anyio

# The manifest of N one-image jobs (tests/test_polling.py imports it from here too).
make_manifest = jobs_manifest

LOCAL = {"env": {}}


async def run(manifest: Manifest, emu: InProcess, tmp_path: Path, **options: Any) -> RunReport:
    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1, **options)
    return await run_manifest(manifest, opts, emulator=emu.emulator, **LOCAL)  # type: ignore[arg-type]


def accepted(emu: InProcess) -> int:
    return len(emu.emulator.accepted_submits())


async def test_every_job_lands_with_its_sidecar(
    tmp_path: Path, make_emulator: Callable[..., InProcess], provider: ProviderCase
) -> None:
    prices = {mode: {"1k": 0.0123, "2k": 0.0123} for mode in ("standard", "quality")}
    emu = make_emulator(rpm=10, limiter="fixed", prices=prices)
    report = await run(make_manifest(tmp_path, 12, provider=provider), emu, tmp_path)
    assert decide_exit(report.counts, stop=report.stop).code == 0
    assert report.stats.completed == 12
    assert accepted(emu) == 12
    assert {c.kind for c in emu.emulator.calls() if c.kind in ("submit", "sync")} == {
        provider.billed
    }
    images = sorted((tmp_path / "out" / "p").glob("*.jpg"))
    assert len(images) == 12
    assert all(p.with_suffix(".json").is_file() for p in images)
    # The emulator's price is not the table's: the sidecar's charge is the server's own.
    charged = {v.request_id: v.charged for v in emu.emulator.accepted_submits()}
    for image in images:
        doc = json.loads(image.with_suffix(".json").read_text())
        assert doc["credits"]["charged_usd"] == pytest.approx(0.0123, abs=1e-9)
        assert charged[doc["request_id"]] == pytest.approx(0.0123, abs=1e-9)
    assert verify(tmp_path / "out").clean


@pytest.mark.parametrize("limiter", ["fixed", "sliding"])
async def test_submits_stay_within_the_budget_with_no_429(
    tmp_path: Path, make_emulator: Callable[..., InProcess], limiter: str, provider: ProviderCase
) -> None:
    emu = make_emulator(rpm=5, limiter=limiter)
    report = await run(make_manifest(tmp_path, 17, rpm=5, provider=provider), emu, tmp_path)
    assert report.stats.completed == 17
    assert emu.emulator.max_in_window(60.0, (provider.billed,)) <= 5
    assert report.stats.rate_limited == 0
    assert not [c for c in emu.emulator.calls() if c.status == 429]


async def test_smooth_model_against_a_token_bucket_server(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    emu = make_emulator(rpm=6, limiter="bucket", burst=1)
    report = await run(make_manifest(tmp_path, 8, rpm=6, rate_model="smooth"), emu, tmp_path)
    assert report.stats.completed == 8
    assert report.stats.rate_limited == 0


async def test_all_calls_scope_counts_polls_too(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    emu = make_emulator(rpm=12, rate_scope="all", limiter="sliding")
    manifest = make_manifest(tmp_path, 10, rpm=12, rate_scope="all")
    report = await run(manifest, emu, tmp_path)
    assert report.stats.completed == 10
    kinds = ("submit", "status", "result")
    assert emu.emulator.max_in_window(60.0, kinds) <= 12
    assert report.stats.rate_limited == 0


async def test_recovers_from_a_429_storm(
    tmp_path: Path, make_emulator: Callable[..., InProcess], provider: ProviderCase
) -> None:
    emu = make_emulator()
    emu.emulator.faults.script(provider.billed, "429", times=8)
    if provider.polls:
        # The embedded emulator is polled on its result endpoint.
        emu.emulator.faults.script("result", "429", times=5)
    report = await run(make_manifest(tmp_path, 6, provider=provider), emu, tmp_path)
    assert report.stats.completed == 6
    assert report.stats.rate_limited >= 8 + (5 if provider.polls else 0)
    assert report.stats.rate_limited == len([c for c in emu.emulator.calls() if c.status == 429])
    assert accepted(emu) == 6  # a 429 is never an accepted (billed) submit


async def test_server_errors_are_retried(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    faults = tuple(
        FaultRate(endpoint, fault, 0.3)  # type: ignore[arg-type]
        for endpoint, fault in [("status", "500"), ("result", "502"), ("media", "504")]
    )
    emu = make_emulator(faults=faults, seed=3)
    emu.emulator.faults.script("submit", "500", times=2)
    report = await run(make_manifest(tmp_path, 8), emu, tmp_path)
    assert report.stats.completed == 8
    assert report.stats.retries > 0
    assert accepted(emu) == 8
    assert verify(tmp_path / "out").clean


async def test_failed_job_is_final_and_not_retried(
    tmp_path: Path, make_emulator: Callable[..., InProcess], provider: ProviderCase
) -> None:
    # Segmind fails the job when polled; xAI refuses the call with a policy 400.
    blocked = '  - id: bad\n    prompt: "this is blocked content"\n'
    emu = make_emulator()
    manifest = make_manifest(tmp_path, 3, extra_prompts=blocked, provider=provider)
    report = await run(manifest, emu, tmp_path)
    assert (report.stats.completed, report.stats.failed) == (3, 1)
    assert decide_exit(report.counts, stop=report.stop).code == 1
    bad = [v for v in emu.emulator.accepted_submits() if "blocked" in v.params.prompt]
    assert len(bad) == 1
    with Ledger.open_readonly(tmp_path / "out") as ledger:
        rows = [r for r in ledger.rows("failed")]
    assert len(rows) == 1 and rows[0].reason and "moderated" in rows[0].reason.lower()
    assert report.stats.credits_spent == pytest.approx(3 * 0.02)


async def test_wrong_key_stops_the_run_with_an_auth_error(
    tmp_path: Path, make_emulator: Callable[..., InProcess], provider: ProviderCase
) -> None:
    emu = make_emulator(api_keys=frozenset({"the-right-key"}))
    with pytest.raises(AuthError) as caught:
        await run(make_manifest(tmp_path, 4, provider=provider), emu, tmp_path)
    assert "401" in str(caught.value)
    assert accepted(emu) == 0


async def test_406_stops_new_submits_and_finishes_in_flight(
    tmp_path: Path, make_emulator: Callable[..., InProcess], provider: ProviderCase
) -> None:
    # Segmind refuses with a 406, xAI with a 403 about credits: the same stop.
    emu = make_emulator(credits=0.07)  # three jobs of $0.02 fit, the fourth does not
    report = await run(make_manifest(tmp_path, 8, provider=provider), emu, tmp_path)
    assert decide_exit(report.counts, stop=report.stop).code == 3
    assert report.stop == "credits"
    assert report.stats.completed == 3
    assert accepted(emu) == 3
    assert emu.emulator.charged_total() == pytest.approx(0.06)
    with Ledger.open_readonly(tmp_path / "out") as ledger:
        counts = ledger.counts()
    assert counts["completed"] == 3
    assert counts["submitting"] == 0  # the refused job went back to planned


async def test_spend_never_passes_max_credits(
    tmp_path: Path, make_emulator: Callable[..., InProcess], provider: ProviderCase
) -> None:
    emu = make_emulator()
    manifest = make_manifest(tmp_path, 10, max_credits=0.09, provider=provider)
    report = await run(manifest, emu, tmp_path)
    assert decide_exit(report.counts, stop=report.stop).code == 3
    assert report.stats.completed == 4
    assert emu.emulator.charged_total() <= 0.09
    assert accepted(emu) == 4


async def test_ambiguous_submit_is_counted_and_retried_once(
    tmp_path: Path, make_emulator: Callable[..., InProcess], provider: ProviderCase
) -> None:
    emu = make_emulator()
    emu.emulator.faults.script(provider.billed, "drop_after", times=1)
    report = await run(make_manifest(tmp_path, 4, provider=provider), emu, tmp_path)
    assert report.stats.completed == 4
    assert report.stats.ambiguous == 1
    assert accepted(emu) == 5  # the dropped answer's job was accepted, and paid, twice
    assert report.stats.credits_ambiguous == pytest.approx(0.02)


async def test_submit_dropped_before_acceptance_is_retried_like_any_lost_answer(
    tmp_path: Path, make_emulator: Callable[..., InProcess], provider: ProviderCase
) -> None:
    emu = make_emulator()
    emu.emulator.faults.script(provider.billed, "drop_before", times=1)
    report = await run(make_manifest(tmp_path, 3, provider=provider), emu, tmp_path)
    assert report.stats.completed == 3
    assert report.stats.ambiguous == 1  # the client cannot tell the two drops apart
    assert accepted(emu) == 3


# The store writes in a worker thread; with a zero autojump threshold the
# virtual clock would jump during each write and polls would see latencies
# that no server has (conftest.thread_aware_clock never jumps while a thread runs).
@pytest.mark.store_threads
async def test_latency_aware_polling_beats_a_fixed_cadence(
    tmp_path: Path, make_emulator: Callable[..., InProcess]
) -> None:
    emu = make_emulator(latency=Latency("fixed", 12.0), workers=64)
    report = await run(make_manifest(tmp_path, 10, rpm=50), emu, tmp_path)
    assert report.stats.completed == 10
    status_calls = len(emu.emulator.calls("status"))
    # A fixed 1 s cadence needs about 12 status calls per 12 s job.
    assert status_calls / 10 < 4
    assert status_calls / 10 < 12 / 2


async def test_resume_skips_completed_jobs_and_pays_nothing_twice(
    tmp_path: Path, make_emulator: Callable[..., InProcess], provider: ProviderCase
) -> None:
    emu = make_emulator()
    manifest = make_manifest(tmp_path, 5, provider=provider)
    await run(manifest, emu, tmp_path)
    again = await run(manifest, emu, tmp_path)
    assert again.stats.skipped == 5
    assert again.stats.completed == 0
    assert accepted(emu) == 5


def test_shards_partition_the_jobs_exactly(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, 50)
    keys = [job.key for job in expand(manifest)]
    shards = [Shard(k, 3) for k in (1, 2, 3)]
    parts = [{job.key for job in expand(shard_of(manifest, shard))} for shard in shards]
    assert sum(len(p) for p in parts) == len(keys)
    assert set().union(*parts) == set(keys)
    assert all(parts)


def test_shard_sizes_differ_by_at_most_one(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, 50)
    sizes = [count_jobs(shard_of(manifest, Shard(k, 4))) for k in range(1, 5)]
    assert sizes == [13, 13, 12, 12]
    # The same split on every machine: a second expansion deals the same jobs.
    first = [job.key for job in expand(shard_of(manifest, Shard(2, 4)))]
    assert first == [job.key for job in expand(shard_of(manifest, Shard(2, 4)))]


def test_a_shard_gets_its_share_of_the_budget() -> None:
    assert split_budget(Shard(1, 3), 1.0, 10) == ShardBudget(0.333334, 4)
    assert split_budget(Shard(3, 3), 1.0, 10) == ShardBudget(0.333333, 3)
    assert split_budget(Shard(3, 3), None, 2) == ShardBudget(None, 1)
    # The N shares add up to the manifest's budget and rate exactly.
    shares = [split_budget(Shard(k, 3), 1.0, 10) for k in (1, 2, 3)]
    assert sum(micros(s.max_credits or 0) for s in shares) == micros(1.0)
    assert sum(int(s.rpm) for s in shares) == 10
