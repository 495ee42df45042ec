"""xAI's wire, sans-IO: the request built from our params, answers and errors read back."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from backend_helpers import FAKE_KEY, encode_image, make_request

from runner.backends import xai_wire
from runner.backends.media import decode_inline
from runner.errors import (
    ApiError,
    AuthError,
    BadRequest,
    InsufficientCredits,
    JobFailed,
    ProtocolError,
    RateLimited,
    ServerError,
    UsageError,
)
from runner.jobs import ImageInput, Request
from runner.money import micros

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
BASE = "https://api.x.ai"


def build(request: Request | None = None, **kw: object) -> xai_wire.WireRequest:
    return xai_wire.generation_request(
        BASE, "grok-imagine-image", request or make_request(n=3), FAKE_KEY, **kw
    )


def test_request_maps_our_params_onto_xais() -> None:
    sent = build()
    assert (sent.method, sent.url) == ("POST", "https://api.x.ai/v1/images/generations")
    assert sent.json == {
        "model": "grok-imagine-image",
        "prompt": "a red fox",
        "n": 3,
        "aspect_ratio": "1:1",
        "resolution": "1k",
        "response_format": "b64_json",
    }
    names = {name.lower(): value for name, value in sent.headers}
    assert names["authorization"] == f"Bearer {FAKE_KEY}"
    assert "x-api-key" not in names
    assert FAKE_KEY not in repr(sent)


@pytest.mark.parametrize(
    ("model", "mode", "sent"),
    [
        ("grok-imagine-image", "standard", "grok-imagine-image"),
        ("grok-imagine-image", "quality", "grok-imagine-image-quality"),
        ("some-other-model", "quality", "some-other-model"),
    ],
)
def test_mode_picks_the_model(model: str, mode: str, sent: str) -> None:
    assert xai_wire.wire_model(model, mode) == sent


def test_no_key_no_authorization_header() -> None:
    sent = xai_wire.generation_request(BASE, "grok-imagine-image", make_request(), None)
    assert all(name.lower() != "authorization" for name, _ in sent.headers)


def test_input_images_go_as_url_or_data_uri() -> None:
    png = encode_image("PNG")
    url = ImageInput(kind="url", source="https://example.com/a.png", sha256="0" * 64)
    assert build(make_request(image=url)).json["image_url"] == "https://example.com/a.png"  # type: ignore[index]
    path = ImageInput(kind="path", source="a.png", sha256="0" * 64, path="/x/a.png")
    sent = build(make_request(image=path), image_bytes=png).json
    assert sent is not None
    assert sent["image_url"] == "data:image/png;base64," + base64.b64encode(png).decode()
    data = ImageInput(
        kind="data",
        source="data:image/jpeg;base64," + base64.b64encode(encode_image("JPEG")).decode(),
        sha256="0" * 64,
    )
    sent = build(make_request(image=data)).json
    assert sent is not None and str(sent["image_url"]).startswith("data:image/jpeg;base64,/9j/")
    with pytest.raises(UsageError, match="not read"):
        build(make_request(image=path))


def answer(**doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_b64_answer_with_ticks_is_exact_cost() -> None:
    jpeg = encode_image("JPEG")
    body = answer(
        created=1,
        data=[
            {"b64_json": base64.b64encode(jpeg).decode(), "mime_type": "image/jpeg"},
            {"url": "https://imgen.x.ai/xai-imgen/abc.jpeg", "mime_type": "image/jpeg"},
        ],
        usage={"cost_in_usd_ticks": 400_000_000},
    )
    got = xai_wire.parse_generation(
        200, {"x-request-id": "r-1"}, body, request=build(), output_format="png", now_utc=NOW
    )
    assert got.metrics.cost == 0.04
    assert micros(got.metrics.cost) == 40_000
    assert got.request_id == "r-1"
    inline, remote = got.media
    assert isinstance(inline, xai_wire.XaiMedia) and inline.convert_to == "png"
    assert decode_inline(inline) == jpeg
    assert remote.url == "https://imgen.x.ai/xai-imgen/abc.jpeg"


@pytest.mark.parametrize(
    ("ticks", "expected"),
    [(0, 0), (200_000_000, 20_000), (4_999, 0), (5_000, 1), (123_456_789, 12_346)],
)
def test_ticks_to_micros_round_half_up(ticks: int, expected: int) -> None:
    assert xai_wire.micros_of_ticks(ticks) == expected


@pytest.mark.parametrize("usage", [None, {}, {"cost_in_usd_ticks": "x"}, {"cost_in_usd_ticks": -1}])
def test_missing_or_bad_ticks_leave_cost_unknown(usage: object) -> None:
    body = answer(data=[{"url": "https://x/a.jpg"}], usage=usage)
    got = xai_wire.parse_generation(200, {}, body, request=build(), now_utc=NOW)
    assert got.metrics.cost is None


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        answer(data=[]),
        answer(created=1),
        answer(data=[{"revised_prompt": 1}]),
    ],
)
def test_unusable_2xx_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        xai_wire.parse_generation(200, {}, body, request=build(), now_utc=NOW)


@pytest.mark.parametrize(
    ("status", "text", "cls"),
    [
        (400, "Argument not supported: size", BadRequest),
        (400, "Generated image rejected by content moderation.", JobFailed),
        (401, "Incorrect API key provided", AuthError),
        (403, "Your team has run out of credits", InsufficientCredits),
        (403, "The model is not available for your team", AuthError),
        (404, "The model grok-x does not exist", BadRequest),
        (422, "Failed to deserialize the JSON body", BadRequest),
        (429, "Too many requests", RateLimited),
        (503, "Service unavailable", ServerError),
        (302, "", ApiError),
    ],
)
def test_errors_map_to_ours(status: int, text: str, cls: type[Exception]) -> None:
    body = answer(code="x", error=f"{text} (key {FAKE_KEY})")
    with pytest.raises(cls) as caught:
        xai_wire.parse_generation(status, {"retry-after": "7"}, body, request=build(), now_utc=NOW)
    assert type(caught.value) is cls
    assert FAKE_KEY not in str(caught.value)
    assert str(caught.value).startswith(f"POST /v1/images/generations -> {status}")
    if cls is RateLimited:
        assert caught.value.retry_after == 7.0  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [400, 401, 429, 503])
def test_a_hostile_error_body_is_not_quoted_and_raises_ours(status: int) -> None:
    # 100,000 levels of nesting: the kind of refusal is still the code's, the body unread.
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    with pytest.raises((ApiError, AuthError)) as caught:
        xai_wire.parse_generation(
            status, {"content-type": "application/json"}, deep, request=build(), now_utc=NOW
        )
    assert "unreadable answer" in str(caught.value)


def test_a_multi_image_edit_goes_to_edits_as_an_images_list() -> None:
    png = encode_image("PNG")
    first = ImageInput(kind="path", source="a.png", sha256="1" * 64, path="/x/a.png")
    url = ImageInput(kind="url", source="https://example.com/b.png", sha256="2" * 64)
    third = ImageInput(kind="path", source="c.png", sha256="3" * 64, path="/x/c.png")
    request = Request(
        prompt="<IMAGE_0> meets <IMAGE_1> and <IMAGE_2>",
        mode="standard",
        aspect_ratio="1:1",
        resolution="1k",
        n=1,
        output_format="png",
        image=first,
        more_images=(url, third),
    )
    sent = build(request, image_bytes=png, more_bytes=[None, png])
    assert sent.url == BASE + xai_wire.EDITS_PATH
    assert sent.json is not None and "image_url" not in sent.json
    data_uri = "data:image/png;base64," + base64.b64encode(png).decode()
    assert sent.json["images"] == [
        {"url": data_uri},
        {"url": "https://example.com/b.png"},
        {"url": data_uri},
    ]
    # One source image stays the generations call with image_url.
    single = build(make_request(image=url))
    assert single.url == BASE + xai_wire.GENERATIONS_PATH
    with pytest.raises(UsageError, match="not read"):
        build(request, image_bytes=png)  # the third image's file was not read
