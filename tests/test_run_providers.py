"""Whole runs against each provider's routes on the emulator (the `provider` fixture).

What the server saw is read from the emulator's request log: 429s and
accepted billed calls per server window (pacing learned from the 429s, issue
#12, through the same QuotaLearner for both providers), and the headers each
call carried (a key goes only in its own provider's header, issue #16).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from provider_cases import CASES, ProviderCase
from whole_runs import REAL, WINDOW, jobs_manifest, most_accepted_in_a_window, refusals, run

from runner.emulator import InProcess, Latency, Served, hash_key
from runner.run import RunOptions, run_manifest
from runner.store.learned_rate import load_learned

# The in-process runs write through the store's worker threads (conftest.thread_aware_clock).
pytestmark = [pytest.mark.anyio, pytest.mark.store_threads]


def most_accepted_per_window(emu: InProcess, provider: ProviderCase) -> int:
    """Most accepted billed calls in one fixed server window."""
    return most_accepted_in_a_window(emu, WINDOW, "fixed", provider.billed)


async def test_a_limit_declared_3x_too_loose_is_learned_from_the_429s(
    tmp_path: Path, make_emulator: Callable[..., InProcess], provider: ProviderCase
) -> None:
    declared = 3 * REAL
    # Short jobs: four billed calls at once outrun the quota on either route.
    emu = make_emulator(
        rpm=REAL,
        limiter="fixed",
        rate_window=WINDOW,
        reset_hint="second",
        latency=Latency("fixed", 0.5, 0.0),
    )
    report = await run(jobs_manifest(tmp_path, 90, rpm=declared, provider=provider), emu, tmp_path)
    assert report.stats.completed == 90
    times = refusals(emu, provider.billed)
    assert times, "the server never refused: nothing was learned"
    assert report.stats.rate_limited == len(times)
    # The first window refuses what the declared limit sends over the real one; the
    # learned limit holds after it (a probe or two may still meet a 429).
    first = [t for t in times if t < times[0] + WINDOW]
    assert len(first) <= (declared - REAL) + 2
    assert len(times) - len(first) <= 2
    assert most_accepted_per_window(emu, provider) <= REAL
    rate = report.stats.rate
    assert rate is not None and rate.learned and rate.limit is not None
    # At most one above the server's quota: the careful growth's probe (quota.py)
    # may be accepted when a sliding count has just dropped.
    assert rate.limit <= REAL + 1
    saved = load_learned(tmp_path / "out")
    assert saved is not None and saved.learned and saved.declared == declared
    assert (saved.limit, saved.rate_limited) == (rate.limit, len(times))


async def test_a_limit_declared_right_meets_no_429(
    tmp_path: Path, make_emulator: Callable[..., InProcess], provider: ProviderCase
) -> None:
    emu = make_emulator(
        rpm=REAL, limiter="fixed", rate_window=WINDOW, latency=Latency("fixed", 0.5, 0.0)
    )
    report = await run(jobs_manifest(tmp_path, 50, rpm=REAL, provider=provider), emu, tmp_path)
    assert report.stats.completed == 50
    assert refusals(emu, provider.billed) == []
    # Within the quota, and not starved: the runner's own windows need not line up
    # with the server's fixed ones, so a server window may get less than all of it.
    assert REAL // 2 <= most_accepted_per_window(emu, provider) <= REAL


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # a loopback server: real time
async def test_a_key_travels_only_in_its_own_providers_header_and_is_never_written(
    tmp_path: Path, serve_emulator: Callable[..., Served], provider: ProviderCase
) -> None:
    secret = f"{provider.name}-SECRET-key-777"
    other = next(c for c in CASES if c.name != provider.name)
    stray = f"{other.name}-OTHER-key-888"  # set too: it must never be sent
    served = serve_emulator(api_keys=frozenset({secret}))
    env = {**provider.env(secret, served.base_url), **other.env(stray, served.base_url)}
    out = tmp_path / "out"
    report = await run_manifest(
        jobs_manifest(tmp_path, 3, rpm=60, provider=provider),
        RunOptions(out=out, time_scale=0.001),
        env=env,
    )
    assert report.counts.get("completed") == 3
    calls = served.emulator.calls()
    keyed = [c for c in calls if c.kind != "media"]
    assert {c.kind for c in keyed} >= {provider.billed}
    assert all(provider.key_header in c.header_names for c in keyed)
    assert not any(provider.other_header in c.header_names for c in calls)
    # The media client is keyless: no key header of either provider.
    media = [c for c in calls if c.kind == "media"]
    assert not any(provider.key_header in c.header_names for c in media)
    assert {c.key_hash for c in keyed} == {hash_key(secret)}
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data and stray.encode() not in data, path
