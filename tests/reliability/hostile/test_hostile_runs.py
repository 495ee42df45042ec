"""Every hostile answer, through the whole runner, ends in a defined state.

Each case of `CASES` scripts one hostile answer (runner.emulator.hostile) on
the in-process emulator and runs a one-job manifest on trio's virtual clock
(so a trickle of one byte every 5 s costs no real time). For every case: no
exception escapes `run_manifest`, the run ends with its report, the job's
ledger row is in one of the case's states with the case's reason, its
reason (shown on a terminal) holds no control character, and `runner
verify` finds the folder clean (no orphan image, no image without its
sidecar).

Two outcomes are the scheduler's: a paid answer that stays unreadable past
the retries leaves the job re-attachable (submitted), and a result with
fewer images than asked does not end completed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hostile_corpus import (
    ESCAPES,
    Case,
    emulator_config,
    image_files,
    one_job_manifest,
    run_case,
)

from runner.emulator import Emulator
from runner.manifest import parse_manifest
from runner.money import micros
from runner.run import RunOptions, run_manifest
from runner.store import Ledger, render_verify, verify

pytestmark = pytest.mark.anyio

# A trickle of one byte every 5 s: any answer (>= 40 bytes) outlasts the 180 s deadline.
SLOW = {"trickle_delay": 5.0}
# Faults on a paid poll that persist past the scheduler's 8 tries of a call.
PERSISTENT = 99

CASES = (
    # -- the submit: billed, so never asked again on an unreadable answer ----------------
    Case("submit deep JSON", "submit", "deep_json", states=("failed",), reason="nests deeper"),
    Case("submit gzip bomb", "submit", "gzip_bomb", states=("failed",), reason="inflates past"),
    Case("submit hostile id", "submit", "hostile_id", states=("failed",), reason="is not an id"),
    Case(
        "submit id with a query",
        "submit",
        "hostile_id",
        knobs={"hostile_request_id": "a/b?c#d"},
        states=("failed",),
        reason="is not an id",
    ),
    Case(
        "submit control characters",
        "submit",
        "control_chars",
        states=("failed",),
        reason="red alert",
    ),
    # A lost answer: ambiguous, submitted once more within the run's cap.
    Case("submit trickle", "submit", "trickle", knobs=SLOW, states=("completed", "failed")),
    # -- status and result: paid, kept by the server, so asked again; when the
    # hostile answer persists, the job stays `submitted` (re-attachable), never failed.
    Case("status deep JSON once", "status", "deep_json"),
    Case("status gzip bomb once", "status", "gzip_bomb"),
    Case("status trickle once", "status", "trickle", knobs=SLOW),
    Case("result deep JSON once", "result", "deep_json"),
    Case("result gzip bomb once", "result", "gzip_bomb"),
    Case("result trickle once", "result", "trickle", knobs=SLOW),
    Case(
        "status deep JSON persists",
        "status",
        "deep_json",
        times=PERSISTENT,
        states=("submitted",),
        reason="nests deeper",
    ),
    Case(
        "status trickle persists",
        "status",
        "trickle",
        times=PERSISTENT,
        knobs=SLOW,
        states=("submitted",),
        reason="no complete answer",
    ),
    Case(
        "result gzip bomb persists",
        "result",
        "gzip_bomb",
        times=PERSISTENT,
        states=("submitted",),
        reason="inflates past",
    ),
    Case(
        "status control characters",
        "status",
        "control_chars",
        states=("failed",),
        reason="red alert",
    ),
    Case(
        "result control characters",
        "result",
        "control_chars",
        states=("failed",),
        reason="red alert",
    ),
    # -- what a result says ----------------------------------------------------------------
    Case("3 images for n=1", "result", "extra_images", images=1),
    Case(
        "10,000 images for n=1",
        "result",
        "extra_images",
        knobs={"hostile_images": 10_000},
        images=1,
    ),
    Case("5 images for n=2", "result", "extra_images", n=2, knobs={"hostile_images": 5}, images=2),
    Case("cost -1000", "result", "negative_cost", images=1),
    Case("cost NaN", "result", "negative_cost", knobs={"hostile_cost": float("nan")}, images=1),
    Case(
        "cost infinite", "result", "negative_cost", knobs={"hostile_cost": float("inf")}, images=1
    ),
    Case("cost absurd", "result", "negative_cost", knobs={"hostile_cost": 5e6}, images=1),
    # -- a download: a bomb for an image is over the media cap, the same on every try ------
    Case("media gzip bomb", "media", "gzip_bomb", states=("failed",), reason="byte cap"),
    Case("media trickle once", "media", "trickle", knobs=SLOW, images=1),
    # -- the balance read: advice only, the run goes on ----------------------------------------
    Case("credits deep JSON", "credits", "deep_json", images=1),
    Case("credits gzip bomb", "credits", "gzip_bomb", images=1),
    Case("credits control characters", "credits", "control_chars", images=1),
    # -- v1: one billed call ------------------------------------------------------------------
    Case(
        "sync deep JSON",
        "sync",
        "deep_json",
        endpoint="v1",
        states=("failed",),
        reason="nests deeper",
    ),
    Case(
        "sync gzip bomb",
        "sync",
        "gzip_bomb",
        endpoint="v1",
        states=("failed",),
        reason="inflates past",
    ),
    Case(
        "sync control characters",
        "sync",
        "control_chars",
        endpoint="v1",
        states=("failed",),
        reason="red alert",
    ),
    Case("sync 3 images for n=1", "sync", "extra_images", endpoint="v1", images=1),
    Case("sync cost -1000", "sync", "negative_cost", endpoint="v1", images=1),
)


def _assert_no_escapes(text: str) -> None:
    for char in ESCAPES:
        assert char not in text, repr(text)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_a_hostile_answer_ends_in_a_defined_state(case: Case, tmp_path: Path) -> None:
    emu = Emulator(emulator_config(**case.knobs))
    emu.faults.script(case.kind, case.fault, times=case.times)  # type: ignore[arg-type]
    manifest = one_job_manifest(tmp_path, n=case.n, endpoint=case.endpoint)

    report, row = await run_case(emu, tmp_path, manifest)

    assert report.stats.completed + report.stats.failed == 1
    assert row.state in case.states, (row.state, row.reason)
    if row.state == "failed":
        assert case.reason in (row.reason or ""), row.reason
        _assert_no_escapes(row.reason or "")
    if row.state == "completed" and case.images is not None:
        assert len(image_files(tmp_path / "out")) == case.images
    checked = verify(tmp_path / "out")
    assert checked.clean, (checked.orphans, checked.mismatches, checked.missing)
    # The hostile answer was given (the case tests what it claims to).
    assert any(call.fault == case.fault for call in emu.calls())


async def test_a_cost_that_cannot_be_true_is_not_trusted(tmp_path: Path) -> None:
    emu = Emulator(emulator_config())
    emu.faults.script("result", "negative_cost")
    report, row = await run_case(emu, tmp_path, one_job_manifest(tmp_path))
    assert row.state == "completed"
    (sidecar,) = (p for p in (tmp_path / "out").rglob("*.json") if ".runner" not in p.parts)
    doc = json.loads(sidecar.read_text())
    # Reported -1000: unknown, so the estimate is what the budget counts.
    assert doc["credits"]["charged_usd"] is None
    assert row.charged is not None and row.charged == micros(doc["credits"]["estimated_usd"]) > 0
    assert report.stats.credits_spent > 0


async def test_extra_images_are_never_downloaded(tmp_path: Path) -> None:
    emu = Emulator(emulator_config(hostile_images=10_000))
    emu.faults.script("result", "extra_images")
    _, row = await run_case(emu, tmp_path, one_job_manifest(tmp_path))
    assert row.state == "completed"
    assert [c.path.rsplit("/", 1)[-1] for c in emu.calls("media")] == ["0.png"]


async def test_a_hostile_id_in_the_ledger_stays_one_path_segment(tmp_path: Path) -> None:
    """A resumed run puts a recorded id into the URL percent-encoded: it cannot climb out."""
    emu = Emulator(emulator_config())
    manifest = one_job_manifest(tmp_path)
    report, row = await run_case(emu, tmp_path, manifest)
    assert row.state == "completed"
    # Forge what an older release might have recorded from a hostile submit answer.
    with Ledger.open(tmp_path / "out", backend="local", base_url="http://emulator.local") as ledger:
        ledger.reset(row.key)
        ledger.submitting(row.key)
        ledger.submitted(row.key, "../../x", emu.utc(emu.now()))
    for image in image_files(tmp_path / "out"):
        image.unlink()
    for sidecar in (tmp_path / "out").rglob("*.json"):
        sidecar.unlink()
    before = len(emu.calls())

    report, row = await run_case(emu, tmp_path, manifest)

    later = emu.calls()[before:]
    polled = [c.path for c in later if c.kind not in ("credits", "media")]
    assert polled, later
    # Unquoted, httpx would have resolved /v2/requests/../../x/status to /x/status.
    assert all(path.startswith("/v2/requests/") for path in polled), polled
    assert row.state == "failed" and "not found" in (row.reason or "")
    assert report.stats.failed == 1


async def test_a_paid_answer_unreadable_past_the_retries_stays_submitted(tmp_path: Path) -> None:
    emu = Emulator(emulator_config(**SLOW))
    emu.faults.script("status", "trickle", times=PERSISTENT)
    _, row = await run_case(emu, tmp_path, one_job_manifest(tmp_path))
    assert row.state == "submitted" and row.request_id


async def test_too_few_images_is_not_completed(tmp_path: Path) -> None:
    emu = Emulator(emulator_config())
    emu.faults.script("result", "missing_images")
    _, row = await run_case(emu, tmp_path, one_job_manifest(tmp_path, n=2))
    assert row.state != "completed"
    # ... and `runner verify` says so: its "all good" is about files, and names the job.
    text = render_verify(verify(tmp_path / "out"))
    assert "failed    fox [" in text and "the result has 1 of 2 image(s)" in text, text
    assert "(1 job(s) failed: no images to check)" in text, text


async def test_too_few_images_leaves_no_stray_file(tmp_path: Path) -> None:
    """What the scheduler does today with an incomplete result: no exception, nothing orphaned."""
    emu = Emulator(emulator_config())
    emu.faults.script("result", "missing_images")
    report, _ = await run_case(emu, tmp_path, one_job_manifest(tmp_path, n=2))
    assert report.stats.completed + report.stats.failed == 1
    assert len(image_files(tmp_path / "out")) <= 1
    assert not verify(tmp_path / "out").orphans


async def test_a_paid_failure_counts_against_the_cap_of_the_next_run(tmp_path: Path) -> None:
    """A result with fewer images than asked is paid and failed; `--retry-failed` later must
    count what it cost: the cap covers the folder, not one run (it overspent by $0.08)."""
    emu = Emulator(emulator_config())
    emu.faults.script("result", "missing_images", times=2)
    text = f"""name: paid
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: png, n: 2}}
prompts:
  - id: fox
    prompt: "a picture of a {{animal}}"
    vars: {{animal: [fox, cat]}}
budget: {{requests_per_minute: 50, max_credits: 0.10}}
output: {{dir: {tmp_path / "out"}}}
"""
    manifest = parse_manifest(text, path=str(tmp_path / "m.yaml"), base_dir=tmp_path)
    opts = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0, seed=1)
    first = await run_manifest(manifest, opts, emulator=emu, env={})
    assert first.stats.failed == 2
    assert emu.charged_total() == pytest.approx(0.08)  # billed, though failed
    again = await run_manifest(manifest, replace(opts, retry_failed=True), emulator=emu, env={})
    assert again.stop == "credits"
    assert emu.charged_total() <= 0.10 + 1e-9
