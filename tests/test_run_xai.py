"""Whole runs with ``api.provider: xai`` through `run_manifest` on the embedded emulator.

Virtual clock (trio's MockClock via conftest). The emulator's prices differ
from the manifest's estimate, so a sidecar's charge can only have come from
the answer's ``usage.cost_in_usd_ticks``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from whole_runs import MERGE_HEAD, source_images

from runner.backends.select import LOCAL_BASE_URLS, choose_backend
from runner.emulator import Emulator, EmulatorConfig, Latency
from runner.errors import ManifestError
from runner.joblist import job_rows
from runner.manifest import parse_manifest
from runner.money import micros, to_usd
from runner.plan import make_plan
from runner.plan_compare import compare
from runner.run import RunOptions, run_manifest
from runner.store import Ledger
from runner.sweep import expand

pytestmark = pytest.mark.anyio

# The emulator charges this per image; the manifest estimates $0.02 / $0.05.
CHARGED = {"standard": 0.021, "quality": 0.063}
MANIFEST = """
name: xai-run
api: {provider: xai}
defaults: {resolution: 1k, aspect_ratio: "1:1", output_format: png, n: 2}
prompts:
  - id: fox
    prompt: "a {color} fox"
    vars: {color: [red, blue]}
sweep: {mode: [standard, quality]}
budget: {requests_per_minute: 60}
"""


def emulator(**over: Any) -> Emulator:
    settings: dict[str, Any] = {
        "latency": Latency("fixed", 5.0, 0.0),
        "prices": {mode: {"1k": p, "2k": p} for mode, p in CHARGED.items()},
        "utc_offset": 1_800_000_000.0,
    }
    settings.update(over)
    return Emulator(EmulatorConfig(**settings))


def sidecars(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("fox/*.json"))]


async def run(out: Path, emu: Emulator, **options: Any) -> Any:
    manifest = parse_manifest(MANIFEST, base_dir=out.parent)
    return await run_manifest(manifest, RunOptions(out=out, **options), env={}, emulator=emu)


def test_xai_manifest_jobs_are_synchronous_and_limits_follow_the_provider() -> None:
    manifest = parse_manifest(MANIFEST)
    assert (manifest.api.provider, manifest.api.endpoint) == ("xai", "v1")
    assert {job.endpoint for job in expand(manifest)} == {"v1"}
    eight = MANIFEST.replace("n: 2", "n: 8")
    assert parse_manifest(eight).prompts[0].base["n"] == 8  # xAI allows up to 10
    with pytest.raises(ManifestError, match=r"n must be 1 to 4.*xai allows up to 10"):
        parse_manifest(eight, provider="segmind")
    with pytest.raises(ManifestError, match="xAI has no v2 endpoint"):
        parse_manifest(MANIFEST.replace("{provider: xai}", "{provider: xai, endpoint: v2}"))
    # --provider xai on a Segmind manifest: its jobs become synchronous too.
    plain = MANIFEST.replace("api: {provider: xai}\n", "")
    assert parse_manifest(plain).api.endpoint == "v2"
    assert parse_manifest(plain, provider="xai").api.endpoint == "v1"


def test_auto_picks_each_providers_own_key() -> None:
    env = {"XAI_API_KEY": "xai-key-1"}
    local = choose_backend("auto", base_url_arg=None, manifest_base_url=None, env=env)
    assert local.kind == "local" and "XAI_API_KEY is set: pass --provider xai" in (
        local.notice or ""
    )
    remote = choose_backend(
        "auto", base_url_arg=None, manifest_base_url=None, env=env, provider="xai"
    )
    assert (remote.kind, remote.base_url, remote.api_key) == (
        "xai",
        "https://api.x.ai",
        "xai-key-1",
    )
    emulated = choose_backend(
        "auto", base_url_arg=None, manifest_base_url=None, env={}, provider="xai"
    )
    assert (emulated.kind, emulated.base_url) == ("local", LOCAL_BASE_URLS["xai"])


async def test_images_and_sidecars_carry_the_exact_charge(tmp_path: Path) -> None:
    emu = emulator()
    out = tmp_path / "out"
    report = await run(out, emu, backend="local")
    assert report.counts.get("completed") == 4
    assert report.stats.completed == 4
    calls = emu.calls()
    assert {c.path for c in calls} == {"/v1/images/generations"}  # no poll, no download
    docs = sidecars(out)
    assert len(docs) == 8
    for doc in docs:
        mode = doc["params"]["mode"]
        assert doc["credits"]["charged_usd"] == pytest.approx(CHARGED[mode] * 2, abs=1e-9)
        assert doc["credits"]["estimated_usd"] == pytest.approx(
            {"standard": 0.04, "quality": 0.1}[mode]
        )
        assert doc["file"]["format"] == "png"  # the emulator answered JPEG: converted here
        assert doc["file"]["converted_from"] == "jpeg"
        assert doc["backend"]["base_url"] == LOCAL_BASE_URLS["xai"]
    image = out / docs[0]["file"]["name"]
    assert image.read_bytes().startswith(b"\x89PNG")
    with Ledger.open_readonly(out) as ledger:
        charged = to_usd(sum(t.charged for t in ledger.totals().values()))
    assert charged == pytest.approx(emu.charged_total(), abs=1e-9)
    assert charged == pytest.approx(2 * 2 * sum(CHARGED.values()), abs=1e-9)


async def test_budget_stop_then_resume_pays_for_nothing_twice(tmp_path: Path) -> None:
    emu = emulator()
    out = tmp_path / "out"
    # Two standard jobs cost $0.08 estimated; the budget admits two jobs at most.
    first = await run(out, emu, backend="local", max_credits=0.10, max_in_flight=1)
    assert first.stop == "credits"
    done = first.counts.get("completed", 0)
    assert 1 <= done < 4
    assert emu.charged_total() <= 0.10 + 1e-9
    second = await run(out, emu, backend="local")
    assert second.counts.get("completed") == 4
    assert len(emu.accepted_submits()) == 4  # the resumed run skipped what was done
    assert len(sidecars(out)) == 8


async def test_a_lost_answer_counts_once_as_ambiguous(tmp_path: Path) -> None:
    emu = emulator()
    emu.faults.script("sync", "drop_after")
    out = tmp_path / "out"
    report = await run(out, emu, backend="local")
    assert report.stats.ambiguous == 1
    assert report.counts.get("completed") == 4
    # The lost call was billed by the server and paid again by its one retry.
    assert len(emu.accepted_submits()) == 5
    with Ledger.open_readonly(out) as ledger:
        assert ledger.possible_extra_spend() > 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # a loopback server: real time
async def test_the_key_is_sent_as_bearer_only_and_never_written(tmp_path: Path) -> None:
    from runner.emulator import serve_in_thread

    secret = "xai-SECRET-key-777"
    config = EmulatorConfig(time_scale=0.001, api_keys=frozenset({secret}))
    with serve_in_thread(config) as served:
        out = tmp_path / "out"
        manifest = parse_manifest(MANIFEST, base_dir=tmp_path)
        report = await run_manifest(
            manifest,
            RunOptions(out=out, time_scale=0.001),
            env={"XAI_API_KEY": secret, "XAI_BASE_URL": served.base_url},
        )
        calls = served.emulator.calls("sync")
    assert report.counts.get("completed") == 4
    assert calls and all(
        "authorization" in c.header_names and "x-api-key" not in c.header_names for c in calls
    )
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


async def test_a_format_xai_delivers_is_not_converted(tmp_path: Path) -> None:
    emu = emulator()
    out = tmp_path / "out"
    manifest = parse_manifest(
        MANIFEST.replace("output_format: png", "output_format: jpeg"), base_dir=tmp_path
    )
    report = await run_manifest(
        manifest, RunOptions(out=out, backend="local"), env={}, emulator=emu
    )
    assert report.counts.get("completed") == 4
    for doc in sidecars(out):
        assert (doc["file"]["format"], doc["file"]["converted_from"]) == ("jpeg", None)


# -- multi-image edits (issue 16, Deliver 1) ------------------------------------

MULTI = (
    MERGE_HEAD
    + """    images: [in/a.png, in/b.png, in/c.png]
  - id: one
    prompt: "a bench"
    image: in/a.png
"""
)


async def test_a_multi_image_edit_runs_on_xai_and_is_charged_for_its_sources(
    tmp_path: Path,
) -> None:
    sources = source_images(tmp_path)
    emu = emulator()
    out = tmp_path / "out"
    manifest = parse_manifest(MULTI, base_dir=tmp_path)
    report = await run_manifest(
        manifest, RunOptions(out=out, backend="local"), env={}, emulator=emu
    )
    assert report.counts.get("completed") == 2
    assert sorted(c.path for c in emu.calls("sync")) == [
        "/v1/images/edits",
        "/v1/images/generations",
    ]
    (merged,) = [json.loads(p.read_text()) for p in out.glob("merge/*.json")]
    (single,) = [json.loads(p.read_text()) for p in out.glob("one/*.json")]
    shas = [hashlib.sha256(data).hexdigest() for data in sources]
    request = merged["params"]
    assert request["image"]["sha256"] == shas[0]
    assert [ref["sha256"] for ref in request["more_images"]] == shas[1:]
    assert single["params"]["more_images"] == []
    # Billed for 1 output and 3 sources at $0.021, and 1 + 1 for the one-image edit.
    assert merged["credits"]["charged_usd"] == pytest.approx(4 * CHARGED["standard"], abs=1e-9)
    assert single["credits"]["charged_usd"] == pytest.approx(2 * CHARGED["standard"], abs=1e-9)
    # The estimate counts the sources too, at the table's $0.02 an image.
    assert merged["credits"]["estimated_usd"] == pytest.approx(4 * 0.02)
    assert single["credits"]["estimated_usd"] == pytest.approx(2 * 0.02)
    with Ledger.open_readonly(out) as ledger:
        charged = to_usd(sum(t.charged for t in ledger.totals().values()))
    assert charged == pytest.approx(emu.charged_total(), abs=1e-9)


def test_segmind_refuses_several_source_images_at_load_time(tmp_path: Path) -> None:
    source_images(tmp_path)
    with pytest.raises(ManifestError, match=r"3 source images .* Segmind takes at most 1") as err:
        parse_manifest(MULTI, base_dir=tmp_path, provider="segmind")
    assert "api.provider xai takes up to 3" in str(err.value)
    assert ":8:" in str(err.value)  # placed at the prompt's `images:` line
    four = MULTI.replace("in/c.png]", "in/c.png, in/a.png]")
    with pytest.raises(ManifestError, match=r"4 source images .* xAI takes at most 3"):
        parse_manifest(four, base_dir=tmp_path)
    both = MULTI.replace("    images: [", "    image: in/a.png\n    images: [")
    with pytest.raises(ManifestError, match="`image` and `images` are both set"):
        parse_manifest(both, base_dir=tmp_path)
    # A list of one image is the same job as `image:` (the same key, so resume agrees).
    listed = MULTI.replace("images: [in/a.png, in/b.png, in/c.png]", "images: [in/a.png]")
    written = MULTI.replace("images: [in/a.png, in/b.png, in/c.png]", "image: in/a.png")
    keys = [
        [job.key for job in expand(parse_manifest(text, base_dir=tmp_path))]
        for text in (listed, written)
    ]
    assert keys[0] == keys[1]
    three = [job.key for job in expand(parse_manifest(MULTI, base_dir=tmp_path))]
    assert three[0] != keys[0][0] and three[1] == keys[0][1]


def test_the_plan_counts_an_edits_sources_where_the_provider_bills_them(tmp_path: Path) -> None:
    source_images(tmp_path)
    xai = parse_manifest(MULTI, base_dir=tmp_path)
    plan = make_plan(xai, max_credits=0.1)
    assert plan.credits == micros((4 + 2) * 0.02)  # by arithmetic over the units
    assert [row.price_usd for row in job_rows(xai)] == pytest.approx([4 * 0.02, 2 * 0.02])
    assert plan.jobs_within_budget == 1  # the 3-source edit fits $0.10, both do not
    # Segmind bills outputs only (and takes one source): the one-image edit is $0.02.
    one = MULTI.replace("api: {provider: xai}", "api: {provider: segmind}")
    one = one.replace("images: [in/a.png, in/b.png, in/c.png]", "images: [in/b.png]")
    assert make_plan(parse_manifest(one, base_dir=tmp_path)).credits == micros(2 * 0.02)


def test_plan_compare_shows_segminds_refusal_of_a_multi_image_edit(tmp_path: Path) -> None:
    source_images(tmp_path)
    path = tmp_path / "merge.yaml"
    path.write_text(MULTI)
    segmind, xai = compare(path, ("segmind", "xai"))
    assert segmind.plan is None and segmind.problem is not None
    assert "Segmind takes at most 1" in segmind.problem
    assert xai.plan is not None and xai.plan.credits == micros((4 + 2) * 0.02)


async def test_a_prompts_file_line_may_be_a_multi_image_edit(tmp_path: Path) -> None:
    # The same two prompts as MULTI, from a prompts_from file: the same jobs and keys.
    source_images(tmp_path)
    lines = [
        {"id": "merge", "prompt": "<IMAGE_0> and <IMAGE_1> and <IMAGE_2> on a bench",
         "images": ["in/a.png", "in/b.png", "in/c.png"]},
        {"id": "one", "prompt": "a bench", "image": "in/a.png"},
    ]  # fmt: skip
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    head = MULTI.split("prompts:", maxsplit=1)[0]
    from_file = parse_manifest(head + "prompts_from: prompts.jsonl\n", base_dir=tmp_path)
    inline = parse_manifest(MULTI, base_dir=tmp_path)
    assert [j.key for j in expand(from_file)] == [j.key for j in expand(inline)]
    emu = emulator()
    out = tmp_path / "out"
    report = await run_manifest(
        from_file, RunOptions(out=out, backend="local"), env={}, emulator=emu
    )
    assert report.counts.get("completed") == 2
    (merged,) = [json.loads(p.read_text()) for p in out.glob("merge/*.json")]
    assert len(merged["params"]["more_images"]) == 2
    assert merged["credits"]["charged_usd"] == pytest.approx(4 * CHARGED["standard"], abs=1e-9)
    # Segmind takes one source image: refused at load time, at the file's line.
    segmind = head.replace("api: {provider: xai}", "api: {provider: segmind}")
    with pytest.raises(ManifestError, match=r"prompts.jsonl:1.*Segmind takes at most 1"):
        parse_manifest(segmind + "prompts_from: prompts.jsonl\n", base_dir=tmp_path)
    lines[1]["images"] = ["in/b.png"]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(ManifestError, match=r"prompts.jsonl:2.*`image` and `images` are both set"):
        parse_manifest(head + "prompts_from: prompts.jsonl\n", base_dir=tmp_path)
