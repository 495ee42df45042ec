"""Property tests: every endpoint's parser in runner.backends.wire, fed anything, ends defined.

Arbitrary JSON documents (nested, wide, hostile strings), arbitrary bytes,
arbitrary headers and status codes go into parse_submit, parse_status,
parse_result, parse_sync and parse_credits. Each returns a value of
runner.backends.base (or a float / None) or raises a runner.errors error;
anything else (RecursionError, KeyError, a pydantic error, ...) fails. What
comes back is also checked: no control character in any message or error
text, never more images than asked for, a cost that is None or within its
bounds, a request id that fits in one path segment.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.backends import wire
from runner.backends.base import Metrics, Result, StatusReport, Submission, SyncResult
from runner.backends.hints import MAX_COST_PER_IMAGE
from runner.errors import RunnerError
from runner.jobs import Request

BASE = "https://api.example.test"
KEY = "sk-prop-0123456789"
NOW = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
ID = "0b7e2f3c-1111-4222-8333-944445555666"
CONTROL = {chr(c) for c in range(0x20)} | {chr(0x7F)} | {chr(c) for c in range(0x80, 0xA0)}

hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "\x1b]0;title\x07",
            "\x1b[2J\x1b[31mred",
            "\x9b31m",
            "\u202eevil",
            "../../x",
            "a/b?c#d",
            KEY,
            "data:image/png;base64,iVBORw0KGgo=",
            "https://api.example.test/media/x/0.png",
            "/media/x/0.png",
            "NaN",
            "-1000",
            "COMPLETED",
            "FAILED",
        ]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(
            st.sampled_from(
                [
                    "status",
                    "request_id",
                    "status_url",
                    "response_url",
                    "output",
                    "images",
                    "url",
                    "metrics",
                    "cost",
                    "error",
                    "detail",
                    "seed",
                    "credits",
                    "free-credits",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=6,
        ),
    ),
    max_leaves=30,
)
statuses = st.sampled_from([200, 201, 204, 301, 400, 401, 404, 406, 422, 429, 500, 503, 599])
header_maps = st.dictionaries(
    st.sampled_from(
        [
            "content-type",
            "retry-after",
            "x-rate-limit-reset-at-utc",
            "x-request-id",
            "x-cost",
            "x-seed-value",
            "x-generation-time",
            "location",
        ]
    ),
    st.one_of(hostile_text, st.sampled_from(["image/png", "application/json", "text/html"])),
    max_size=5,
)


def _deep(depth: int) -> bytes:
    return b'{"status":"COMPLETED","output":' + b"[" * depth + b"]" * depth + b"}"


bodies = st.one_of(
    documents.map(lambda d: json.dumps(d, allow_nan=True).encode()),
    st.binary(max_size=200),
    st.sampled_from(
        [
            _deep(40),
            _deep(100_000),
            b"[" + b"0," * 20_000 + b"0]",
            b'{"status":"COMPLETED","output":'
            + json.dumps([f"/m/{i}.png" for i in range(500)]).encode()
            + b"}",
            b"\x89PNG\r\n\x1a\n" + b"\x00" * 20,
            b"1" * 5000,
        ]
    ),
)


def _request(n: int) -> Request:
    return Request(
        prompt="a fox",
        mode="standard",
        aspect_ratio="1:1",
        resolution="1k",
        n=n,
        output_format="png",
    )


def _texts(value: object) -> list[str]:
    """Every text of a parsed value a user may read."""
    if isinstance(value, StatusReport | Result):
        return [value.error or ""]
    if isinstance(value, Submission):
        return [value.request_id]
    if isinstance(value, SyncResult):
        return [value.request_id or ""]
    return []


def _check_metrics(metrics: Metrics, images: int) -> None:
    cost = metrics.cost
    assert cost is None or (math.isfinite(cost) and 0 <= cost <= MAX_COST_PER_IMAGE * images)
    for duration in (metrics.inference_time, metrics.queue_time, metrics.total_time):
        assert duration is None or (math.isfinite(duration) and duration >= 0)


def _defined(call: Callable[[], Any], n: int) -> None:
    try:
        value = call()
    except RunnerError as err:
        texts = [str(err)]
        value = None
    else:
        texts = _texts(value)
    for text in texts:
        assert not CONTROL & set(text), repr(text)
        assert KEY not in text
    if isinstance(value, Result | SyncResult):
        assert len(value.media) <= n
        completed = isinstance(value, SyncResult) or value.state == "COMPLETED"
        assert value.missing == (n - len(value.media) if completed else 0)
        assert value.dropped >= 0
        _check_metrics(value.metrics, 4)
    if isinstance(value, StatusReport):
        _check_metrics(value.metrics, 4)
    if isinstance(value, Submission):
        assert "/" not in value.request_id and ".." not in value.request_id.split(".")
        assert value.n == n
    if value is not None and not isinstance(value, Result | SyncResult | StatusReport | Submission):
        assert isinstance(value, float) and math.isfinite(value)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(status=statuses, headers=header_maps, body=bodies, n=st.integers(1, 4))
def test_every_parser_ends_in_a_value_or_our_error(
    status: int, headers: dict[str, str], body: bytes, n: int
) -> None:
    submission = Submission(ID, f"{BASE}/v2/requests/{ID}/status", f"{BASE}/v2/requests/{ID}", n=n)
    submit = wire.submit_request(BASE, "grok-imagine-image", _request(n), KEY)
    sync = wire.sync_request(BASE, "grok-imagine-image", _request(n), KEY)
    poll = wire.status_request(submission, KEY)
    fetch = wire.result_request(submission, KEY)
    credits = wire.credits_request(BASE, KEY)
    common: dict[str, Any] = {"now_utc": NOW}
    _defined(lambda: wire.parse_submit(status, headers, body, request=submit, **common), n)
    _defined(lambda: wire.parse_status(status, headers, body, request=poll, **common), n)
    _defined(
        lambda: wire.parse_result(status, headers, body, request=fetch, expected=n, **common), n
    )
    _defined(lambda: wire.parse_sync(status, headers, body, request=sync, **common), n)
    _defined(lambda: wire.parse_credits(status, headers, body, request=credits, **common), n)


@PROPERTY
@given(doc=documents, n=st.integers(1, 4))
def test_a_result_document_keeps_at_most_n_images(doc: object, n: int) -> None:
    body = json.dumps({"status": "COMPLETED", "output": doc}, allow_nan=True).encode()
    submission = Submission(ID, f"{BASE}/s", f"{BASE}/r", n=n)
    fetch = wire.result_request(submission, KEY)
    _defined(lambda: wire.parse_result(200, {}, body, request=fetch, expected=n, now_utc=NOW), n)
