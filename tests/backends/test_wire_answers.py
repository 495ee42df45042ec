"""Reading answers: output shapes, FAILED under 422, submit fields, metrics, sync, credits."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from backend_helpers import FAKE_KEY, encode_image, make_request

from runner.backends import wire
from runner.backends.base import Media, Metrics, Result, StatusReport, Submission
from runner.errors import AuthError, InsufficientCredits, JobFailed, ProtocolError

BASE = "https://api.segmind.com"
NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
SUBMISSION = Submission("r1", f"{BASE}/v2/requests/r1/status", f"{BASE}/v2/requests/r1")
JSON = {"content-type": "application/json"}
PNG = encode_image("PNG")
JPEG = encode_image("JPEG")
WEBP = encode_image("WEBP")
B64_PNG = base64.b64encode(PNG).decode()
URL1 = "https://images.segmind.com/outputs/a.png"
URL2 = "https://images.segmind.com/outputs/b.png"


def body(doc: object) -> bytes:
    return json.dumps(doc).encode()


def submit_req() -> wire.WireRequest:
    return wire.submit_request(BASE, "grok-imagine-image", make_request(), FAKE_KEY)


def result(doc: object, status: int = 200) -> Result:
    request = wire.result_request(SUBMISSION, FAKE_KEY)
    return wire.parse_result(status, JSON, body(doc), request=request, now_utc=NOW)


# --- output shapes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param({"output": URL1}, (Media(url=URL1),), id="url-string"),
        pytest.param({"output": [URL1, URL2]}, (Media(url=URL1), Media(url=URL2)), id="url-list"),
        pytest.param(
            {"output": f"data:image/png;base64,{B64_PNG}"},
            (Media(data=PNG, content_type="image/png"),),
            id="data-uri",
        ),
        pytest.param(
            {"output": B64_PNG}, (Media(data=PNG, content_type="image/png"),), id="plain-base64"
        ),
        pytest.param(
            {"output": [base64.b64encode(JPEG).decode(), base64.b64encode(WEBP).decode()]},
            (
                Media(data=JPEG, content_type="image/jpeg"),
                Media(data=WEBP, content_type="image/webp"),
            ),
            id="base64-list-n2",
        ),
        pytest.param(
            {"images": [{"url": URL1, "content_type": "image/png", "file_size": 10}]},
            (Media(url=URL1, content_type="image/png"),),
            id="images-array",
        ),
        pytest.param(
            {"output": URL1, "images": [{"url": URL2}, {"url": URL1}]},
            (Media(url=URL2), Media(url=URL1)),
            id="images-preferred-over-output",
        ),
        pytest.param(
            {"output": [URL1, URL1, URL2]}, (Media(url=URL1), Media(url=URL2)), id="deduplicated"
        ),
        pytest.param(
            {"images": [], "output": URL1}, (Media(url=URL1),), id="empty-images-falls-back"
        ),
        pytest.param(
            {"images": [{"b64_json": B64_PNG, "mime_type": "image/png"}]},
            (Media(data=PNG, content_type="image/png"),),
            id="images-b64-json",
        ),
        pytest.param(
            {"output": "/media/r1/0.png"},
            (Media(url=f"{BASE}/media/r1/0.png"),),
            id="root-relative-path",
        ),
    ],
)
def test_output_shapes(doc: dict[str, object], expected: tuple[Media, ...]) -> None:
    got = result({"status": "COMPLETED", "metrics": {}, **doc})
    assert got.state == "COMPLETED"
    assert got.media == expected


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"status": "COMPLETED"}, id="no-output"),
        pytest.param({"status": "COMPLETED", "output": None, "images": None}, id="null-output"),
        pytest.param({"status": "COMPLETED", "output": []}, id="empty-list"),
        pytest.param({"status": "COMPLETED", "output": "not an image"}, id="junk-text"),
        pytest.param({"status": "COMPLETED", "output": "aGVsbG8="}, id="base64-not-image"),
        pytest.param({"status": "COMPLETED", "output": "data:image/png;base64,@@"}, id="bad-data"),
    ],
)
def test_completed_without_usable_output_is_protocol_error(doc: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as caught:
        result(doc)
    assert str(caught.value).startswith("GET /v2/requests/r1 -> 200: ")


def test_result_keeps_metrics_and_seed() -> None:
    got = result(
        {
            "status": "COMPLETED",
            "output": URL1,
            "seed": "42",
            "metrics": {"inference_time": "13.06", "cost": 0.02, "queue_time": "junk"},
        }
    )
    assert got.seed == 42
    assert got.metrics == Metrics(inference_time=13.06, cost=0.02)


def test_result_still_running() -> None:
    got = result({"status": "PROCESSING", "metrics": {}})
    assert (got.state, got.media) == ("PROCESSING", ())


def test_result_unknown_status_is_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="DONE"):
        result({"status": "DONE", "output": URL1})


def test_result_2xx_non_object_is_protocol_error() -> None:
    request = wire.result_request(SUBMISSION, FAKE_KEY)
    with pytest.raises(ProtocolError, match="JSON list"):
        wire.parse_result(200, JSON, b"[1, 2]", request=request)
    with pytest.raises(ProtocolError, match=r"non-JSON answer \(text/plain\)"):
        wire.parse_result(200, {"Content-Type": "text/plain"}, b"ok", request=request)


# --- FAILED under 422 -----------------------------------------------------------------


FAILED = {"status": "FAILED", "error": "Content moderated", "request_id": "r1", "metrics": {}}


@pytest.mark.parametrize("code", [200, 422])
def test_failed_status_is_a_report_whatever_the_code(code: int) -> None:
    request = wire.status_request(SUBMISSION, FAKE_KEY)
    report = wire.parse_status(code, JSON, body(FAILED), request=request)
    assert report.state == "FAILED"
    assert report.error == "Content moderated"


@pytest.mark.parametrize("code", [200, 422])
def test_failed_result_is_a_result_whatever_the_code(code: int) -> None:
    got = result(FAILED, code)
    assert (got.state, got.error, got.media) == ("FAILED", "Content moderated", ())


def test_completed_status_under_odd_code_is_accepted() -> None:
    request = wire.status_request(SUBMISSION, FAKE_KEY)
    doc = {"status": "COMPLETED", "metrics": {"inference_time": 3}}
    report = wire.parse_status(202, JSON, body(doc), request=request)
    assert report == StatusReport("COMPLETED", None, Metrics(inference_time=3.0))


def test_status_queued_echoing_urls() -> None:
    request = wire.status_request(SUBMISSION, FAKE_KEY)
    doc = {"status": "QUEUED", "request_id": "r1", "status_url": "x", "metrics": {}}
    assert wire.parse_status(200, JSON, body(doc), request=request).state == "QUEUED"


def test_422_without_failed_body_is_job_failed() -> None:
    request = wire.status_request(SUBMISSION, FAKE_KEY)
    with pytest.raises(JobFailed) as caught:
        wire.parse_status(422, JSON, body({"error": "bad image"}), request=request)
    assert caught.value.reason == "bad image"
    assert caught.value.status == 422


def test_submit_answered_failed_is_job_failed() -> None:
    with pytest.raises(JobFailed, match="Content moderated"):
        wire.parse_submit(422, JSON, body(FAILED), request=submit_req())


# --- submit ---------------------------------------------------------------------------


def submit_doc(**over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "request_id": "r1",
        "status": "QUEUED",
        "poll_url": f"{BASE}/v1/requests/r1",
        "status_url": f"{BASE}/v2/requests/r1/status",
        "response_url": f"{BASE}/v2/requests/r1",
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


def test_parse_submit() -> None:
    got = wire.parse_submit(200, JSON, body(submit_doc()), request=submit_req())
    assert got == SUBMISSION


def test_parse_submit_default_port_is_same_origin() -> None:
    doc = submit_doc(status_url="https://API.segmind.com:443/v2/requests/r1/status")
    got = wire.parse_submit(200, JSON, body(doc), request=submit_req())
    assert got.status_url.endswith("/v2/requests/r1/status")


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        (("request_id",), "request_id"),
        (("status_url",), "status_url"),
        (("response_url", "status_url"), "status_url, response_url"),
    ],
)
def test_parse_submit_missing_fields(drop: tuple[str, ...], named: str) -> None:
    doc = submit_doc(**dict.fromkeys(drop))
    with pytest.raises(ProtocolError) as caught:
        wire.parse_submit(200, JSON, body(doc), request=submit_req())
    text = str(caught.value)
    assert text.startswith("POST /v2/grok-imagine-image -> 200: the submit answer lacks ")
    assert f"lacks {named} (" in text


@pytest.mark.parametrize(
    "status_url",
    [
        "https://evil.example.com/v2/requests/r1/status",
        "http://api.segmind.com/v2/requests/r1/status",
        "https://api.segmind.com:8443/v2/requests/r1/status",
        "/v2/requests/r1/status",
        "file:///etc/passwd",
        "https://api.segmind.com.evil.example/v2/requests/r1/status",
    ],
)
def test_parse_submit_refuses_foreign_status_url(status_url: str) -> None:
    doc = submit_doc(status_url=status_url)
    with pytest.raises(ProtocolError, match=r"not on https://api\.segmind\.com:443"):
        wire.parse_submit(200, JSON, body(doc), request=submit_req())


def test_parse_submit_refuses_foreign_response_url() -> None:
    doc = submit_doc(response_url="https://evil.example.com/r1?token=abc")
    with pytest.raises(ProtocolError) as caught:
        wire.parse_submit(200, JSON, body(doc), request=submit_req())
    assert "response_url" in str(caught.value)
    assert "token=abc" not in str(caught.value)


# --- sync and credits ----------------------------------------------------------------


def test_parse_sync_raw_image_with_accounting_headers() -> None:
    headers = {
        "Content-Type": "image/png",
        "x-remaining-credits": "9.5",
        "x-cost": "0.02",
        "x-generation-time": "7.25",
        "x-seed-value": "1234",
        "x-request-id": "abc",
    }
    request = wire.sync_request(BASE, "grok-imagine-image", make_request(), FAKE_KEY)
    got = wire.parse_sync(200, headers, PNG, request=request)
    assert got.media == (Media(data=PNG, content_type="image/png"),)
    assert got.metrics == Metrics(inference_time=7.25, cost=0.02, remaining_credits=9.5)
    assert (got.request_id, got.seed) == ("abc", 1234)


def test_parse_sync_credits_consumed_and_sniffed_type() -> None:
    headers = {"content-type": "application/octet-stream", "x-credits-consumed": "0.05"}
    request = wire.sync_request(BASE, "m", make_request(), None)
    got = wire.parse_sync(200, headers, JPEG, request=request)
    assert got.media[0].content_type == "image/jpeg"
    assert got.metrics.cost == 0.05


def test_parse_sync_json_body() -> None:
    request = wire.sync_request(BASE, "m", make_request(n=2), None)
    doc = {"status": "COMPLETED", "output": [URL1, URL2], "metrics": {"cost": 0.04}}
    headers = {**JSON, "x-remaining-credits": "1.5", "x-cost": "0.5"}
    got = wire.parse_sync(200, headers, body(doc), request=request)
    assert [m.url for m in got.media] == [URL1, URL2]
    assert got.metrics == Metrics(cost=0.04, remaining_credits=1.5)


def test_parse_sync_failed_and_refused() -> None:
    request = wire.sync_request(BASE, "m", make_request(), FAKE_KEY)
    with pytest.raises(JobFailed, match="Content moderated"):
        wire.parse_sync(422, JSON, body(FAILED), request=request)
    with pytest.raises(InsufficientCredits):
        wire.parse_sync(406, JSON, body({"error": "balance 0.01 < cost 0.02"}), request=request)
    with pytest.raises(ProtocolError, match="no image"):
        wire.parse_sync(200, JSON, body({"status": "COMPLETED"}), request=request)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"credits": 1.5, "free-credits": 0.0185}, 1.5185),
        ({"credits": "2"}, 2.0),
        ({"free-credits": 0.25}, 0.25),
        ({"credits": 0.0, "free_credits": 0.5}, 0.5),
    ],
)
def test_parse_credits(doc: dict[str, object], expected: float) -> None:
    request = wire.credits_request(BASE, FAKE_KEY)
    assert wire.parse_credits(200, JSON, body(doc), request=request) == pytest.approx(expected)


def test_parse_credits_missing_and_errors() -> None:
    request = wire.credits_request(BASE, FAKE_KEY)
    assert wire.parse_credits(404, JSON, body({"error": "nope"}), request=request) is None
    with pytest.raises(ProtocolError, match="neither credits"):
        wire.parse_credits(200, JSON, body({"balance": 3}), request=request)
    with pytest.raises(AuthError):
        wire.parse_credits(401, JSON, body({"error": "Invalid API key"}), request=request)


# --- media helpers --------------------------------------------------------------------


def test_decode_inline_and_media_kind() -> None:
    assert wire.decode_inline(Media(data=PNG)) == PNG
    assert wire.decode_inline(Media(url=f"data:image/png;base64,{B64_PNG}")) == PNG
    assert wire.decode_inline(Media(url="data:text/plain,hi%20there")) == b"hi there"
    assert wire.media_kind(Media(data=PNG)) == "inline"
    assert wire.media_kind(Media(url="DATA:image/png;base64,AAAA")) == "inline"
    assert wire.media_kind(Media(url=URL1)) == "url"
    assert [wire.sniff_image(x) for x in (PNG, JPEG, WEBP, b"GIF89a..", b"<html>")] == [
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/gif",
        None,
    ]


def test_decode_inline_refuses_urls_and_junk() -> None:
    from runner.errors import DownloadError

    with pytest.raises(DownloadError):
        wire.decode_inline(Media(url=URL1))
    with pytest.raises(DownloadError):
        wire.decode_inline(Media(url="data:image/png;base64,!!!"))
