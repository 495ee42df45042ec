"""Status codes to our errors, their messages, Retry-After hints, and the key never leaking."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import partial

import pytest
from backend_helpers import FAKE_KEY, make_request

from runner.backends import wire
from runner.backends.base import Submission
from runner.errors import (
    ApiError,
    AuthError,
    BadRequest,
    InsufficientCredits,
    JobFailed,
    NotFound,
    ProtocolError,
    RateLimited,
    RetryableError,
    RunnerError,
    ServerError,
)

BASE = "https://api.segmind.com"
NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
SUBMISSION = Submission("r1", f"{BASE}/v2/requests/r1/status", f"{BASE}/v2/requests/r1")
JSON = {"content-type": "application/json"}
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title><style>body{color:red}</style>"
    b"</head><body><h1>502 Bad Gateway</h1><p>cloudflare</p>" + b"<p>filler</p>" * 200 + b"</body>"
)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, BadRequest),
        (401, AuthError),
        (403, AuthError),
        (404, NotFound),
        (406, InsufficientCredits),
        (422, JobFailed),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (302, ApiError),
        (409, ApiError),
        (418, ApiError),
    ],
)
def test_status_code_mapping(code: int, cls: type[RunnerError]) -> None:
    request = wire.submit_request(BASE, "grok-imagine-image", make_request(), FAKE_KEY)
    with pytest.raises(cls) as caught:
        wire.parse_submit(
            code, JSON, json.dumps({"error": "the server says"}).encode(), request=request
        )
    err = caught.value
    assert type(err) is cls
    assert getattr(err, "status", None) == code
    text = str(err)
    assert text.startswith(f"POST /v2/grok-imagine-image -> {code}: ")
    if code >= 400:
        assert "the server says" in text


def test_hints_name_the_fix() -> None:
    request = wire.credits_request(BASE, FAKE_KEY)
    for code, words in ((401, "SEGMIND_API_KEY"), (406, "add credits"), (301, "--base-url")):
        headers = {**JSON, "location": "https://elsewhere.example/v1/x?sig=secret"}
        with pytest.raises(RunnerError) as caught:
            wire.parse_credits(code, headers, b'{"error": "no"}', request=request)
        assert words in str(caught.value)
        assert "sig=secret" not in str(caught.value)


def test_html_error_page() -> None:
    request = wire.status_request(SUBMISSION, FAKE_KEY)
    headers = {"Content-Type": "text/html; charset=utf-8"}
    with pytest.raises(ServerError) as caught:
        wire.parse_status(502, headers, HTML_PAGE, request=request)
    text = str(caught.value)
    assert text.startswith("GET /v2/requests/r1/status -> 502: non-JSON answer (text/html): ")
    assert "502 Bad Gateway" in text
    assert "<" not in text
    assert "color:red" not in text
    assert len(text) < 250


def test_server_text_is_cut() -> None:
    request = wire.status_request(SUBMISSION, FAKE_KEY)
    doc = {"error": "x" * 5000}
    with pytest.raises(BadRequest) as caught:
        wire.parse_status(400, JSON, json.dumps(doc).encode(), request=request)
    assert 300 <= len(str(caught.value)) < 400
    assert str(caught.value).endswith("…")


def test_error_envelope_variants() -> None:
    request = wire.status_request(SUBMISSION, None)
    cases = [
        (b'{"error": {"code": "E1", "message": "nested"}}', '"message":"nested"'),
        (b'{"detail": "via detail"}', "via detail"),
        (b'{"something": 1}', "no error text"),
        (b"", "non-JSON answer (application/json)"),
        (b'"just a string"', "no error text"),
    ]
    for raw, words in cases:
        with pytest.raises(NotFound) as caught:
            wire.parse_status(404, JSON, raw, request=request)
        assert words in str(caught.value)


# --- Retry-After ----------------------------------------------------------------------


def http_date(delta: float) -> str:
    return format_datetime(NOW + timedelta(seconds=delta), usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, None, id="absent"),
        pytest.param({"Retry-After": "7"}, 7.0, id="seconds"),
        pytest.param({"retry-after": " 2.5 "}, 2.5, id="fractional-lowercase"),
        pytest.param({"Retry-After": http_date(30)}, 30.0, id="http-date"),
        pytest.param({"Retry-After": http_date(-30)}, 0.0, id="http-date-past"),
        pytest.param({"x-rate-limit-reset-at-utc": "2025-01-01T12:00:42Z"}, 42.0, id="iso-z"),
        pytest.param(
            {"x-rate-limit-reset-at-utc": "2025-01-01T13:00:10+01:00"}, 10.0, id="iso-offset"
        ),
        pytest.param({"x-rate-limit-reset-at-utc": "2025-01-01T12:00:05"}, 5.0, id="iso-naive"),
        pytest.param(
            {"x-rate-limit-reset-at-utc": str(NOW.timestamp() + 12)}, 12.0, id="epoch-seconds"
        ),
        pytest.param(
            {"x-rate-limit-reset-at-utc": str(int(NOW.timestamp() * 1000) + 3000)},
            3.0,
            id="epoch-ms",
        ),
        pytest.param(
            {"Retry-After": "5", "x-rate-limit-reset-at-utc": "2025-01-01T12:00:20Z"},
            20.0,
            id="both-larger-wins",
        ),
        pytest.param(
            {"Retry-After": "50", "x-rate-limit-reset-at-utc": "2025-01-01T12:00:20Z"},
            50.0,
            id="both-retry-after-larger",
        ),
        pytest.param({"Retry-After": "soon"}, None, id="junk"),
        pytest.param({"Retry-After": ""}, None, id="empty"),
        pytest.param({"x-rate-limit-reset-at-utc": "tomorrow"}, None, id="junk-reset"),
        pytest.param(
            {"Retry-After": "junk", "x-rate-limit-reset-at-utc": "2025-01-01T12:00:09Z"},
            9.0,
            id="junk-and-good",
        ),
        pytest.param({"Retry-After": "-4"}, 0.0, id="negative"),
        pytest.param({"Retry-After": "99999"}, 3600.0, id="clamped"),
        pytest.param({"Retry-After": "nan"}, None, id="nan"),
    ],
)
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    got = wire.retry_after(headers, NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_429_and_5xx_carry_retry_after() -> None:
    request = wire.submit_request(BASE, "grok-imagine-image", make_request(), FAKE_KEY)
    headers = {**JSON, "x-rate-limit-reset-at-utc": "2025-01-01T12:00:15Z"}
    with pytest.raises(RateLimited) as limited:
        wire.parse_submit(
            429, headers, b'{"error": "Rate limit exceeded"}', request=request, now_utc=NOW
        )
    assert limited.value.retry_after == pytest.approx(15.0)
    with pytest.raises(ServerError) as failed:
        wire.parse_submit(503, {"Retry-After": "3"}, b"", request=request, now_utc=NOW)
    assert failed.value.retry_after == 3.0
    with pytest.raises(ServerError) as bare:
        wire.parse_submit(500, {}, b"", request=request, now_utc=NOW)
    assert bare.value.retry_after is None
    assert isinstance(bare.value, RetryableError)


# --- the key never leaks --------------------------------------------------------------

ECHO = json.dumps({"error": f"Invalid key {FAKE_KEY} for x-api-key header"}).encode()
ECHO_HTML = f"<html><body>bad key {FAKE_KEY}</body></html>".encode()


def _all_error_paths() -> list[Callable[[], object]]:
    submit = wire.submit_request(BASE, "grok-imagine-image", make_request(), FAKE_KEY)
    sync = wire.sync_request(BASE, "grok-imagine-image", make_request(), FAKE_KEY)
    status = wire.status_request(SUBMISSION, FAKE_KEY)
    result = wire.result_request(SUBMISSION, FAKE_KEY)
    credits = wire.credits_request(BASE, FAKE_KEY)
    calls: list[Callable[[], object]] = []
    for code in (302, 400, 401, 403, 404, 406, 409, 422, 429, 500, 502):
        for raw, headers in ((ECHO, JSON), (ECHO_HTML, {"content-type": "text/html"})):
            loc = {**headers, "location": f"https://x.example/?k={FAKE_KEY}"}
            calls += [
                partial(wire.parse_submit, code, loc, raw, request=submit),
                partial(wire.parse_sync, code, loc, raw, request=sync),
                partial(wire.parse_status, code, loc, raw, request=status),
                partial(wire.parse_result, code, loc, raw, request=result),
                partial(wire.parse_credits, code, loc, raw, request=credits),
            ]
    failed = json.dumps({"status": "FAILED", "error": f"blocked for {FAKE_KEY}"}).encode()
    calls += [
        lambda: wire.parse_submit(422, JSON, failed, request=submit),
        lambda: wire.parse_sync(422, JSON, failed, request=sync),
        lambda: wire.parse_submit(200, JSON, b'{"request_id": "r"}', request=submit),
        lambda: wire.parse_result(200, JSON, b'{"status": "COMPLETED"}', request=result),
        lambda: wire.parse_status(200, {"content-type": "text/html"}, ECHO_HTML, request=status),
    ]
    return calls


def test_key_never_in_any_error() -> None:
    calls = _all_error_paths()
    raised = 0
    for call in calls:
        try:
            call()
        except RunnerError as err:
            raised += 1
            assert FAKE_KEY not in str(err)
            assert FAKE_KEY not in repr(err)
            assert FAKE_KEY not in str(getattr(err, "reason", ""))
    # Every path but the 404 of credits (None) must raise.
    assert raised == len(calls) - 2


def test_key_never_in_failed_reports() -> None:
    doc = json.dumps({"status": "FAILED", "error": f"blocked {FAKE_KEY}"}).encode()
    status = wire.parse_status(422, JSON, doc, request=wire.status_request(SUBMISSION, FAKE_KEY))
    result = wire.parse_result(422, JSON, doc, request=wire.result_request(SUBMISSION, FAKE_KEY))
    assert status.error is not None
    assert FAKE_KEY not in status.error
    assert FAKE_KEY not in str(result.error)
    assert "***" in status.error


def test_protocol_error_is_an_api_error() -> None:
    assert issubclass(ProtocolError, ApiError)
