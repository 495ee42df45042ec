"""The emulator served on loopback: the vendor's own SDK, faults on real sockets, the command.

Real clock here, with time_scale 0.001 unless a test needs otherwise, so a
"10 s" job takes 10 ms.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import segmind
from PIL import Image

from runner.emulator import InProcess, Latency, Served
from runner.emulator.server import add_arguments, config_from_args, serve_in_thread

MODEL = "grok-imagine-image"
KEY = "sk-emulator-test-key"
Serve = Callable[..., Served]


@pytest.fixture
def keyed(serve_emulator: Serve) -> Served:
    return serve_emulator(api_keys=frozenset({KEY}))


@pytest.fixture
def sdk(keyed: Served) -> Iterator[segmind.SegmindClient]:
    client = segmind.SegmindClient(api_key=KEY, base_url=f"{keyed.base_url}/v1")
    yield client
    client._client.close()


def test_sdk_run_returns_completed_with_a_downloadable_png(serve_emulator: Serve) -> None:
    # Zero latency: the SDK's first status poll sees COMPLETED (its own poll
    # interval is a fixed 1 s that `run` does not let us change).
    served = serve_emulator(api_keys=frozenset({KEY}), latency=Latency("fixed", 0.0))
    client = segmind.SegmindClient(api_key=KEY, base_url=f"{served.base_url}/v1")
    result = client.run(
        MODEL, prompt="a red fox", resolution="1k", aspect_ratio="1:1", output_format="png"
    )
    assert result["status"] == "COMPLETED"
    assert result["output"].startswith(f"{served.base_url}/media/")
    download = httpx.get(result["output"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(download.content)) as image:
        assert (image.format, image.size) == ("PNG", (1024, 1024))
    sent = [c for c in served.emulator.calls() if c.kind != "media"]
    assert {c.key_hash for c in sent} != {"-"}


def test_sdk_submit_async_and_wait(sdk: segmind.SegmindClient, keyed: Served) -> None:
    job = sdk.submit_async(MODEL, prompt="a blue whale", n=2, resolution="1k", output_format="webp")
    assert job.request_id
    result = job.wait(timeout=30, interval=0.005)
    assert result["status"] == "COMPLETED"
    assert len(result["output"]) == 2
    assert result["metrics"]["cost"] == pytest.approx(0.04)
    with Image.open(io.BytesIO(httpx.get(result["output"][1]).content)) as image:
        assert (image.format, image.size) == ("WEBP", (1408, 768))
    assert [j.request_id for j in keyed.emulator.accepted_submits("v2")] == [job.request_id]


def test_sdk_run_sync_returns_image_bytes(sdk: segmind.SegmindClient) -> None:
    response = sdk.run_sync(MODEL, prompt="a red fox", resolution="1k", output_format="jpeg")
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["x-request-id"]
    with Image.open(io.BytesIO(response.content)) as image:
        assert (image.format, image.size) == ("JPEG", (1408, 768))


def test_sdk_blocked_prompt_raises_inference_failed(sdk: segmind.SegmindClient) -> None:
    job = sdk.submit_async(MODEL, prompt="something blocked", resolution="1k")
    with pytest.raises(segmind.InferenceFailed) as caught:
        job.wait(timeout=30, interval=0.005)
    assert caught.value.detail is not None
    assert caught.value.detail.startswith("Content moderated")
    assert caught.value.status_body["status"] == "FAILED"


def test_sdk_unknown_id_is_404(sdk: segmind.SegmindClient, keyed: Served) -> None:
    rid = "00000000-0000-4000-8000-000000000000"
    job = segmind.AsyncJob(
        request_id=rid,
        status_url=f"{keyed.base_url}/v2/requests/{rid}/status",
        response_url=f"{keyed.base_url}/v2/requests/{rid}",
        submit_response={},
        _client=sdk,
    )
    with pytest.raises(segmind.SegmindError) as caught:
        job.status()
    assert caught.value.status == 404
    assert caught.value.detail == f"Request {rid} not found"


def test_sdk_sees_401_and_406(serve_emulator: Serve) -> None:
    served = serve_emulator(api_keys=frozenset({KEY}), credits=0.01)
    wrong = segmind.SegmindClient(api_key="sk-wrong", base_url=f"{served.base_url}/v1")
    with pytest.raises(segmind.SegmindError) as unauthorized:
        wrong.submit_async(MODEL, prompt="x")
    right = segmind.SegmindClient(api_key=KEY, base_url=f"{served.base_url}/v1")
    with pytest.raises(segmind.SegmindError) as poor:
        right.submit_async(MODEL, prompt="x")
    assert (unauthorized.value.status, unauthorized.value.detail) == (401, "Invalid API key")
    assert poor.value.status == 406
    assert "balance $0.0100 is below the cost $0.0200" in (poor.value.detail or "")
    assert "sk-wrong" not in str(unauthorized.value) and KEY not in str(poor.value)


# Over a real socket the kernel may report a dropped connection as a reset.
DROPPED = (httpx.RemoteProtocolError, httpx.ReadError)


def test_drops_and_damaged_media_over_the_network(serve_emulator: Serve) -> None:
    served = serve_emulator(latency=Latency("fixed", 0.0))
    faults = served.emulator.faults
    with httpx.Client(base_url=served.base_url) as client:
        faults.script("submit", "drop_after")
        with pytest.raises(DROPPED):
            client.post(f"/v2/{MODEL}", json={"prompt": "a red fox", "resolution": "1k"})
        (lost,) = served.emulator.accepted_submits()
        faults.script("status", "drop_before")
        with pytest.raises(DROPPED):
            client.get(f"/v2/requests/{lost.request_id}/status")
        result = client.get(f"/v2/requests/{lost.request_id}").json()
        clean = client.get(result["output"]).content
        faults.script("media", "truncate")
        with pytest.raises(DROPPED):
            client.get(result["output"])
        faults.script("media", "cut")
        cut = client.get(result["output"])
        faults.script("media", "slow_body")
        slow = client.get(result["output"])
        after = client.get("/v1/get-user-credits")
    assert result["status"] == "COMPLETED"
    assert len(cut.content) < len(clean)
    assert slow.content == clean
    assert after.status_code == 200  # the server survived every drop
    dropped = [c.fault for c in served.emulator.calls() if c.status is None]
    assert dropped == ["drop_after", "drop_before", "truncate"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_same_httpx_errors_in_process_and_on_loopback(served_emulator: Served) -> None:
    in_process = InProcess.create()
    errors = []
    for client, emu in (
        (in_process.client(), in_process.emulator),
        (httpx.AsyncClient(base_url=served_emulator.base_url), served_emulator.emulator),
    ):
        async with client:
            for fault in ("drop_before", "drop_after"):
                emu.faults.script("submit", fault)
                with pytest.raises(httpx.HTTPError) as caught:
                    await client.post(f"/v2/{MODEL}", json={"prompt": "x"})
                errors.append(type(caught.value))
    # In-process a drop is always a protocol error; over a real socket the
    # kernel may report the closed connection as a reset (ReadError) instead.
    # Both are "the answer was lost" to the runner (TransportError, sent=True).
    assert errors[:2] == [httpx.RemoteProtocolError] * 2
    assert all(e in (httpx.RemoteProtocolError, httpx.ReadError) for e in errors[2:])


def test_rate_limit_over_loopback(serve_emulator: Serve) -> None:
    # time_scale 1 and a sliding window: three calls within 60 s, whatever the minute.
    served = serve_emulator(rpm=2, limiter="sliding", time_scale=1.0, retry_after_header=True)
    with httpx.Client(base_url=served.base_url) as client:
        answers = [client.post(f"/v2/{MODEL}", json={"prompt": "x"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["x-rate-limit-reset-at-utc"].endswith("Z")
    assert 59 <= int(answers[2].headers["retry-after"]) <= 60
    assert served.emulator.max_in_window(60.0) == 3


def test_busy_port_is_an_os_error(served_emulator: Served) -> None:
    port = int(served_emulator.base_url.rsplit(":", 1)[1])
    with pytest.raises(OSError), serve_in_thread(port=port):
        pass


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_options_map_onto_the_config() -> None:
    args = parse(
        "--latency", "uniform:1,2", "--workers", "8", "--time-scale", "0.1", "--rpm", "5",
        "--limiter", "bucket", "--rate-scope", "all", "--fault", "media:cut=0.2",
        "--size", "1:1@1k=64x64", "--block", "clown", "--unlimited-credits", "--retry-after",
    )  # fmt: skip
    config = config_from_args(args, environ={"RUNNER_EMULATOR_KEY": "sk-env"})
    assert config.latency == Latency("uniform", 1.0, 2.0)
    assert (config.workers, config.time_scale, config.rpm) == (8, 0.1, 5)
    assert (config.limiter, config.rate_scope) == ("bucket", "all")
    assert config.faults[0].fault == "cut"
    assert config.sizes == {("1:1", "1k"): (64, 64)}
    assert config.block_patterns == ("clown",)
    assert config.unlimited_credits and config.retry_after_header
    assert config.api_keys == frozenset({"sk-env"})
    assert config_from_args(parse(), environ={}).api_keys is None


COMMAND = (
    "import argparse, sys\n"
    "from runner.emulator.server import add_arguments, main_from_args\n"
    "parser = argparse.ArgumentParser()\n"
    "add_arguments(parser)\n"
    "sys.exit(main_from_args(parser.parse_args(sys.argv[1:])))\n"
)


def test_command_prints_its_url_serves_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    settings = tmp_path / "emulator.yaml"
    settings.write_text("credits: 7.5\nlatency: fixed:0\n", encoding="utf-8")
    env = {**os.environ, "RUNNER_EMULATOR_KEY": "sk-cli"}
    process = subprocess.Popen(
        [sys.executable, "-c", COMMAND, "--port", "0", "--config", str(settings)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        denied = httpx.get(f"{base_url}/v1/get-user-credits")
        credits = httpx.get(f"{base_url}/v1/get-user-credits", headers={"x-api-key": "sk-cli"})
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    assert denied.status_code == 401
    assert credits.json() == {"credits": 7.5, "free-credits": 0.0}
    assert code == 0


def test_command_refuses_bad_settings_with_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-c", COMMAND, "--port", "0", "--latency", "soon"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "runner emulator: latency 'soon'" in done.stderr
    assert "Traceback" not in done.stderr
