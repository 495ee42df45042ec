"""Building requests: base URL, paths, headers, bodies, input images. No network."""

from __future__ import annotations

import base64
import hashlib

import pytest
from backend_helpers import FAKE_KEY, encode_image, make_request

from runner.backends import wire
from runner.backends.base import Submission
from runner.errors import UsageError
from runner.jobs import ImageInput

BASE = "https://api.segmind.com"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://api.segmind.com", BASE),
        ("https://api.segmind.com/", BASE),
        ("https://api.segmind.com/v1", BASE),
        ("https://api.segmind.com/v2/", BASE),
        ("  https://api.segmind.com/v1/  ", BASE),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
        ("http://127.0.0.1:8123/v2", "http://127.0.0.1:8123"),
        ("https://gw.example.com/segmind/v1", "https://gw.example.com/segmind"),
        ("https://gw.example.com/api/v10", "https://gw.example.com/api/v10"),
    ],
)
def test_normalize_base_url(given: str, expected: str) -> None:
    assert wire.normalize_base_url(given) == expected


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("ftp://api.segmind.com", "https://"),
        ("api.segmind.com", "https://"),
        ("https://", "no host"),
        ("https://user:hunter2@api.segmind.com", "credentials"),
        ("https://api.segmind.com/v1?key=1", "query"),
        ("https://api.segmind.com/#top", "fragment"),
        ("https://api.segmind.com:99999", "not a valid URL"),
    ],
)
def test_normalize_base_url_refuses(given: str, words: str) -> None:
    with pytest.raises(UsageError) as caught:
        wire.normalize_base_url(given, source="--base-url")
    text = str(caught.value)
    assert text.startswith("--base-url: ")
    assert words in text
    assert "hunter2" not in text


def test_submit_request_shape() -> None:
    request = make_request(n=2, fmt="webp")
    sent = wire.submit_request(BASE, "grok-imagine-image", request, FAKE_KEY)
    assert sent.method == "POST"
    assert sent.url == f"{BASE}/v2/grok-imagine-image"
    assert sent.json == request.params()
    headers = dict(sent.headers)
    assert headers["x-api-key"] == FAKE_KEY
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"].startswith("runner/")
    assert sent.where == "POST /v2/grok-imagine-image"
    assert FAKE_KEY not in repr(sent)


def test_requests_without_key_carry_no_key_header() -> None:
    submission = Submission("id1", f"{BASE}/v2/requests/id1/status", f"{BASE}/v2/requests/id1")
    built = [
        wire.submit_request(BASE, "m", make_request(), None),
        wire.sync_request(BASE, "m", make_request(), None),
        wire.status_request(submission, None),
        wire.result_request(submission, None),
        wire.credits_request(BASE, None),
    ]
    for sent in built:
        assert all(name.lower() != "x-api-key" for name, _ in sent.headers)
        assert sent.secret is None


def test_other_requests() -> None:
    submission = Submission("id1", f"{BASE}/v2/requests/id1/status", f"{BASE}/v2/requests/id1")
    status = wire.status_request(submission, FAKE_KEY)
    result = wire.result_request(submission, FAKE_KEY)
    sync = wire.sync_request(BASE, "grok-imagine-image", make_request(), FAKE_KEY)
    credits = wire.credits_request(BASE, FAKE_KEY)
    assert (status.method, status.url, status.json) == ("GET", submission.status_url, None)
    assert (result.method, result.url) == ("GET", submission.response_url)
    assert (sync.method, sync.url) == ("POST", f"{BASE}/v1/grok-imagine-image")
    assert "image/*" in dict(sync.headers)["Accept"]
    assert (credits.method, credits.url) == ("GET", f"{BASE}/v1/get-user-credits")
    assert all(r.secret == FAKE_KEY for r in (status, result, sync, credits))


def test_model_slug_is_one_path_segment() -> None:
    sent = wire.submit_request(BASE, "../v1/get-user-credits", make_request(), None)
    assert sent.url == f"{BASE}/v2/..%2Fv1%2Fget-user-credits"
    with pytest.raises(UsageError):
        wire.submit_request(BASE, "..", make_request(), None)


def test_input_image_url_is_sent_as_is() -> None:
    image = ImageInput("url", "https://example.com/in.png", sha256="0" * 64)
    sent = wire.submit_request(BASE, "m", make_request(image=image), None)
    assert sent.json is not None
    assert sent.json["image"] == "https://example.com/in.png"


def test_input_image_data_uri_is_sent_as_plain_base64() -> None:
    png = encode_image("PNG")
    b64 = base64.b64encode(png).decode()
    image = ImageInput("data", f"data:image/png;base64,{b64}", hashlib.sha256(png).hexdigest())
    sent = wire.submit_request(BASE, "m", make_request(image=image), None)
    assert sent.json is not None
    assert sent.json["image"] == b64
    assert base64.b64decode(str(sent.json["image"])) == png


def test_input_image_file_bytes_are_base64_encoded() -> None:
    jpeg = encode_image("JPEG")
    image = ImageInput("path", "in.jpg", hashlib.sha256(jpeg).hexdigest(), path="/x/in.jpg")
    sent = wire.sync_request(BASE, "m", make_request(image=image), None, image_bytes=jpeg)
    assert sent.json is not None
    assert base64.b64decode(str(sent.json["image"])) == jpeg
    with pytest.raises(UsageError, match="not read"):
        wire.submit_request(BASE, "m", make_request(image=image), None)


def test_input_image_bad_data_uri() -> None:
    image = ImageInput("data", "data:image/png;base64,@@@@", sha256="1" * 64)
    with pytest.raises(UsageError, match="data URI"):
        wire.submit_request(BASE, "m", make_request(image=image), None)
