"""Every endpoint of the emulator in-process, on trio's virtual clock."""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from PIL import Image

from runner.emulator import InProcess, Latency
from runner.emulator.state import hash_key

pytestmark = pytest.mark.anyio

MODEL = "grok-imagine-image"
SUBMIT = f"/v2/{MODEL}"
SYNC = f"/v1/{MODEL}"
SMALL = {"resolution": "1k", "aspect_ratio": "1:1"}

Make = Callable[..., InProcess]


def fixed(seconds: float) -> Latency:
    return Latency("fixed", seconds, 0.0)


async def submit(client: httpx.AsyncClient, **body: Any) -> str:
    answer = await client.post(SUBMIT, json={"prompt": "a red fox", **SMALL, **body})
    assert answer.status_code == 200, answer.text
    request_id: str = answer.json()["request_id"]
    return request_id


async def test_submit_answers_queued_with_absolute_urls(emulator: InProcess) -> None:
    async with emulator.client() as client:
        answer = await client.post(SUBMIT, json={"prompt": "a red fox"})
    assert answer.status_code == 200
    body = answer.json()
    rid = body["request_id"]
    assert uuid.UUID(rid).version == 4
    assert body == {
        "request_id": rid,
        "status": "QUEUED",
        "poll_url": f"http://emulator/v1/requests/{rid}",
        "status_url": f"http://emulator/v2/requests/{rid}/status",
        "response_url": f"http://emulator/v2/requests/{rid}",
    }


async def test_public_base_url_overrides_the_request_base(make_emulator: Make) -> None:
    emu = make_emulator(public_base_url="https://api.example.test/")
    async with emu.client() as client:
        body = (await client.post(SUBMIT, json={"prompt": "x"})).json()
    assert body["status_url"].startswith("https://api.example.test/v2/requests/")


async def test_states_follow_the_clock_through_a_queue(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(10.0), workers=1)
    async with emu.client() as client:
        first, second = await submit(client), await submit(client)

        async def state(rid: str) -> str:
            answer = await client.get(f"/v2/requests/{rid}/status")
            assert answer.status_code == 200
            return str(answer.json()["status"])

        assert (await state(first), await state(second)) == ("PROCESSING", "QUEUED")
        queued = (await client.get(f"/v2/requests/{second}/status")).json()
        assert queued["metrics"] == {}
        assert queued["response_url"].endswith(f"/v2/requests/{second}")
        await anyio.sleep(10)
        assert (await state(first), await state(second)) == ("COMPLETED", "PROCESSING")
        await anyio.sleep(10)
        done = (await client.get(f"/v2/requests/{second}/status")).json()
        assert done == {
            "status": "COMPLETED",
            "request_id": second,
            "metrics": {"inference_time": 10.0},
        }
        result = (await client.get(f"/v2/requests/{second}")).json()
    assert result["metrics"]["queue_time"] == pytest.approx(10.0)
    assert result["metrics"]["total_time"] == pytest.approx(20.0)


async def test_a_queued_phase_that_inference_time_does_not_cover(make_emulator: Make) -> None:
    # 6 s QUEUED, then 4 s PROCESSING; the answer reports only the PROCESSING half.
    emu = make_emulator(
        latency=fixed(4.0), queue_delay=fixed(6.0), workers=8, report_queue_time=False
    )
    async with emu.client() as client:
        rid = await submit(client)
        await anyio.sleep(5.9)
        queued = (await client.get(f"/v2/requests/{rid}/status")).json()["status"]
        await anyio.sleep(0.2)
        processing = (await client.get(f"/v2/requests/{rid}/status")).json()["status"]
        await anyio.sleep(4.0)
        result = (await client.get(f"/v2/requests/{rid}")).json()
    assert (queued, processing, result["status"]) == ("QUEUED", "PROCESSING", "COMPLETED")
    assert result["metrics"]["inference_time"] == pytest.approx(4.0)
    assert "queue_time" not in result["metrics"]
    assert "total_time" not in result["metrics"]


async def test_result_before_completion_has_no_output(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(10.0))
    async with emu.client() as client:
        rid = await submit(client)
        answer = await client.get(f"/v2/requests/{rid}")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "PROCESSING",
        "request_id": rid,
        "metrics": {},
        "output": None,
    }


async def test_result_body_and_media_downloads(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(5.0), credits=10.0)
    async with emu.client() as client:
        rid = await submit(client, n=3, output_format="jpeg", mode="quality")
        await anyio.sleep(5)
        result = (await client.get(f"/v2/requests/{rid}")).json()
        poll = (await client.get(f"/v1/requests/{rid}")).json()
        downloads = [await client.get(item["url"]) for item in result["images"]]
    assert result["status"] == "COMPLETED"
    assert poll == result
    assert result["metrics"]["cost"] == pytest.approx(0.15)
    assert result["metrics"]["remaining_credits"] == pytest.approx(9.85)
    assert result["metrics"]["inference_time"] == pytest.approx(5.0)
    assert isinstance(result["seed"], int)
    assert result["output"] == [f"http://emulator/media/{rid}/{i}.jpg" for i in range(3)]
    for item, download in zip(result["images"], downloads, strict=True):
        assert download.status_code == 200
        assert download.headers["content-type"] == "image/jpeg" == item["content_type"]
        assert int(download.headers["content-length"]) == len(download.content) == item["file_size"]
        assert item["file_name"].endswith(".jpg")
        with Image.open(io.BytesIO(download.content)) as image:
            assert (image.format, image.size) == ("JPEG", (1024, 1024))
    assert len({d.content for d in downloads}) == 3


async def test_single_image_output_is_a_string(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(1.0))
    async with emu.client() as client:
        rid = await submit(client)
        await anyio.sleep(1)
        result = (await client.get(f"/v2/requests/{rid}")).json()
    assert result["output"] == f"http://emulator/media/{rid}/0.png"
    assert len(result["images"]) == 1


@pytest.mark.parametrize(
    ("fmt", "pil", "ratio", "size"),
    [
        ("png", "PNG", "16:9", (2816, 1536)),
        ("jpeg", "JPEG", "9:16", (1536, 2816)),
        ("webp", "WEBP", "4:3", (2560, 1792)),
    ],
)
async def test_formats_and_2k_sizes(
    make_emulator: Make, fmt: str, pil: str, ratio: str, size: tuple[int, int]
) -> None:
    emu = make_emulator(latency=fixed(1.0))
    async with emu.client() as client:
        answer = await client.post(
            SUBMIT, json={"prompt": "a lighthouse", "output_format": fmt, "aspect_ratio": ratio}
        )
        rid = answer.json()["request_id"]
        await anyio.sleep(1)
        url = (await client.get(f"/v2/requests/{rid}")).json()["output"]
        data = (await client.get(url)).content
    with Image.open(io.BytesIO(data)) as image:
        assert (image.format, image.size) == (pil, size)


async def test_defaults_are_the_api_defaults(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(1.0))
    async with emu.client() as client:
        rid = (await client.post(SUBMIT, json={"prompt": "defaults"})).json()["request_id"]
        await anyio.sleep(1)
        url = (await client.get(f"/v2/requests/{rid}")).json()["output"]
        data = (await client.get(url)).content
    with Image.open(io.BytesIO(data)) as image:  # 16:9, 2k, png
        assert (image.format, image.size) == ("PNG", (2816, 1536))


async def test_same_request_gives_same_image_and_other_prompt_differs(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(1.0))
    async with emu.client() as client:
        ids = [await submit(client, prompt=p) for p in ("a red fox", "a red fox", "a blue whale")]
        await anyio.sleep(1)
        images = []
        for rid in ids:
            url = (await client.get(f"/v2/requests/{rid}")).json()["output"]
            images.append((await client.get(url)).content)
    assert images[0] == images[1]
    assert images[0] != images[2]


def png_b64(size: tuple[int, int], colour: tuple[int, int, int] = (10, 200, 40)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.mark.parametrize("as_data_uri", [False, True])
async def test_edit_keeps_the_input_size_and_derives_from_it(
    make_emulator: Make, as_data_uri: bool
) -> None:
    emu = make_emulator(latency=fixed(1.0))
    inputs = [png_b64((300, 200), (10, 200, 40)), png_b64((300, 200), (200, 10, 40))]
    if as_data_uri:
        inputs = ["data:image/png;base64," + image for image in inputs]
    corners = []
    async with emu.client() as client:
        ids = [await submit(client, image=image, output_format="webp") for image in inputs]
        await anyio.sleep(1)
        for rid in ids:
            url = (await client.get(f"/v2/requests/{rid}")).json()["output"]
            data = (await client.get(url)).content
            with Image.open(io.BytesIO(data)) as edited:
                assert (edited.format, edited.size) == ("WEBP", (300, 200))
                corners.append(edited.convert("RGB").getpixel((299, 0)))
    # Same prompt, different input colours: the output follows the input.
    assert corners[0] != corners[1]


async def test_edit_from_url_uses_the_ratio_size(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(1.0))
    async with emu.client() as client:
        rid = await submit(client, image="https://example.test/cat.png", aspect_ratio="3:2")
        await anyio.sleep(1)
        url = (await client.get(f"/v2/requests/{rid}")).json()["output"]
        data = (await client.get(url)).content
    with Image.open(io.BytesIO(data)) as edited:
        assert edited.size == (1296, 864)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "prompt is required"),
        ({"prompt": "  "}, "prompt is required"),
        (
            {"prompt": "x", "aspect_ratio": "5:4"},
            "aspect_ratio '5:4' is not allowed; use one of: 1:1",
        ),
        ({"prompt": "x", "resolution": "4k"}, "resolution '4k' is not allowed"),
        (
            {"prompt": "x", "mode": "fast"},
            "mode 'fast' is not allowed; use one of: standard, quality",
        ),
        ({"prompt": "x", "output_format": "gif"}, "output_format 'gif' is not allowed"),
        ({"prompt": "x", "n": 5}, "n 5 is not allowed; use an integer from 1 to 4"),
        ({"prompt": "x", "n": "2"}, "n '2' is not allowed"),
        ({"prompt": "x", "n": True}, "n True is not allowed"),
        ({"prompt": "x", "image": "not base64!"}, "image: not an http(s) URL"),
        (
            {"prompt": "x", "image": base64.b64encode(b"hello").decode()},
            "image: the base64 data is not an image",
        ),
        ({"prompt": "x", "seed": 3}, "unknown param 'seed'"),
    ],
)
async def test_bad_params_are_400_naming_the_param(
    emulator: InProcess, body: dict[str, Any], needle: str
) -> None:
    async with emulator.client() as client:
        for path in (SUBMIT, SYNC):
            answer = await client.post(path, json=body)
            assert answer.status_code == 400
            assert needle in answer.json()["error"]
    assert emulator.emulator.accepted_submits() == []


async def test_unknown_params_pass_when_not_strict(make_emulator: Make) -> None:
    emu = make_emulator(strict_params=False)
    async with emu.client() as client:
        answer = await client.post(SUBMIT, json={"prompt": "x", "seed": 3})
    assert answer.status_code == 200


async def test_body_that_is_not_json_is_400(emulator: InProcess) -> None:
    async with emulator.client() as client:
        bad = await client.post(
            SUBMIT, content=b"{nope", headers={"content-type": "application/json"}
        )
        listed = await client.post(SUBMIT, json=["prompt"])
    assert bad.status_code == 400
    assert "not valid JSON" in bad.json()["error"]
    assert listed.status_code == 400
    assert "JSON object" in listed.json()["error"]


async def test_unknown_model_and_paths_are_404(emulator: InProcess) -> None:
    async with emulator.client() as client:
        model = await client.post("/v2/flux-dev", json={"prompt": "x"})
        sync = await client.post("/v1/flux-dev", json={"prompt": "x"})
        wrong_method = await client.get(SUBMIT)
        nowhere = await client.delete("/v3/anything")
    assert model.status_code == sync.status_code == 404
    assert model.json() == {"error": "Model flux-dev not found"}
    assert wrong_method.status_code == nowhere.status_code == 404
    assert nowhere.json() == {"error": "Not found: DELETE /v3/anything"}
    assert [c.kind for c in emulator.emulator.calls()][-2:] == ["other", "other"]


async def test_unknown_id_is_404_everywhere(emulator: InProcess) -> None:
    rid = "00000000-0000-4000-8000-000000000000"
    async with emulator.client() as client:
        answers = [
            await client.get(f"/v2/requests/{rid}/status"),
            await client.get(f"/v2/requests/{rid}"),
            await client.get(f"/v1/requests/{rid}"),
            await client.get(f"/media/{rid}/0.png"),
        ]
    assert [a.status_code for a in answers] == [404] * 4
    assert answers[0].json() == {"error": f"Request {rid} not found"}


async def test_media_index_and_extension_must_match(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(1.0))
    async with emu.client() as client:
        rid = await submit(client, n=2)
        early = await client.get(f"/media/{rid}/0.png")
        await anyio.sleep(1)
        answers = [
            await client.get(f"/media/{rid}/{name}")
            for name in ("1.png", "2.png", "0.jpg", "x.png")
        ]
    assert early.status_code == 404
    assert [a.status_code for a in answers] == [200, 404, 404, 404]


async def test_records_expire_after_retention(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(10.0), retention=100.0)
    async with emu.client() as client:
        rid = await submit(client)
        await anyio.sleep(99)
        before = [
            await client.get(f"/v2/requests/{rid}/status"),
            await client.get(f"/media/{rid}/0.png"),
        ]
        await anyio.sleep(1)
        after = [
            await client.get(f"/v2/requests/{rid}/status"),
            await client.get(f"/v2/requests/{rid}"),
            await client.get(f"/v1/requests/{rid}"),
            await client.get(f"/media/{rid}/0.png"),
        ]
    assert [a.status_code for a in before] == [200, 200]
    assert [a.status_code for a in after] == [404] * 4
    # The ledger keeps what the server accepted and charged, expired or not.
    assert [j.request_id for j in emu.emulator.accepted_submits()] == [rid]
    assert emu.emulator.charged_total() == pytest.approx(0.02)


async def test_time_scale_shrinks_latency_and_retention(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(10.0), retention=3600.0, time_scale=0.01)
    async with emu.client() as client:
        rid = await submit(client)
        await anyio.sleep(0.1)
        status = (await client.get(f"/v2/requests/{rid}/status")).json()
        await anyio.sleep(36)
        gone = await client.get(f"/v2/requests/{rid}/status")
    assert status["status"] == "COMPLETED"
    assert status["metrics"]["inference_time"] == pytest.approx(0.1)
    assert gone.status_code == 404


async def test_blocked_prompt_fails_with_422_and_is_not_charged(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(3.0), credits=1.0)
    async with emu.client() as client:
        rid = await submit(client, prompt="something NSFW here")
        running = await client.get(f"/v2/requests/{rid}/status")
        await anyio.sleep(3)
        status = await client.get(f"/v2/requests/{rid}/status")
        result = await client.get(f"/v2/requests/{rid}")
        media = await client.get(f"/media/{rid}/0.png")
        credits = (await client.get("/v1/get-user-credits")).json()
    assert running.json()["status"] == "PROCESSING"
    for answer in (status, result):
        assert answer.status_code == 422
        body = answer.json()
        assert body["status"] == "FAILED"
        assert body["request_id"] == rid
        assert body["error"].startswith("Content moderated")
        assert "metrics" in body
    assert media.status_code == 404
    assert credits == {"credits": 1.0, "free-credits": 0.0}
    assert emu.emulator.charged_total() == 0.0


async def test_block_list_is_configurable(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(1.0), block_patterns=(r"(?i)\bclowns?\b",))
    async with emu.client() as client:
        clown = await submit(client, prompt="Two clowns")
        other = await submit(client, prompt="blocked nsfw words are fine now")
        await anyio.sleep(1)
        states = [
            (await client.get(f"/v2/requests/{rid}/status")).json()["status"]
            for rid in (clown, other)
        ]
    assert states == ["FAILED", "COMPLETED"]


async def test_credits_are_reserved_refused_and_charged(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(10.0), credits=0.05)
    async with emu.client() as client:
        await submit(client)
        await submit(client)
        refused = await client.post(SUBMIT, json={"prompt": "a third", **SMALL})
        before = (await client.get("/v1/get-user-credits")).json()
        await anyio.sleep(10)
        after = (await client.get("/v1/get-user-credits")).json()
        costly = await client.post(SUBMIT, json={"prompt": "x", "mode": "quality", **SMALL})
    assert refused.status_code == 406
    assert refused.json() == {
        "error": "Insufficient credits: balance $0.0100 is below the cost $0.0200 of this request"
    }
    # Reserved amounts are not yet charged: the balance moves on completion.
    assert before["credits"] == pytest.approx(0.05)
    assert after["credits"] == pytest.approx(0.01)
    assert costly.status_code == 406
    assert "$0.0500" in costly.json()["error"]
    assert len(emu.emulator.accepted_submits()) == 2
    assert emu.emulator.charged_total() == pytest.approx(0.04)


async def test_credit_accounts_are_per_key_and_settable(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(1.0), credits=5.0)
    emu.emulator.set_balance("poor", 0.0)
    async with emu.client(api_key="rich") as rich, emu.client(api_key="poor") as poor:
        ok = await rich.post(SUBMIT, json={"prompt": "x"})
        refused = await poor.post(SUBMIT, json={"prompt": "x"})
        await anyio.sleep(1)
        rich_credits = (await rich.get("/v1/get-user-credits")).json()["credits"]
    assert ok.status_code == 200
    assert refused.status_code == 406
    assert rich_credits == pytest.approx(4.98)
    assert emu.emulator.balance("poor") == 0.0


async def test_unlimited_credits_never_refuse(make_emulator: Make) -> None:
    emu = make_emulator(credits=0.0, unlimited_credits=True)
    async with emu.client() as client:
        answer = await client.post(SUBMIT, json={"prompt": "x"})
    assert answer.status_code == 200


async def test_price_table_is_configurable(make_emulator: Make) -> None:
    prices = {"standard": {"1k": 0.5, "2k": 1.0}, "quality": {"1k": 2.0, "2k": 3.0}}
    emu = make_emulator(latency=fixed(1.0), prices=prices, credits=10.0)
    async with emu.client() as client:
        rid = await submit(client, n=2)
        await anyio.sleep(1)
        metrics = (await client.get(f"/v2/requests/{rid}")).json()["metrics"]
    assert metrics["cost"] == pytest.approx(1.0)
    assert metrics["remaining_credits"] == pytest.approx(9.0)


async def test_api_key_is_checked_when_configured(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(1.0), api_keys=frozenset({"good-key"}))
    async with emu.client() as anonymous, emu.client(api_key="bad-key") as bad:
        missing = await anonymous.post(SUBMIT, json={"prompt": "x"})
        wrong = await bad.get("/v1/get-user-credits")
    async with emu.client(api_key="good-key") as good:
        rid = await submit(good)
        await anyio.sleep(1)
        url = (await good.get(f"/v2/requests/{rid}")).json()["output"]
    async with emu.client() as anonymous:
        media = await anonymous.get(url)  # media need no key, like a CDN
    assert missing.status_code == wrong.status_code == 401
    assert missing.json() == {"error": "Invalid API key"}
    assert media.status_code == 200
    logged = {c.key_hash for c in emu.emulator.calls()}
    assert logged == {"-", hash_key("bad-key"), hash_key("good-key")}
    assert not any("good-key" in repr(c) or "bad-key" in repr(c) for c in emu.emulator.calls())


async def test_sync_returns_image_bytes_and_accounting_headers(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(4.0), credits=2.0)
    async with emu.client() as client:
        started = anyio.current_time()
        answer = await client.post(
            SYNC, json={"prompt": "a red fox", "output_format": "webp", **SMALL}
        )
        waited = anyio.current_time() - started
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/webp"
    assert waited == pytest.approx(4.0)
    assert float(answer.headers["x-cost"]) == pytest.approx(0.02)
    assert float(answer.headers["x-remaining-credits"]) == pytest.approx(1.98)
    assert float(answer.headers["x-generation-time"]) == pytest.approx(4.0)
    assert int(answer.headers["x-seed-value"]) >= 0
    (entry,) = emu.emulator.accepted_submits("v1")
    assert answer.headers["x-request-id"] == entry.request_id
    assert entry.charged == pytest.approx(0.02)
    with Image.open(io.BytesIO(answer.content)) as image:
        assert (image.format, image.size) == ("WEBP", (1024, 1024))


async def test_sync_blocked_prompt_is_422(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(1.0))
    async with emu.client() as client:
        answer = await client.post(SYNC, json={"prompt": "blocked"})
    assert answer.status_code == 422
    assert answer.json()["error"].startswith("Content moderated")


async def test_request_log_and_pacing_helpers(make_emulator: Make) -> None:
    emu = make_emulator(latency=fixed(1.0))
    async with emu.client() as client:
        for _ in range(3):
            await submit(client)
        await anyio.sleep(30)
        await submit(client)
        await anyio.sleep(30)
        await submit(client)
        await client.get("/v1/get-user-credits")
    state = emu.emulator
    calls = state.calls("submit")
    assert [c.status for c in calls] == [200] * 5
    assert [c.time for c in calls] == [0.0, 0.0, 0.0, 30.0, 60.0]
    assert calls[0].utc == 1_800_000_000.0
    assert calls[0].path == SUBMIT
    assert state.max_in_window(60.0) == 4  # 60 s apart fall in different windows
    assert state.max_in_window(60.000001) == 5
    assert state.max_in_window(1.0) == 3
    assert len(state.calls(("submit", "credits"))) == 6
    assert {j.state for j in state.accepted_submits()} == {"COMPLETED", "PROCESSING"}
