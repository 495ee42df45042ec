"""The emulator's xAI side checked with a client nobody here wrote: the `openai` package.

xAI's image API is OpenAI-compatible (docs/xai-wire.md): the official OpenAI
client, pointed at the loopback emulator's ``/v1``, must generate, read
base64 and URL answers, and see our 400 / 401 / 429 as its own errors.
Loopback, real clock (the emulator is time-scaled by the suite's conftest).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
from PIL import Image

from runner.emulator import Latency, Served, hash_key

KEY = "xai-emulator-test-key"
MODEL = "grok-imagine-image"
Serve = Callable[..., Served]


@pytest.fixture
def keyed(serve_emulator: Serve) -> Served:
    return serve_emulator(api_keys=frozenset({KEY}), latency=Latency("fixed", 1.0))


@pytest.fixture
def client(keyed: Served) -> Iterator[openai.OpenAI]:
    sdk = openai.OpenAI(api_key=KEY, base_url=f"{keyed.base_url}/v1", max_retries=0)
    yield sdk
    sdk.close()


def test_openai_client_generates_base64_jpegs(client: openai.OpenAI, keyed: Served) -> None:
    answer = client.images.generate(
        model=MODEL,
        prompt="a red fox",
        n=2,
        response_format="b64_json",
        extra_body={"aspect_ratio": "16:9", "resolution": "1k"},
    )
    assert answer.data is not None and len(answer.data) == 2
    for item in answer.data:
        assert item.b64_json is not None and item.revised_prompt == "a red fox"
        with Image.open(io.BytesIO(base64.b64decode(item.b64_json))) as image:
            assert (image.format, image.size) == ("JPEG", (1408, 768))
    # The SDK types `usage` with OpenAI's token fields; xAI's ticks come as an extra.
    usage = answer.usage
    assert usage is not None
    assert (usage.model_extra or {}).get("cost_in_usd_ticks") == 400_000_000  # 2 x $0.02
    (call,) = keyed.emulator.calls("sync")
    assert call.key_hash == hash_key(KEY) and "authorization" in call.header_names


def test_openai_client_gets_downloadable_urls(client: openai.OpenAI, keyed: Served) -> None:
    answer = client.images.generate(
        model="grok-imagine-image-quality", prompt="a blue fox", extra_body={"resolution": "2k"}
    )
    assert answer.data is not None
    (item,) = answer.data
    assert item.url is not None and item.url.startswith(f"{keyed.base_url}/media/")
    download = httpx.get(item.url)
    assert download.status_code == 200 and download.headers["content-type"] == "image/jpeg"
    (view,) = keyed.emulator.accepted_submits()
    assert (view.params.mode, view.params.resolution) == ("quality", "2k")


def test_openai_client_sees_refusals_as_its_errors(client: openai.OpenAI, keyed: Served) -> None:
    with pytest.raises(openai.BadRequestError, match="Argument not supported: size"):
        client.images.generate(model=MODEL, prompt="a fox", size="1024x1024")
    with pytest.raises(openai.BadRequestError, match="moderated"):
        client.images.generate(model=MODEL, prompt="a blocked fox")
    with pytest.raises(openai.NotFoundError):
        client.images.generate(model="grok-nope", prompt="a fox")
    wrong = openai.OpenAI(api_key="wrong", base_url=f"{keyed.base_url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.images.generate(model=MODEL, prompt="a fox")
    wrong.close()
    assert keyed.emulator.charged_total() == 0.0


def test_openai_client_sees_the_rate_limit(serve_emulator: Serve) -> None:
    # Real time: at the suite's time scale a rate window would be 60 ms, over before
    # the second call on a busy machine.
    served = serve_emulator(rpm=1, latency=Latency("fixed", 0.0), time_scale=1.0)
    sdk = openai.OpenAI(api_key=KEY, base_url=f"{served.base_url}/v1", max_retries=0)
    sdk.images.generate(model=MODEL, prompt="a fox")
    with pytest.raises(openai.RateLimitError):
        sdk.images.generate(model=MODEL, prompt="a fox")
    sdk.close()
