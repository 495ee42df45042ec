"""Hostile answers at the wire level, sans-IO: control characters, costs, ids, image counts,
and the size cap of runner.backends.bounded (on httpx responses built in memory)."""

from __future__ import annotations

import json
import zlib

import httpx
import pytest

from runner.backends import wire
from runner.backends.answers import MAX_SERVER_TEXT, HostileBody, clean_text, decode_body
from runner.backends.base import Result, Submission, is_request_id, submission_for
from runner.backends.bounded import UnreadableBody, read_body
from runner.backends.hints import parse_metrics, trusted_cost
from runner.backends.media import MAX_INLINE_CHARS
from runner.errors import ProtocolError, RunnerError, TransportError
from runner.jobs import Request

BASE = "https://api.example.test"
ID = "0b7e2f3c-1111-4222-8333-944445555666"
KEY = "sk-wire-hostile-0123"


def _request(n: int = 1) -> Request:
    return Request(
        prompt="a fox",
        mode="standard",
        aspect_ratio="1:1",
        resolution="1k",
        n=n,
        output_format="png",
    )


def _submission(n: int | None = 1) -> Submission:
    return submission_for(BASE, ID, n=n)


# -- server text --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b]0;owned\x07plain", "plain"),
        ("\x1b]8;;https://evil\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1b[2J\x1b[31mred\x1b[0m", "red"),
        ("\x9b31mhi", "hi"),
        ("bell\x07 here", "bell here"),
        ("a\rb\nc\td", "a b c d"),
        ("\u202eevil\u202c ok", "evil ok"),
        ("zero\u200bwidth", "zero width"),
        (f"key {KEY} echoed", "key *** echoed"),
    ],
)
def test_server_text_is_printable(text: str, shown: str) -> None:
    assert clean_text(text, KEY) == shown


def test_server_text_is_cut_however_long() -> None:
    cleaned = clean_text("\x1b[31m" * 100_000 + "x" * 1_000_000, None)
    assert len(cleaned) <= MAX_SERVER_TEXT


def test_an_error_message_from_server_text_is_printable() -> None:
    doc = {"error": "\x1b]0;pwned\x07\x1b[2Jno"}
    with pytest.raises(RunnerError) as caught:
        wire.parse_submit(
            400,
            {},
            json.dumps(doc).encode(),
            request=wire.submit_request(BASE, "m", _request(), KEY),
        )
    assert str(caught.value) == "POST /v2/m -> 400: no"


# -- JSON shape -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b"[" * 33 + b"]" * 33, b"[" + b"0," * 10_000 + b"0]"],
)
def test_a_hostile_shape_is_refused(body: bytes) -> None:
    with pytest.raises(HostileBody):
        decode_body({}, body)


def test_a_deep_answer_is_retried_on_a_poll_and_final_on_a_submit() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    poll = wire.status_request(_submission(), KEY)
    with pytest.raises(TransportError) as lost:
        wire.parse_status(200, {}, deep, request=poll)
    assert lost.value.sent and "GET /v2/requests/" in str(lost.value)
    submit = wire.submit_request(BASE, "m", _request(), KEY)
    with pytest.raises(ProtocolError, match="nests deeper"):
        wire.parse_submit(200, {}, deep, request=submit)


def test_a_deep_error_body_keeps_its_status_mapping() -> None:
    poll = wire.status_request(_submission(), KEY)
    with pytest.raises(RunnerError) as caught:
        wire.parse_status(503, {}, b"[" * 50 + b"]" * 50, request=poll)
    assert "503" in str(caught.value) and "unreadable answer" in str(caught.value)


# -- costs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "images", "trusted"),
    [
        (0.02, 1, 0.02),
        ("0.04", 2, 0.04),
        (0, 1, 0.0),
        (-1000, 1, None),
        (-0.01, 1, None),
        (float("nan"), 1, None),
        (float("inf"), 1, None),
        (1000.0, 1, 1000.0),
        (1000.01, 1, None),
        (3000.0, 4, 3000.0),
        (True, 1, None),
        ("cheap", 1, None),
    ],
)
def test_a_cost_is_trusted_only_when_it_can_be_true(
    value: object, images: int, trusted: float | None
) -> None:
    assert trusted_cost(value, images) == trusted


def test_negative_durations_are_unknown() -> None:
    metrics = parse_metrics({"inference_time": -3, "queue_time": 2, "cost": -1})
    assert (metrics.inference_time, metrics.queue_time, metrics.cost) == (None, 2.0, None)


# -- request ids ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (ID, True),
        ("abc_123.x:y~z", True),
        ("../../x", False),
        ("a/b?c#d", False),
        ("..", False),
        ("", False),
        ("a b", False),
        ("a\x1b[2J", False),
        ("x" * 129, False),
    ],
)
def test_what_a_request_id_may_be(value: str, ok: bool) -> None:
    assert is_request_id(value) is ok


@pytest.mark.parametrize("request_id", ["../../x", "a/b?c#d", "..", ".", "%2e%2e"])
def test_a_recorded_id_stays_one_path_segment(request_id: str) -> None:
    rebuilt = submission_for(BASE, request_id)
    for url in (rebuilt.status_url, rebuilt.response_url):
        parsed = httpx.URL(url)
        assert parsed.host == "api.example.test" and not parsed.query and not parsed.fragment
        segments = parsed.raw_path.decode().split("/")
        assert segments[:3] == ["", "v2", "requests"] and len(segments) in (4, 5)
        assert segments[3] not in (".", "..")


def test_a_submit_with_a_hostile_id_is_refused() -> None:
    doc = {
        "request_id": "../../x",
        "status_url": f"{BASE}/v2/requests/../../x/status",
        "response_url": f"{BASE}/v2/requests/../../x",
    }
    submit = wire.submit_request(BASE, "m", _request(), KEY)
    with pytest.raises(ProtocolError, match="is not an id"):
        wire.parse_submit(200, {}, json.dumps(doc).encode(), request=submit)


def test_an_accepted_submit_knows_its_n() -> None:
    doc = {
        "request_id": ID,
        "status_url": f"{BASE}/v2/requests/{ID}/status",
        "response_url": f"{BASE}/v2/requests/{ID}",
    }
    submit = wire.submit_request(BASE, "m", _request(n=3), KEY)
    assert wire.parse_submit(200, {}, json.dumps(doc).encode(), request=submit).n == 3


# -- image counts ---------------------------------------------------------------------


def _result(urls: list[str], n: int | None) -> Result:
    body = json.dumps({"status": "COMPLETED", "output": urls}).encode()
    fetch = wire.result_request(_submission(n), KEY)
    return wire.parse_result(200, {}, body, request=fetch, expected=n)


def test_extra_images_are_dropped_and_counted() -> None:
    result = _result([f"{BASE}/media/x/{i}.png" for i in range(10_000)], 1)
    assert [m.url for m in result.media] == [f"{BASE}/media/x/0.png"]
    assert result.dropped == 9_999 and not result.incomplete


def test_without_a_known_n_at_most_four_are_kept() -> None:
    result = _result([f"{BASE}/media/x/{i}.png" for i in range(9)], None)
    assert len(result.media) == 4 and result.dropped == 5


def test_too_few_images_are_marked_incomplete() -> None:
    result = _result([f"{BASE}/media/x/0.png"], 2)
    assert len(result.media) == 1 and result.missing == 1 and result.incomplete


def test_a_raw_sync_image_for_n_two_is_incomplete() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    sync = wire.sync_request(BASE, "m", _request(n=2), KEY)
    answer = wire.parse_sync(200, {"content-type": "image/png"}, png, request=sync)
    assert answer.missing == 1 and answer.incomplete


def test_an_inline_image_over_the_cap_is_not_decoded() -> None:
    uri = "data:image/png;base64," + "A" * MAX_INLINE_CHARS
    fetch = wire.result_request(_submission(), KEY)
    body = json.dumps({"status": "COMPLETED", "output": uri}).encode()
    with pytest.raises(ProtocolError, match="over the cap"):
        wire.parse_result(200, {}, body, request=fetch, expected=1)


# -- the size cap ---------------------------------------------------------------------


def _response(body: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(200, headers=headers, stream=httpx.ByteStream(body))


@pytest.mark.anyio
async def test_a_body_under_the_cap_is_read_whole() -> None:
    assert await read_body(_response(b"x" * 100), 100) == b"x" * 100


@pytest.mark.anyio
async def test_a_body_over_the_cap_is_refused() -> None:
    with pytest.raises(UnreadableBody, match="longer than the 100 byte cap"):
        await read_body(_response(b"x" * 101), 100)


@pytest.mark.anyio
async def test_an_announced_length_over_the_cap_is_refused_unread() -> None:
    with pytest.raises(UnreadableBody, match="announces 5000 bytes"):
        await read_body(_response(b"", **{"content-length": "5000"}), 100)


@pytest.mark.anyio
@pytest.mark.parametrize("wbits", [31, 15, -15])  # gzip, zlib deflate, raw deflate
async def test_compressed_bodies_are_inflated_under_the_cap(wbits: int) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    packed = packer.compress(b"{}" * 40) + packer.flush()
    encoding = "gzip" if wbits == 31 else "deflate"
    assert await read_body(_response(packed, **{"content-encoding": encoding}), 80) == b"{}" * 40
    with pytest.raises(UnreadableBody, match="inflates past"):
        await read_body(_response(packed, **{"content-encoding": encoding}), 79)


@pytest.mark.anyio
async def test_an_unknown_or_broken_encoding_is_refused() -> None:
    with pytest.raises(UnreadableBody, match="not supported"):
        await read_body(_response(b"x", **{"content-encoding": "br"}), 100)
    with pytest.raises(UnreadableBody, match="does not decode"):
        await read_body(_response(b"not gzip", **{"content-encoding": "gzip"}), 100)


def test_an_id_that_echoes_the_key_is_never_recorded() -> None:
    doc = {
        "request_id": KEY,
        "status_url": f"{BASE}/v2/requests/{KEY}/status",
        "response_url": f"{BASE}/v2/requests/{KEY}",
    }
    submit = wire.submit_request(BASE, "m", _request(), KEY)
    with pytest.raises(ProtocolError) as refused:
        wire.parse_submit(200, {}, json.dumps(doc).encode(), request=submit)
    assert KEY not in str(refused.value) and "is not an id" in str(refused.value)
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    sync = wire.sync_request(BASE, "m", _request(), KEY)
    answer = wire.parse_sync(
        200, {"content-type": "image/png", "x-request-id": KEY}, png, request=sync
    )
    assert answer.request_id is None and answer.media
