"""Pure parts of the coordination: run identity, lease records, settings."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from runner.cli import main
from runner.coordination.belief import (
    ACCEPTED,
    REFUSED,
    STARTED,
    SharedBelief,
    policy_for,
    restore,
    snapshot,
)
from runner.coordination.handover import LeaseRecord
from runner.coordination.identity import (
    check_run_id,
    check_url,
    rate_keys,
    run_hash,
    run_keys,
)
from runner.coordination.record import jobs_digest
from runner.coordination.session import CoordinatorSpec
from runner.errors import ManifestError, UsageError
from runner.manifest import Coordinator, load_manifest, parse_manifest
from runner.run import RunOptions, resume_command
from runner.scheduling.quota import QuotaLearner
from runner.sweep import expand

SECRET = "s3cr3t-pass"


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis:///0"])
def test_unusable_urls_are_usage_errors_with_an_example(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_url(url)
    assert "redis://127.0.0.1:6379/0" in str(caught.value)


def test_a_bad_url_with_a_password_does_not_show_it() -> None:
    with pytest.raises(UsageError) as caught:
        check_url(f"http://:{SECRET}@host:1")
    assert SECRET not in str(caught.value)


def test_run_identity_is_the_manifest_hash_and_the_run_id() -> None:
    sha = "ab" * 32
    assert run_hash(sha, None) == run_hash(sha, None)
    assert run_hash(sha, "ci-1") != run_hash(sha, None)
    assert run_hash(sha, "ci-1") != run_hash(sha, "ci-2")
    assert run_hash("cd" * 32, None) != run_hash(sha, None)
    keys = run_keys(sha, "ci-1")
    # One cluster hash tag for every key of the run: a script touches one slot.
    tags = {key.split("{")[1].split("}")[0] for key in (keys.meta, keys.jobs, keys.held)}
    assert tags == {keys.run}


def test_the_rate_key_depends_on_the_api_key_without_holding_it() -> None:
    a = rate_keys("https://api.segmind.com", "sk-one")
    b = rate_keys("https://api.segmind.com/", "sk-one")
    c = rate_keys("https://api.segmind.com", "sk-two")
    assert a == b
    assert a != c
    assert "sk-one" not in a.log and "sk-one" not in a.state


def test_run_ids_and_leases_are_checked() -> None:
    assert check_run_id("ci-123") == "ci-123"
    for bad in ("", "x" * 129, "a\nb"):
        with pytest.raises(UsageError):
            check_run_id(bad)
    with pytest.raises(UsageError, match="too short"):
        CoordinatorSpec("redis://h:1/0", lease=0.2)


def test_lease_records_read_what_the_scripts_write() -> None:
    assert LeaseRecord.parse("") == LeaseRecord()
    record = LeaseRecord.parse(
        '{"worker":"w","token":"t","state":"submitted","request_id":"r-1",'
        '"submitted_at":1800000000.25}'
    )
    assert record == LeaseRecord("submitted", "r-1", 1800000000.25)
    assert LeaseRecord.parse('{"state":"submitting"}').request_id is None


def test_jobs_digest_tells_expansions_apart(tmp_path: Path) -> None:
    text = (
        "name: d\nprompts: [{id: p, prompt: 'a {x}', vars: {x: [one, two, three]}}]\n"
        "output: {dir: out}\n"
    )
    (tmp_path / "m.yaml").write_text(text)
    jobs = list(expand(load_manifest(tmp_path / "m.yaml")))
    assert jobs_digest(jobs) == jobs_digest(list(jobs))
    assert jobs_digest(jobs) != jobs_digest(jobs[::-1])
    assert jobs_digest(jobs) != jobs_digest(jobs[:2])


def test_the_manifest_may_name_the_coordinator(tmp_path: Path) -> None:
    text = (
        "name: c\nprompts: [{id: p, prompt: hi}]\ncoordinator: {url: redis://h:6379/1, lease: 5}\n"
    )
    manifest = parse_manifest(text, path=str(tmp_path / "m.yaml"), base_dir=tmp_path)
    assert manifest.coordinator == Coordinator(url="redis://h:6379/1", lease=5.0)
    bad = text.replace("redis://h:6379/1", "http://h:6379")
    with pytest.raises(ManifestError) as caught:
        parse_manifest(bad, path=str(tmp_path / "m.yaml"), base_dir=tmp_path)
    assert "m.yaml:3:" in str(caught.value)
    assert "coordinator.url" in str(caught.value)
    assert "not a Redis URL" in str(caught.value)


def test_shards_and_a_coordinator_do_not_mix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m.yaml").write_text(
        f"name: c\nprompts: [{{id: p, prompt: hi}}]\noutput: {{dir: {tmp_path / 'out'}}}\n"
    )
    argv = ["run", str(tmp_path / "m.yaml"), "--backend", "local", "--shard", "1/2"]
    code = main([*argv, "--coordinator", "redis://127.0.0.1:1/0"])
    assert code == 2
    assert "--shard and --coordinator do not mix" in capsys.readouterr().err


def test_a_resume_command_never_prints_a_password(tmp_path: Path) -> None:
    text = f"name: c\nprompts: [{{id: p, prompt: hi}}]\noutput: {{dir: {tmp_path}}}\n"
    manifest = parse_manifest(text, path="m.yaml", base_dir=tmp_path)
    plain = RunOptions(coordinator="redis://h:6379/0", run_id="ci-1")
    assert resume_command(manifest, plain).endswith("--run-id ci-1 --coordinator redis://h:6379/0")
    secret = RunOptions(coordinator=f"redis://:{SECRET}@h:6379/0")
    command = resume_command(manifest, secret)
    assert SECRET not in command
    assert command.endswith('--coordinator "$RUNNER_COORDINATOR"')


def stream_of(events: list[tuple[str, float, float, str, str]]) -> list[tuple[str, dict[str, str]]]:
    """Stream entries as the gate's scripts write them: (kind, at, now, wait, coarse)."""
    return [
        (f"{i + 1}-0", {"k": k, "at": f"{at:.6f}", "now": f"{now:.6f}", "wait": w, "c": c})
        for i, (k, at, now, w, c) in enumerate(events)
    ]


# A storm after five accepted calls, a coarse reset, a past reset, and growth back.
EVENTS: list[tuple[str, float, float, str, str]] = [
    *[(STARTED, 0.1 * i, 0.1 * i, "", "") for i in range(5)],
    *[(ACCEPTED, 0.1 * i, 0.1 * i + 0.05, "", "0") for i in range(5)],
    *[(STARTED, 0.6 + 0.01 * i, 0.6 + 0.01 * i, "", "") for i in range(3)],
    (REFUSED, 0.60, 0.7, "2.0", "1"),
    (REFUSED, 0.61, 0.71, "", "0"),
    (REFUSED, 0.62, 0.72, "0", "0"),
    (STARTED, 4.0, 4.0, "", ""),
    (ACCEPTED, 4.0, 4.1, "", "0"),
    (STARTED, 4.2, 4.2, "", ""),
    (REFUSED, 4.2, 4.3, "", "0"),
]


def test_a_replayed_stream_teaches_what_the_local_learner_learns() -> None:
    policy = policy_for(8, 3.0)
    local = QuotaLearner(policy, rng=random.Random(0))
    for kind, at, now, wait, coarse in EVENTS:
        if kind == STARTED:
            local.started(at)
        elif kind == ACCEPTED:
            local.accepted(at, now)
        else:
            local.refused(at, now, None if wait == "" else now + float(wait), coarse == "1")
    shared = SharedBelief(policy)
    entries = stream_of(EVENTS)
    # Applied in two reads that overlap, as two answers of one worker may: each entry once.
    shared.apply(entries[:7])
    shared.apply(entries[3:])
    assert shared.seen == entries[-1][0]
    assert shared.stats() == local.stats()
    assert local.stats().limit == 5 and local.stats().learned


def test_a_stream_lost_with_an_empty_redis_keeps_what_was_learned() -> None:
    shared = SharedBelief(policy_for(8, 3.0))
    shared.apply(stream_of(EVENTS))
    shared.forget_stream()
    stats = shared.stats()
    assert (shared.seen, stats.limit, stats.learned, stats.rate_limited) == ("0", 5, True, 0)


def test_a_checkpoint_is_the_state_its_entries_give() -> None:
    # Two replays of one stream: one applies every entry, the other loads a
    # checkpoint taken halfway (the entries before it trimmed) and goes on.
    policy = policy_for(8, 3.0)
    entries = stream_of(EVENTS)
    whole, late = SharedBelief(policy), SharedBelief(policy)
    whole.apply(entries[:6])
    taken_at, state = whole.seen, snapshot(whole.learner)
    whole.apply(entries[6:])
    assert late.load(taken_at, state)
    assert not late.load(taken_at, state)  # not behind it any more: kept as it is
    late.apply(entries)  # the entries it already holds are skipped
    assert late.seen == whole.seen and late.stats() == whole.stats()
    # Every field of the learner, the jitter's draws included, went across exactly.
    assert snapshot(late.learner) == snapshot(whole.learner)
    again = restore(policy, snapshot(whole.learner))
    assert vars(again).keys() == vars(whole.learner).keys()
    assert again._rng.random() == whole.learner._rng.random()
