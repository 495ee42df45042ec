"""Hostile answers: each ends its job in a defined state with a clear reason, and the run
goes on (the other job of each manifest completes).

The runner (`run_manifest`, the code `runner run` calls) talks over real
sockets to the emulator behind `Hostile` (reliability_hostile.py), which
replaces some answers. The clock is real (asyncio), with every duration
scaled by SCALE, so backoff and polling take milliseconds (deadlines keep a 5 s floor); a
check that the runner waited for a server's hint is a lower bound on the
server's own arrival log, which a slow machine cannot break.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from PIL import Image
from reliability_hostile import (
    SCALE,
    Exchange,
    ServedHostile,
    hostile_manifest,
    run_hostile,
    serve_hostile,
)

from runner.emulator import EmulatorConfig, Latency, iso_utc
from runner.reporting.exit_codes import decide_exit
from runner.run import RunReport
from runner.store import JobRow, verify

pytestmark = pytest.mark.anyio

MAX_DOWNLOAD = 64 * 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    """The real clock: the server is on real sockets."""
    return "asyncio"


@pytest.fixture
def hostile() -> Iterator[ServedHostile]:
    with serve_hostile(EmulatorConfig(time_scale=SCALE, seed=3, workers=16)) as served:
        yield served


@pytest.fixture
def slow_hostile() -> Iterator[ServedHostile]:
    """Jobs of 60 nominal s (0.3 s), six times what the runner expects before its first poll."""
    config = EmulatorConfig(time_scale=SCALE, seed=3, workers=16, latency=Latency("fixed", 60.0))
    with serve_hostile(config) as served:
        yield served


def assert_one_failed(report: RunReport, rows: dict[str, JobRow], *reason: str) -> JobRow:
    """One job (whichever met the rule first) failed with every text of `reason` in its
    reason; the other completed."""
    assert report.stats.completed == 1 and report.stats.failed == 1
    assert decide_exit(report.counts, stop=report.stop).code == 1
    assert sorted(row.state for row in rows.values()) == ["completed", "failed"]
    (failed,) = (row for row in rows.values() if row.state == "failed")
    for text in reason:
        assert text in (failed.reason or ""), failed.reason
    return failed


# -- the submit's answer ------------------------------------------------------------


async def test_submit_2xx_without_request_id(hostile: ServedHostile, tmp_path: Path) -> None:
    async def strip(ex: Exchange) -> None:
        status, _, body = await ex.inner()
        doc = json.loads(body)
        del doc["request_id"]
        await ex.answer_json(status, doc)

    hostile.app.add("submit", strip)
    report, rows = await run_hostile(hostile, tmp_path, hostile_manifest(tmp_path, ("fox",)))
    assert report.stats.failed == 1 and decide_exit(report.counts, stop=report.stop).code == 1
    fox = rows["fox"]
    assert fox.state == "failed"
    assert "lacks request_id" in (fox.reason or "")
    # The server took it (and may bill it): it is not sent again by this run.
    assert len(hostile.app.emulator.accepted_submits()) == 1


# -- polls and results ----------------------------------------------------------------


async def test_status_flapping_is_polled_again(slow_hostile: ServedHostile, tmp_path: Path) -> None:
    async def lie(ex: Exchange) -> None:
        await ex.answer_json(200, {"status": "COMPLETED", "request_id": "x", "metrics": {}})

    slow_hostile.app.add("status", lie, times=1)
    _, rows = await run_hostile(slow_hostile, tmp_path, hostile_manifest(tmp_path, ("fox",)))
    assert rows["fox"].state == "completed"


async def test_result_with_no_output(hostile: ServedHostile, tmp_path: Path) -> None:
    async def empty(ex: Exchange) -> None:
        status, _, body = await ex.inner()
        doc = json.loads(body)
        doc["output"], doc["images"] = None, []
        await ex.answer_json(status, doc)

    hostile.app.add("result", empty, times=1)
    report, rows = await run_hostile(hostile, tmp_path)
    assert_one_failed(report, rows, "COMPLETED without output or images")


async def test_404_within_retention_is_retried(hostile: ServedHostile, tmp_path: Path) -> None:
    async def gone(ex: Exchange) -> None:
        await ex.answer_json(404, {"error": "Request x not found"})

    hostile.app.add("status", gone, times=2)
    report, _ = await run_hostile(hostile, tmp_path)
    assert report.stats.completed == 2 and decide_exit(report.counts, stop=report.stop).code == 0
    assert sum(1 for c in hostile.app.calls("status") if c.ruled) == 2


async def test_404_that_persists_within_retention_fails(
    hostile: ServedHostile, tmp_path: Path
) -> None:
    async def gone(ex: Exchange) -> None:
        await ex.answer_json(404, {"error": "Request x not found"})

    hostile.app.add("status", gone, times=3)
    report, rows = await run_hostile(hostile, tmp_path, hostile_manifest(tmp_path, ("fox",)))
    fox = rows["fox"]
    assert fox.state == "failed"
    assert "not found on the server" in (fox.reason or "")
    assert report.stats.expired == 0


async def test_422_with_a_non_json_body(hostile: ServedHostile, tmp_path: Path) -> None:
    async def html(ex: Exchange) -> None:
        page = b"<html><head><title>422</title></head><body><h1>Unprocessable</h1></body></html>"
        await ex.answer(422, page, {"content-type": "text/html"})

    hostile.app.add("status", html, times=1)
    _, rows = await run_hostile(hostile, tmp_path, hostile_manifest(tmp_path, ("fox",)))
    fox = rows["fox"]
    assert fox.state == "failed"
    assert "422" in (fox.reason or "") and "non-JSON answer (text/html)" in (fox.reason or "")
    assert "Unprocessable" in (fox.reason or "") and "<h1>" not in (fox.reason or "")


# -- downloads ------------------------------------------------------------------------


def _png_of(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_output_url_that_returns_html(hostile: ServedHostile, tmp_path: Path) -> None:
    async def html(ex: Exchange) -> None:
        await ex.answer(
            200, b"<html><body>Please log in</body></html>", {"content-type": "text/html"}
        )

    hostile.app.add("media", html, times=100)
    report, rows = await run_hostile(hostile, tmp_path, hostile_manifest(tmp_path, ("fox",)))
    fox = rows["fox"]
    # Not an image, every time: the job is paid for and the page may be a
    # passing CDN error, so it stays re-attachable for the next run.
    assert fox.state == "submitted" and fox.request_id
    assert report.stats.failed == 1
    assert verify(tmp_path / "out").clean  # nothing half-written


async def test_truncated_image_is_downloaded_again(hostile: ServedHostile, tmp_path: Path) -> None:
    async def half(ex: Exchange) -> None:
        status, headers, body = await ex.inner()
        await ex.answer(status, body[: len(body) // 2], {"content-type": headers["content-type"]})

    hostile.app.add("media", half, times=2)
    report, _ = await run_hostile(hostile, tmp_path)
    assert report.stats.completed == 2 and decide_exit(report.counts, stop=report.stop).code == 0
    assert verify(tmp_path / "out").clean


async def test_image_truncated_every_time_stays_re_attachable(
    hostile: ServedHostile, tmp_path: Path
) -> None:
    async def half(ex: Exchange) -> None:
        status, headers, body = await ex.inner()
        await ex.answer(status, body[: len(body) // 2], {"content-type": headers["content-type"]})

    hostile.app.add("media", half, times=100)
    _, rows = await run_hostile(hostile, tmp_path, hostile_manifest(tmp_path, ("fox",)))
    fox = rows["fox"]
    # Paid for and kept by the server for an hour: the next run downloads it
    # again instead of paying once more, so the job stays submitted.
    assert fox.state == "submitted" and fox.request_id
    assert verify(tmp_path / "out").clean


async def test_other_format_than_asked(hostile: ServedHostile, tmp_path: Path) -> None:
    async def jpeg(ex: Exchange) -> None:
        _, _, body = await ex.inner()
        buffer = io.BytesIO()
        Image.open(io.BytesIO(body)).convert("RGB").save(buffer, format="JPEG")
        await ex.answer(200, buffer.getvalue(), {"content-type": "image/png"})

    hostile.app.add("media", jpeg, times=1)
    _, rows = await run_hostile(hostile, tmp_path, hostile_manifest(tmp_path, ("fox",)))
    assert "asked for png but the image is jpeg" in (rows["fox"].reason or "")


async def test_other_size_than_asked(hostile: ServedHostile, tmp_path: Path) -> None:
    async def small(ex: Exchange) -> None:
        await ex.answer(200, _png_of((512, 512)), {"content-type": "image/png"})

    hostile.app.add("media", small, times=1)
    _, rows = await run_hostile(hostile, tmp_path, hostile_manifest(tmp_path, ("fox",)))
    assert "asked for 1024x1024 pixels but the image is 512x512" in (rows["fox"].reason or "")


async def test_huge_declared_body_is_refused_unread(hostile: ServedHostile, tmp_path: Path) -> None:
    async def huge(ex: Exchange) -> None:
        headers = {"content-type": "image/png", "content-length": str(10 * MAX_DOWNLOAD)}
        await ex.trickle(200, headers, every=0.05, most=5.0)

    hostile.app.add("media", huge, times=1)
    _, rows = await run_hostile(hostile, tmp_path, hostile_manifest(tmp_path, ("fox",)))
    reason = rows["fox"].reason or ""
    assert f"bytes announced, over the {MAX_DOWNLOAD} byte cap" in reason


async def test_huge_streamed_body_is_cut_at_the_cap(hostile: ServedHostile, tmp_path: Path) -> None:
    async def endless(ex: Exchange) -> None:
        start = {"type": "http.response.start", "status": 200}
        await ex.send({**start, "headers": [(b"content-type", b"image/png")]})
        chunk = b"\x89PNG\r\n\x1a\n" + bytes(1024 * 1024 - 8)
        try:
            for _ in range(80):  # 80 MiB, over the 64 MiB cap, with no length announced
                await ex.send({"type": "http.response.body", "body": chunk, "more_body": True})
            await ex.send({"type": "http.response.body", "body": b""})
        except Exception:  # noqa: S110 -- the client hung up at its cap: the point of the test
            pass

    hostile.app.add("media", endless, times=1)
    _, rows = await run_hostile(hostile, tmp_path, hostile_manifest(tmp_path, ("fox",)))
    assert f"more than the {MAX_DOWNLOAD} byte cap" in (rows["fox"].reason or "")


# -- 429 hints ------------------------------------------------------------------------


async def _first_two_submits_apart(
    hostile: ServedHostile, tmp_path: Path, headers_at: object
) -> float:
    async def limited(ex: Exchange) -> None:
        assert callable(headers_at)
        await ex.answer_json(429, {"error": "Rate limit exceeded"}, headers_at())

    hostile.app.add("submit", limited, times=1)
    report, _ = await run_hostile(hostile, tmp_path, hostile_manifest(tmp_path, ("fox",)))
    assert report.stats.completed == 1 and report.stats.rate_limited == 1
    first, second = hostile.app.calls("submit")[:2]
    return second.wall - first.wall


async def test_429_with_retry_after_in_seconds(hostile: ServedHostile, tmp_path: Path) -> None:
    gap = await _first_two_submits_apart(hostile, tmp_path, lambda: {"retry-after": "1"})
    assert gap >= 1.0


async def test_429_with_retry_after_as_an_http_date(hostile: ServedHostile, tmp_path: Path) -> None:
    marks: list[float] = []

    def date() -> dict[str, str]:
        # Whole seconds, as HTTP dates are: at least one second away.
        when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
        marks.append(when.timestamp())
        return {"retry-after": format_datetime(when, usegmt=True)}

    gap = await _first_two_submits_apart(hostile, tmp_path, date)
    second = hostile.app.calls("submit")[1]
    assert second.wall >= marks[0] - 0.01  # the server's date, to its clock's resolution
    assert gap >= 1.0


async def test_429_with_only_the_reset_header(hostile: ServedHostile, tmp_path: Path) -> None:
    marks: list[float] = []

    def reset() -> dict[str, str]:
        when = time.time() + 0.8
        marks.append(when)
        return {"x-rate-limit-reset-at-utc": iso_utc(when)}

    await _first_two_submits_apart(hostile, tmp_path, reset)
    second = hostile.app.calls("submit")[1]
    assert second.wall >= marks[0] - 0.01


# -- slow loris: deadlines fire -------------------------------------------------------


async def test_slow_answers_of_every_kind_hit_their_deadlines(
    hostile: ServedHostile, tmp_path: Path
) -> None:
    # One job per stalled call, all in one run, so the deadlines (5 s, the floor
    # a time scale leaves) run out together.
    async def loris(ex: Exchange) -> None:
        await ex.trickle(200, {"content-type": "application/json"}, every=0.1, most=30.0)

    async def accept_then_trickle(ex: Exchange) -> None:
        await ex.inner()  # accepted (and later billed) by the server
        await loris(ex)

    async def silent(ex: Exchange) -> None:
        await ex.until_hung_up(30.0)  # not even headers

    async def loris_image(ex: Exchange) -> None:
        headers = {"content-type": "image/png", "content-length": "100000"}
        await ex.trickle(200, headers, every=0.1, most=30.0)

    hostile.app.add("submit", accept_then_trickle, times=1)
    hostile.app.add("status", loris, times=1)
    hostile.app.add("result", silent, times=1)
    hostile.app.add("media", loris_image, times=1)
    things = ("fox", "owl", "cat", "elk")
    report, _ = await run_hostile(hostile, tmp_path, hostile_manifest(tmp_path, things))
    assert report.stats.completed == 4 and decide_exit(report.counts, stop=report.stop).code == 0
    assert report.stats.ambiguous == 1  # the submit whose answer never finished
    assert len(hostile.app.emulator.accepted_submits()) == 5  # ... was paid, and sent again
    assert report.stats.retries >= 3  # the status, the result and the download
    assert all(
        sum(1 for c in hostile.app.calls(kind) if c.ruled) == 1
        for kind in ("submit", "status", "result", "media")
    )
    assert verify(tmp_path / "out").clean
