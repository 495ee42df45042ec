"""XaiBackend against the emulator's xAI side, in-process, on trio's virtual clock."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from backend_helpers import FAKE_KEY, encode_image, make_request, small_config
from PIL import Image

from runner.backends.segmind import SegmindBackend
from runner.backends.select import LOCAL_BASE_URLS, local_backend
from runner.backends.xai import XaiBackend, convert_image
from runner.emulator import Emulator, EmulatorTransport, create_app, hash_key
from runner.errors import (
    AuthError,
    BadRequest,
    DownloadError,
    InsufficientCredits,
    JobFailed,
    RateLimited,
    TransportError,
    UsageError,
)
from runner.jobs import ImageInput

pytestmark = pytest.mark.anyio
XAI_ROOT = LOCAL_BASE_URLS["xai"]


def xai_on(emu: Emulator, *, key: str | None = FAKE_KEY, **kw: object) -> XaiBackend:
    app = create_app(emu)
    return XaiBackend(
        XAI_ROOT,
        key,
        name="local",
        transport=EmulatorTransport(app),
        media_transport=EmulatorTransport(app),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def xai(emu: Emulator) -> AsyncIterator[XaiBackend]:
    async with xai_on(emu) as client:
        yield client


@pytest.mark.parametrize("response_format", ["b64_json", "url"])
@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
async def test_round_trip_in_the_format_asked(
    emu: Emulator, response_format: str, fmt: str
) -> None:
    async with xai_on(emu, response_format=response_format) as xai:
        answer = await xai.run_sync("grok-imagine-image", make_request(n=2, fmt=fmt))
        assert len(answer.media) == 2
        assert answer.metrics.cost == pytest.approx(0.04)
        assert answer.request_id is not None
        for media in answer.media:
            assert (media.url or "").startswith(
                "data:image/jpeg;base64," if response_format == "b64_json" else f"{XAI_ROOT}/media/"
            )
            data = await xai.download(media, max_bytes=10_000_000)
            with Image.open(io.BytesIO(data)) as picture:
                assert picture.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]
                assert picture.size == (64, 64)
    (call,) = emu.calls("sync")
    assert (call.path, call.status, call.key_hash) == (
        "/v1/images/generations",
        200,
        hash_key(FAKE_KEY),
    )
    assert "authorization" in call.header_names and "x-api-key" not in call.header_names
    if response_format == "url":
        media_calls = emu.calls("media")
        assert len(media_calls) == 2
        assert all("authorization" not in c.header_names for c in media_calls)


async def test_quality_mode_is_the_quality_model(xai: XaiBackend, emu: Emulator) -> None:
    request = make_request()
    quality = type(request)(**{**request.params(), "mode": "quality"})  # type: ignore[arg-type]
    answer = await xai.run_sync("grok-imagine-image", quality)
    assert answer.metrics.cost == pytest.approx(0.05)  # the emulator priced it as quality
    (view,) = emu.accepted_submits()
    assert view.params.mode == "quality"


async def test_segmind_never_sends_authorization(emu: Emulator) -> None:
    async with local_backend(emulator=emu, api_key=FAKE_KEY) as segmind:
        assert isinstance(segmind, SegmindBackend) and not isinstance(segmind, XaiBackend)
        await segmind.run_sync("grok-imagine-image", make_request())
    (call,) = emu.calls("sync")
    assert "x-api-key" in call.header_names and "authorization" not in call.header_names


async def test_wrong_key_is_401_without_the_key(emu: Emulator) -> None:
    async with xai_on(emu, key="sk-wrong-KEY-42") as xai:
        with pytest.raises(AuthError) as caught:
            await xai.run_sync("grok-imagine-image", make_request())
    assert "sk-wrong-KEY-42" not in str(caught.value)
    assert "XAI_API_KEY" in str(caught.value)


async def test_content_refusal_is_a_final_400_and_not_charged(
    xai: XaiBackend, emu: Emulator
) -> None:
    with pytest.raises(JobFailed, match="moderated"):
        await xai.run_sync("grok-imagine-image", make_request(prompt="a blocked thing"))
    assert emu.charged_total() == 0.0


async def test_unknown_model_is_a_bad_request(xai: XaiBackend) -> None:
    with pytest.raises(BadRequest, match="404"):
        await xai.run_sync("grok-nope", make_request())


async def test_out_of_credits_is_403_insufficient(emu: Emulator, xai: XaiBackend) -> None:
    emu.set_balance(FAKE_KEY, 0.01)
    with pytest.raises(InsufficientCredits, match="403"):
        await xai.run_sync("grok-imagine-image", make_request())


async def test_rate_limit_and_drops_through_the_shared_machinery() -> None:
    emu = Emulator(small_config(rpm=1))
    async with xai_on(emu) as xai:
        await xai.run_sync("grok-imagine-image", make_request())
        with pytest.raises(RateLimited) as caught:
            await xai.run_sync("grok-imagine-image", make_request())
        assert caught.value.retry_after is not None and caught.value.retry_after > 0
        await anyio.sleep(61)
        emu.faults.script("sync", "drop_after")
        with pytest.raises(TransportError) as lost:
            await xai.run_sync("grok-imagine-image", make_request())
        assert lost.value.sent  # the answer was lost: possibly billed
    assert [c.fault for c in emu.calls("sync")] == [None, None, "drop_after"]


async def test_edit_sends_a_data_uri(xai: XaiBackend, emu: Emulator, tmp_path: Path) -> None:
    png = encode_image("PNG", (8, 8))
    path = tmp_path / "in.png"
    path.write_bytes(png)
    image = ImageInput(
        kind="path", source="in.png", sha256=hashlib.sha256(png).hexdigest(), path=str(path)
    )
    answer = await xai.run_sync("grok-imagine-image", make_request(image=image))
    assert len(answer.media) == 1
    (view,) = emu.accepted_submits()
    assert view.params.image is not None and view.params.image.data == png


async def test_submit_is_refused_clearly(xai: XaiBackend) -> None:
    with pytest.raises(UsageError, match="synchronous"):
        await xai.submit("grok-imagine-image", make_request())


async def test_inline_media_over_the_cap_is_refused_before_decoding(xai: XaiBackend) -> None:
    answer = await xai.run_sync("grok-imagine-image", make_request())
    with pytest.raises(DownloadError, match="over 100 bytes"):
        await xai.download(answer.media[0], max_bytes=100)


def test_convert_image_keeps_matching_bytes_and_refuses_junk() -> None:
    jpeg = encode_image("JPEG")
    assert convert_image(jpeg, "jpeg") is jpeg
    assert convert_image(jpeg, "png").startswith(b"\x89PNG")
    with pytest.raises(DownloadError):
        convert_image(b"not an image", "png")


async def test_a_multi_image_edit_is_billed_for_its_sources_and_outputs(
    xai: XaiBackend, emu: Emulator, tmp_path: Path
) -> None:
    files, first = [], b""
    for i, color in enumerate(("red", "green", "blue")):
        out = io.BytesIO()
        Image.new("RGB", (8, 8), color).save(out, format="PNG")
        path = tmp_path / f"in{i}.png"
        path.write_bytes(out.getvalue())
        first = first or out.getvalue()
        files.append(
            ImageInput(
                kind="path",
                source=path.name,
                sha256=hashlib.sha256(out.getvalue()).hexdigest(),
                path=str(path),
            )
        )
    request = make_request(n=2, image=files[0])
    answer = await xai.run_sync(
        "grok-imagine-image", replace(request, more_images=tuple(files[1:]))
    )
    assert len(answer.media) == 2
    assert [c.path for c in emu.calls("sync")] == ["/v1/images/edits"]
    (view,) = emu.accepted_submits()
    assert view.params.image is not None and view.params.image.data == first
    # $0.02 an image, for 2 outputs and 3 sources: the answer's ticks say so exactly.
    assert view.charged == pytest.approx(0.02 * 5)
    assert answer.metrics.cost == pytest.approx(0.10, abs=1e-9)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"image": {"url": "https://e.com/a.png"}, "images": []}, "mutually exclusive"),
        ({"images": [{"url": f"https://e.com/{i}.png"} for i in range(4)]}, "at most 3"),
        ({"images": ["https://e.com/a.png"]}, "object with a url"),
        ({}, "needs image or images"),
        ({"image_url": "https://e.com/a.png"}, "Argument not supported: image_url"),
    ],
)
async def test_the_edits_route_refuses_what_xai_would(
    emu: Emulator, body: dict[str, object], says: str
) -> None:
    import httpx

    transport = EmulatorTransport(create_app(emu))
    async with httpx.AsyncClient(transport=transport, base_url=XAI_ROOT) as client:
        sent = {"model": "grok-imagine-image", "prompt": "merge them", **body}
        answer = await client.post(
            "/v1/images/edits", json=sent, headers={"Authorization": f"Bearer {FAKE_KEY}"}
        )
    assert answer.status_code == 400
    assert says in answer.text
    assert emu.accepted_submits() == []
