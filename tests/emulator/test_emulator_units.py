"""The emulator's pure parts: config parsing, limiters, images, the clock-driven state."""

from __future__ import annotations

import base64
import io
import random
from typing import Any

import pytest
from PIL import Image

from runner import params
from runner.emulator import Emulator, EmulatorConfig, FaultRate, Latency, iso_utc
from runner.emulator.config import config_kwargs_from_file, parse_size
from runner.emulator.images import (
    MediaCache,
    encode,
    output_size,
    parse_image_param,
    render,
)
from runner.emulator.limits import FixedWindow, SlidingLog, TokenBucket
from runner.emulator.state import CreditsRefused, hash_key
from runner.emulator.validation import parse_job_params

# -- config -------------------------------------------------------------------------


def test_latency_parse_and_sample() -> None:
    rng = random.Random(0)
    assert Latency.parse("fixed:2.5").sample(rng) == 2.5
    assert Latency.parse("3") == Latency("fixed", 3.0, 0.0)
    uniform = Latency.parse("uniform:5,15")
    assert all(5 <= uniform.sample(rng) <= 15 for _ in range(100))
    lognormal = Latency.parse("lognormal:10,0.25")
    samples = sorted(lognormal.sample(rng) for _ in range(1001))
    assert 9.0 < samples[500] < 11.0  # the median
    for bad in ("fixed:a", "uniform:5", "gamma:1,2", "uniform:9,1"):
        with pytest.raises(ValueError, match="latency"):
            Latency.parse(bad)


def test_fault_and_size_parsing() -> None:
    assert FaultRate.parse("media:truncate=0.1") == FaultRate("media", "truncate", 0.1)
    assert parse_size("16:9@2k=2800x1500") == (("16:9", "2k"), (2800, 1500))
    for bad in ("submit:500", "nowhere:500=0.1", "submit:cut=0.1"):
        with pytest.raises(ValueError):
            FaultRate.parse(bad)
    with pytest.raises(ValueError, match="RATIO@RES=WxH"):
        parse_size("16:9@8k=1x1")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"workers": 0}, "workers"),
        ({"time_scale": 0.0}, "time_scale"),
        ({"rate_window": 0.0}, "rate_window"),
        ({"retention": -1.0}, "retention"),
        ({"rpm": 0}, "rpm"),
        ({"limiter": "leaky"}, "limiter"),
        ({"rate_scope": "some"}, "rate_scope"),
        ({"block_patterns": ("(",)}, "block_patterns"),
        ({"prices": {"standard": {"1k": 0.1}}}, "prices"),
        ({"sizes": {("5:4", "1k"): (1, 1)}}, "sizes"),
        ({"models": ()}, "models"),
    ],
)
def test_config_refuses_bad_values_naming_the_field(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        EmulatorConfig(**kwargs)


def test_config_file_maps_onto_the_config() -> None:
    data = {
        "latency": "fixed:2",
        "api_keys": ["a"],
        "faults": ["submit:500=0.5"],
        "sizes": {"1:1@1k": "64x64"},
        "rpm": 5,
        "limiter": "bucket",
    }
    config = EmulatorConfig(**config_kwargs_from_file("emu.yaml", data))
    assert config.latency == Latency("fixed", 2.0, 0.0)
    assert config.api_keys == frozenset({"a"})
    assert config.faults == (FaultRate("submit", "500", 0.5),)
    assert config.sizes == {("1:1", "1k"): (64, 64)}
    assert (config.rpm, config.limiter) == (5, "bucket")
    with pytest.raises(ValueError, match=r"emu\.yaml: rpmm: Extra inputs"):
        config_kwargs_from_file("emu.yaml", {"rpmm": 5})
    with pytest.raises(ValueError, match=r"emu\.yaml: latency"):
        config_kwargs_from_file("emu.yaml", {"latency": "soon"})


# -- limiters (UTC seconds) ------------------------------------------------------------


def test_fixed_window_resets_at_boundaries() -> None:
    limiter = FixedWindow(2, 60.0)
    assert [limiter.acquire(t) for t in (61.0, 62.0)] == [None, None]
    assert limiter.acquire(119.9) == 120.0
    assert limiter.acquire(120.0) is None


def test_sliding_log_never_exceeds_the_limit_in_any_window() -> None:
    limiter = SlidingLog(3, 10.0)
    admitted = [t / 2 for t in range(100) if limiter.acquire(t / 2) is None]
    for start in admitted:
        assert sum(1 for t in admitted if start <= t < start + 10.0) <= 3
    assert SlidingLog(1, 10.0).acquire(0.0) is None


def test_token_bucket_refills_smoothly() -> None:
    bucket = TokenBucket(6, 60.0, burst=2)  # one token per 10 s
    assert [bucket.acquire(0.0), bucket.acquire(0.0)] == [None, None]
    assert bucket.acquire(0.0) == pytest.approx(10.0)
    assert bucket.acquire(5.0) == pytest.approx(10.0)
    assert bucket.acquire(10.0) is None


def test_iso_utc_shows_milliseconds_only_when_needed() -> None:
    assert iso_utc(1_800_000_060.0) == "2027-01-15T08:01:00Z"
    assert iso_utc(1_800_000_000.25) == "2027-01-15T08:00:00.250Z"
    assert iso_utc(1_800_000_000.0001) == "2027-01-15T08:00:00.001Z"  # rounded up


# -- images ----------------------------------------------------------------------------

WIRE_TABLE = {
    "1:1": (1024, 1024),
    "4:3": (1280, 896),
    "3:2": (1296, 864),
    "16:9": (1408, 768),
    "2:1": (1408, 704),
    "20:9": (1280, 576),
    "19.5:9": (1248, 576),
}
PORTRAIT = {
    "3:4": "4:3",
    "2:3": "3:2",
    "9:16": "16:9",
    "1:2": "2:1",
    "9:20": "20:9",
    "9:19.5": "19.5:9",
}


def test_size_table_matches_the_wire_document() -> None:
    for ratio in params.ASPECT_RATIOS:
        for resolution, scale in (("1k", 1), ("2k", 2)):
            size = output_size(ratio, resolution, {})
            if ratio == "auto":
                expected = WIRE_TABLE["1:1"]
            elif ratio in PORTRAIT:
                expected = WIRE_TABLE[PORTRAIT[ratio]][::-1]
            else:
                expected = WIRE_TABLE[ratio]
            assert size == (expected[0] * scale, expected[1] * scale), (ratio, resolution)
    assert output_size("16:9", "2k", {("16:9", "2k"): (2000, 1000)}) == (2000, 1000)


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_render_is_deterministic_and_encodes(fmt: str, pil: str) -> None:
    def make(prompt: str, index: int = 0) -> bytes:
        image = render(
            prompt,
            mode="standard",
            aspect_ratio="3:2",
            resolution="1k",
            index=index,
            size=(324, 216),
        )
        return encode(image, fmt)

    data = make("a red fox")
    assert data == make("a red fox")
    assert data != make("a blue whale")
    assert data != make("a red fox", index=1)
    with Image.open(io.BytesIO(data)) as image:
        assert (image.format, image.size) == (pil, (324, 216))


def test_prompts_give_visibly_different_colours() -> None:
    def colours(prompt: str) -> set[object]:
        image = render(
            prompt, mode="standard", aspect_ratio="1:1", resolution="1k", index=0, size=(64, 64)
        )
        return {c for _, c in image.convert("RGB").getcolors(4096) or []}

    assert colours("a red fox") != colours("a blue whale")


def test_image_param_forms() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (7, 5)).save(buffer, "PNG")
    raw = base64.b64encode(buffer.getvalue()).decode()
    assert parse_image_param(raw).size == (7, 5)
    assert parse_image_param("data:image/png;base64," + raw).size == (7, 5)
    assert parse_image_param("https://x.test/a.png").url == "https://x.test/a.png"
    with pytest.raises(ValueError, match="data URI must be base64"):
        parse_image_param("data:image/png," + raw)


def test_media_cache_is_a_small_lru() -> None:
    cache = MediaCache(2)
    cache.put(("a", 0), b"1")
    cache.put(("b", 0), b"2")
    assert cache.get(("a", 0)) == b"1"
    cache.put(("c", 0), b"3")
    assert (cache.get(("a", 0)), cache.get(("b", 0)), cache.get(("c", 0))) == (b"1", None, b"3")


# -- state on an injected clock ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_workers_schedule_jobs_deterministically() -> None:
    clock = Clock()
    emu = Emulator(EmulatorConfig(workers=2, latency=Latency("fixed", 10.0)), clock=clock)
    job = parse_job_params({"prompt": "x"})
    views = [emu.accept("-", job, "v2", clock()) for _ in range(5)]
    assert [(v.started_at, v.finished_at) for v in views] == [
        (100.0, 110.0),
        (100.0, 110.0),
        (110.0, 120.0),
        (110.0, 120.0),
        (120.0, 130.0),
    ]
    clock.now = 115.0
    states = [emu.lookup(v.request_id, clock.now).state for v in views]  # type: ignore[union-attr]
    assert states == ["COMPLETED", "COMPLETED", "PROCESSING", "PROCESSING", "QUEUED"]
    assert emu.balance() == pytest.approx(1000.0 - 0.04)


def test_same_seed_same_latencies_and_never_the_same_ids() -> None:
    def run(seed: int) -> list[tuple[str, float]]:
        clock = Clock()
        emu = Emulator(EmulatorConfig(seed=seed), clock=clock)
        job = parse_job_params({"prompt": "x"})
        return [
            (v.request_id, v.finished_at)
            for v in (emu.accept("-", job, "v2", 0.0) for _ in range(3))
        ]

    first, again, other = run(1), run(1), run(2)
    assert [end for _, end in first] == [end for _, end in again]
    assert [end for _, end in first] != [end for _, end in other]
    # Two emulators with one seed (two runs' embedded ones, or shards') share no id.
    ids = [rid for rows in (first, again, other) for rid, _ in rows]
    assert len(set(ids)) == len(ids) == 9


def test_reservations_prevent_overspending() -> None:
    clock = Clock()
    emu = Emulator(EmulatorConfig(credits=0.03, latency=Latency("fixed", 5.0)), clock=clock)
    job = parse_job_params({"prompt": "x"})
    emu.accept(hash_key("k"), job, "v2", clock())
    with pytest.raises(CreditsRefused, match=r"balance \$0\.0100 is below the cost \$0\.0200"):
        emu.accept(hash_key("k"), job, "v2", clock())
    assert emu.accept(hash_key("other"), job, "v2", clock()).cost == pytest.approx(0.02)


def test_hash_key_never_shows_the_key() -> None:
    assert hash_key(None) == hash_key("") == "-"
    digest = hash_key("sk-secret-123")
    assert len(digest) == 12
    assert "secret" not in digest


def test_the_knobs_that_disagree_with_the_runner_read_from_a_file() -> None:
    data = {
        "reset_hint": "second",
        "queue_delay": "uniform:2,8",
        "report_queue_time": False,
        "backlog": 4,
    }
    config = EmulatorConfig(**config_kwargs_from_file("emu.yaml", data))
    assert config.reset_hint == "second"
    assert config.queue_delay == Latency("uniform", 2.0, 8.0)
    assert config.report_queue_time is False
    assert config.backlog == 4
    with pytest.raises(ValueError, match="reset_hint"):
        EmulatorConfig(reset_hint="late")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backlog"):
        EmulatorConfig(backlog=0)


def test_the_loopback_server_listens_with_the_configured_backlog() -> None:
    from runner.emulator.server import _uvicorn_config

    config = _uvicorn_config(Emulator(EmulatorConfig(backlog=3)), "warning", None)
    assert config.backlog == 3
