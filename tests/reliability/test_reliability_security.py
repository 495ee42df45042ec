"""Security: the key leaks nowhere, URLs into private networks are refused, names stay in
OUT, bombs and object tags are refused, and --debug shows calls without secrets.

The URL guard (runner.backends.guard) is checked three ways: its decisions
(literal addresses, names through a resolver), the backend's use of it (each
redirect hop, the address a download really connected to, input URLs), and
a whole run against a server reached at a LAN address, which is "remote".
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_hostile import (
    KEY,
    SCALE,
    Exchange,
    Hostile,
    ServedHostile,
    hostile_manifest,
    run_hostile,
    serve_hostile,
)
from reliability_soak import files_under

from runner.backends.base import Media
from runner.backends.guard import RefusedUrl, UrlGuard, guard_for, is_loopback_host, why_refused
from runner.backends.segmind import SegmindBackend
from runner.backends.select import BackendChoice, open_backend
from runner.emulator import Emulator, EmulatorConfig, EmulatorTransport
from runner.errors import DownloadError, UsageError
from runner.jobs import ImageInput, Request
from runner.manifest import parse_manifest
from runner.run import RunOptions, run_manifest
from runner.store import Ledger

RUNNER = Path(sys.executable).with_name("runner")
SECRET = "sk-test-SECRET-12345"
QUERY_SECRET = "QUERYSECRET987"
REMOTE = "https://api.segmind.example"


# -- the guard's decisions ----------------------------------------------------------

REFUSED = {
    "127.0.0.1": "loopback",
    "127.3.2.1": "loopback",
    "::1": "loopback",
    "0.0.0.0": "unspecified",  # noqa: S104 -- an address to refuse, not to bind
    "10.1.2.3": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "fe80::1": "link-local",
    "fd12:3456::1": "unique-local",
    "100.64.0.1": "not a public address",
    "224.0.0.251": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "reserved",
    "::ffff:127.0.0.1": "IPv4-mapped",
    "::ffff:8.8.8.8": "IPv4-mapped",
    "64:ff9b::a9fe:a9fe": "NAT64",
    "2002:a00:1::": "6to4",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo",
    "192.0.2.10": "private",
}


@pytest.mark.parametrize(("address", "reason"), sorted(REFUSED.items()))
def test_refused_addresses(address: str, reason: str) -> None:
    found = why_refused(ipaddress.ip_address(address))
    assert found is not None and reason in found


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert why_refused(ipaddress.ip_address(address)) is None


def resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    """A stand-in for DNS: names to addresses, OSError for the rest."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(-2, "Name or service not known")
        return table[host]

    return resolve


@pytest.mark.anyio
async def test_guard_checks_names_literals_and_every_address() -> None:
    guard = UrlGuard(
        resolver=resolver(
            {
                "cdn.example": ["93.184.216.34"],
                "inside.example": ["10.0.0.7"],
                "mixed.example": ["93.184.216.34", "192.168.0.9"],
                "v6.example": ["2606:4700::1", "::ffff:10.0.0.1"],
            }
        ),
        trusted_hosts=["api.segmind.example"],
    )
    await guard.check("https://cdn.example/a.png?sig=x")
    await guard.check("https://api.segmind.example/media/1/0.png")  # the API's own host
    for url, why in [
        ("http://127.0.0.1:8080/a.png", "loopback"),
        ("http://localhost/a.png", "loopback"),
        ("http://Foo.LOCALHOST./a.png", "loopback"),
        ("http://[::1]/a.png", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://inside.example/a.png", "resolves to 10.0.0.7, private"),
        ("http://mixed.example/a.png", "192.168.0.9, private"),
        ("http://v6.example/a.png", "IPv4-mapped"),
        ("http://[::ffff:7f00:1]/a.png", "loopback"),
    ]:
        with pytest.raises(RefusedUrl) as caught:
            await guard.check(url)
        assert why in str(caught.value)
        assert "?" not in str(caught.value)
    with pytest.raises(RefusedUrl) as caught:
        await guard.check("http://unknown.example/a.png")
    assert caught.value.retryable
    await guard.check("http://unknown.example/a.png", must_resolve=False)  # an input URL
    guard.check_peer("https://cdn.example/a.png", "93.184.216.34")
    with pytest.raises(RefusedUrl, match=r"connected to 127\.0\.0\.1, loopback"):
        guard.check_peer("https://cdn.example/a.png", "127.0.0.1")


@pytest.mark.anyio
async def test_the_system_resolver_is_used_by_default() -> None:
    guard = UrlGuard()
    for url in ("http://localhost:1/x", "http://127.1/x", "http://2130706433/x", "http://0x7f.1/x"):
        with pytest.raises(RefusedUrl, match="loopback"):
            await guard.check(url)


def test_only_a_remote_backend_is_guarded() -> None:
    for local in ("http://127.0.0.1:8765", "http://localhost:9", "http://[::1]:80"):
        assert guard_for(local) is None
        assert is_loopback_host(local.split("//")[1].rsplit(":", 1)[0])
    assert guard_for("https://api.segmind.com") is not None
    remote = open_backend(BackendChoice(kind="segmind", base_url=REMOTE, api_key="k"))
    loop = open_backend(BackendChoice(kind="segmind", base_url="http://127.0.0.1:1", api_key="k"))
    assert remote.url_guard is not None and loop.url_guard is None


# -- the backend with its guard, in-process ------------------------------------------


def _guarded(emu: Emulator, hostile: Hostile, table: dict[str, list[str]]) -> SegmindBackend:
    return SegmindBackend(
        REMOTE,
        KEY,
        transport=EmulatorTransport(hostile),
        media_transport=EmulatorTransport(hostile),
        url_guard=UrlGuard(trusted_hosts=["api.segmind.example"], resolver=resolver(table)),
    )


@pytest.mark.anyio
async def test_backend_refuses_media_into_private_networks_and_redirects_there() -> None:
    emu = Emulator(EmulatorConfig(seed=1, utc_offset=1_800_000_000.0))
    hostile = Hostile(emu, offload=False)

    async def to_metadata(ex: Exchange) -> None:
        await ex.answer(302, b"", {"location": "http://169.254.169.254/latest/meta-data/"})

    hostile.add("other", to_metadata, times=1, path="/hop")
    async with _guarded(emu, hostile, {"cdn.example": ["93.184.216.34"]}) as backend:
        for url, why in [
            ("http://127.0.0.1:9/x.png", "loopback"),
            ("http://10.9.8.7/x.png?token=abc", "private"),
            ("https://cdn.example/hop", "169.254.169.254 is link-local"),
        ]:
            with pytest.raises(DownloadError) as caught:
                await backend.download(Media(url=url), max_bytes=10_000)
            assert why in str(caught.value) and "token" not in str(caught.value)
            assert caught.value.retryable is False
        with pytest.raises(DownloadError) as caught:
            await backend.download(Media(url="https://nowhere.example/x.png"), max_bytes=10)
        assert caught.value.retryable is True
    # Only the public first hop was fetched; the metadata address never was.
    assert [c.path for c in hostile.calls()] == ["/hop"]


@pytest.mark.anyio
async def test_backend_refuses_an_input_url_into_a_private_network() -> None:
    emu = Emulator(EmulatorConfig(seed=1, utc_offset=1_800_000_000.0))
    hostile = Hostile(emu, offload=False)
    image = ImageInput("url", "http://192.168.1.20/cat.png", "0" * 64)
    request = Request("a cat", "standard", "1:1", "1k", 1, "png", image=image)
    async with _guarded(emu, hostile, {}) as backend:
        with pytest.raises(UsageError) as caught:
            await backend.submit("grok-imagine-image", request)
    assert "192.168.1.20 is private" in str(caught.value)
    assert "public URL" in str(caught.value)
    assert emu.accepted_submits() == []


def _rebinding_name() -> str | None:
    """A name this machine resolves to a non-public address (its own host name)."""
    name = socket.gethostname()
    try:
        found = ipaddress.ip_address(socket.gethostbyname(name))
    except (OSError, ValueError):
        return None
    return name if why_refused(found) else None


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_download_that_connects_to_a_private_address_is_refused() -> None:
    # DNS rebinding: the name looked public when checked, then led elsewhere.
    name = _rebinding_name()
    if name is None:
        pytest.skip("this machine's host name does not resolve to a private address")
    with serve_hostile(EmulatorConfig(time_scale=SCALE), host="0.0.0.0") as served:  # noqa: S104
        port = served.base_url.rsplit(":", 1)[1]
        guard = UrlGuard(resolver=resolver({name: ["93.184.216.34"]}))
        async with SegmindBackend(REMOTE, KEY, url_guard=guard) as backend:
            with pytest.raises(DownloadError, match=r"connected to .*(loopback|private)"):
                await backend.download(
                    Media(url=f"http://{name}:{port}/media/x/0.png"), max_bytes=1000
                )


# -- a whole run against a remote-looking API ----------------------------------------


def _lan_address() -> str | None:
    """An address of this machine that is not loopback (so a base URL on it is remote)."""
    for probe in ("192.0.2.1", "10.255.255.254", "172.31.255.254", "192.168.255.254"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.connect((probe, 9))  # no packet: it only picks a route
            except OSError:
                continue
            address = sock.getsockname()[0]
            if not ipaddress.ip_address(address).is_loopback:
                return str(address)
    return None


@pytest.fixture
def remote() -> Iterator[ServedHostile]:
    address = _lan_address()
    if address is None:
        pytest.skip("no non-loopback address to reach a local server as a remote one")
    config = EmulatorConfig(time_scale=SCALE, seed=5, workers=8)
    with serve_hostile(config, host="0.0.0.0", shown_host=address) as served:  # noqa: S104
        yield served


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_remote_run_refuses_result_urls_into_private_networks(
    remote: ServedHostile, tmp_path: Path
) -> None:
    port = remote.base_url.rsplit(":", 1)[1]

    async def to_loopback(ex: Exchange) -> None:
        status, _, body = await ex.inner()
        doc = json.loads(body)
        doc["output"] = doc["output"].replace(remote.base_url, f"http://127.0.0.1:{port}")
        doc["images"] = []
        await ex.answer_json(status, doc)

    remote.app.add("result", to_loopback, times=1)
    _, rows = await run_hostile(remote, tmp_path)
    # The job whose result came first was pointed at loopback; the other's media
    # comes from the API's own host, which is fine.
    assert sorted(row.state for row in rows.values()) == ["completed", "failed"]
    (failed,) = (row for row in rows.values() if row.state == "failed")
    assert "127.0.0.1 is this machine (loopback)" in (failed.reason or "")
    assert not [c for c in remote.app.calls("media") if "127.0.0.1" in c.path]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_remote_run_refuses_a_private_input_url_before_any_submit(
    remote: ServedHostile, tmp_path: Path
) -> None:
    manifest = hostile_manifest(tmp_path, ("fox",), image="http://10.1.2.3/cat.png")
    with pytest.raises(UsageError, match=r"10\.1\.2\.3 is private"):
        await run_hostile(remote, tmp_path, manifest)
    assert remote.app.emulator.accepted_submits() == []


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_loopback_emulator_is_not_guarded(tmp_path: Path) -> None:
    with serve_hostile(EmulatorConfig(time_scale=SCALE, seed=5)) as served:
        manifest = hostile_manifest(tmp_path, ("fox",), image="http://10.1.2.3/cat.png")
        _, rows = await run_hostile(served, tmp_path, manifest)
    assert rows["fox"].state == "completed"


# -- decompression bomb --------------------------------------------------------------


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG that declares `width` x `height` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_decompression_bomb_is_refused_unread(tmp_path: Path) -> None:
    async def bomb(ex: Exchange) -> None:
        await ex.answer(200, _png_bomb(100_000, 100_000), {"content-type": "image/png"})

    with serve_hostile(EmulatorConfig(time_scale=SCALE, seed=5)) as served:
        served.app.add("media", bomb, times=1)
        _, rows = await run_hostile(served, tmp_path, hostile_manifest(tmp_path, ("fox",)))
    reason = rows["fox"].reason or ""
    assert rows["fox"].state == "failed" and "decompression bomb" in reason
    assert not list((tmp_path / "out").glob("p/*.png"))


# -- names cannot escape OUT ---------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUNNER), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("prompt_part", "output_part", "said"),
    [
        ("id: ../evil", "", "prompts[0].id"),
        ("id: a/b", "", "prompts[0].id"),
        ("id: ok", 'pattern: "../{key8}-{i}"', "output.pattern"),
        ("id: ok", 'pattern: "/abs/{key8}-{i}"', "output.pattern"),
    ],
)
def test_manifest_names_cannot_escape_out(
    tmp_path: Path, prompt_part: str, output_part: str, said: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    manifest = work / "m.yaml"
    manifest.write_text(
        f"""name: escape
prompts:
  - {prompt_part}
    prompt: a fox
output:
  dir: out
  {output_part}
""",
        encoding="utf-8",
    )
    before = sorted(p.name for p in tmp_path.iterdir())
    done = _cli("run", str(manifest), "--backend", "local", "--no-progress")
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "m.yaml:" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert sorted(p.name for p in work.iterdir()) == ["m.yaml"]


@pytest.mark.anyio
async def test_hostile_var_values_are_folded_inside_out(
    tmp_path: Path, make_emulator: object
) -> None:
    text = f"""name: fold
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: jpeg}}
prompts:
  - id: p
    prompt: "a {{thing}}"
    vars: {{thing: ["../../../etc/passwd", "..", "C:\\\\Windows\\\\x", "/abs"]}}
output:
  dir: {tmp_path / "out"}
  pattern: "{{prompt_id}}/{{thing}}/{{thing}}-{{key8}}-{{i}}"
"""
    manifest = parse_manifest(text, path=str(tmp_path / "m.yaml"), base_dir=tmp_path)
    emu = make_emulator()  # type: ignore[operator]
    options = RunOptions(backend="local", out=tmp_path / "out", time_scale=1.0)
    report = await run_manifest(manifest, options, emulator=emu.emulator, env={})
    assert report.stats.completed == 4
    out = (tmp_path / "out").resolve()
    written = [p for p in files_under(tmp_path) if p.suffix in (".jpg", ".json")]
    images = [p for p in written if p.suffix == ".jpg"]
    assert len(images) == 4
    assert all(p.resolve().is_relative_to(out / "p") for p in images)
    assert not (tmp_path / "etc").exists()


@pytest.mark.anyio
async def test_a_symlink_out_of_out_is_refused(tmp_path: Path, make_emulator: object) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "p").symlink_to(outside, target_is_directory=True)
    text = f"""name: link
defaults: {{resolution: 1k, aspect_ratio: "1:1", output_format: jpeg}}
prompts:
  - id: p
    prompt: a fox
output: {{dir: {out}}}
"""
    manifest = parse_manifest(text, path=str(tmp_path / "m.yaml"), base_dir=tmp_path)
    emu = make_emulator()  # type: ignore[operator]
    options = RunOptions(backend="local", out=out, time_scale=1.0)
    with pytest.raises(UsageError, match="leads outside"):
        await run_manifest(manifest, options, emulator=emu.emulator, env={})
    assert list(outside.iterdir()) == []


# -- YAML object tags ----------------------------------------------------------------


@pytest.mark.parametrize(
    "tagged",
    [
        '!!python/object/apply:os.system ["touch {marker}"]',
        "!!python/name:os.system",
        '!!python/object/new:subprocess.Popen [["touch", "{marker}"]]',
    ],
)
def test_a_python_object_tag_fails_to_load(tmp_path: Path, tagged: str) -> None:
    marker = tmp_path / "pwned"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "name: tag\nprompts:\n  - id: p\n    prompt: " + tagged.format(marker=marker) + "\n",
        encoding="utf-8",
    )
    for command in ("validate", "plan"):
        done = _cli(command, str(manifest))
        assert done.returncode == 2, done.stdout + done.stderr
        assert "m.yaml:4" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()


# -- the key appears nowhere; --debug shows calls, not secrets --------------------------


@pytest.fixture
def echoing() -> Iterator[ServedHostile]:
    """An emulator that accepts only SECRET, behind answers that echo the key back."""
    config = EmulatorConfig(time_scale=SCALE, seed=9, api_keys=frozenset({SECRET}), workers=8)
    with serve_hostile(config) as served:
        app = served.app

        async def echo_500(ex: Exchange) -> None:
            await ex.answer_json(500, {"error": f"upstream refused key {SECRET} (x-api-key)"})

        async def echo_failed(ex: Exchange) -> None:
            await ex.answer_json(
                422, {"status": "FAILED", "error": f"moderated for key {SECRET}", "metrics": {}}
            )

        async def signed_urls(ex: Exchange) -> None:
            status, _, body = await ex.inner()
            doc = json.loads(body)
            if isinstance(doc.get("output"), str):
                doc["output"] += f"?sig={QUERY_SECRET}&key={SECRET}"
                doc["images"] = []
            await ex.answer_json(status, doc)

        app.add("status", echo_500, times=2)
        app.add("status", echo_failed, times=1, path="/")
        app.add("result", signed_urls, times=100)
        yield served


def _texts_of(out: Path) -> Iterator[tuple[str, bytes]]:
    for path in files_under(out):
        yield str(path), path.read_bytes()


def test_the_key_appears_nowhere(echoing: ServedHostile, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    manifest = work / "m.yaml"
    manifest.write_text(
        """name: secret
defaults: {resolution: 1k, aspect_ratio: "1:1", output_format: png}
prompts:
  - id: p
    prompt: "a picture of {thing}"
    vars: {thing: [a, b, c, d]}
  - id: bad
    prompt: "this is blocked content"
budget: {requests_per_minute: 50}
""",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    env = {"SEGMIND_API_KEY": SECRET}
    base = ["run", str(manifest), "--backend", "segmind", "--base-url", echoing.base_url]
    common = ["--out", str(out), "--time-scale", str(SCALE), "--yes"]
    outputs: list[str] = []
    runs = [
        [*base, *common, "--no-progress"],
        [*base, *common, "--json", "--retry-failed"],
        ["--debug", *base, *common, "--no-progress", "--retry-failed"],
        ["status", str(out)],
        ["--debug", "status", str(out), "--json"],
        ["verify", str(out)],
        ["gallery", str(out)],
    ]
    for index, args in enumerate(runs):
        done = _cli(*args, env=env)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode in (0, 1), done.stdout + done.stderr
        if index == 0:
            with Ledger.open_readonly(out) as ledger:
                reasons = [r.reason or "" for r in ledger.rows()]
            assert any("for key ***" in reason for reason in reasons)  # echoed, then masked
    # A refused key, with a traceback: the server echoes the key it was sent.
    bad_key = {"SEGMIND_API_KEY": SECRET[:-1] + "9"}
    for debug in ([], ["--debug"]):
        done = _cli(*debug, *base, "--out", str(tmp_path / "o2"), "--yes", env=bad_key)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode in (1, 2)
    assert "Traceback" in outputs[-1]  # --debug asked for it
    everything = "\n".join(outputs)
    assert "runner.http" in everything  # --debug logged the calls
    for secret in (SECRET, SECRET[:-1] + "9", QUERY_SECRET):
        assert secret not in everything
        for name, data in _texts_of(tmp_path):
            if name.endswith("m.yaml"):
                continue
            assert secret.encode() not in data, name


def test_debug_logs_each_call_with_headers_redacted(tmp_path: Path) -> None:
    config = EmulatorConfig(time_scale=SCALE, seed=2, api_keys=frozenset({SECRET}))
    with serve_hostile(config) as served:

        async def signed(ex: Exchange) -> None:
            status, _, body = await ex.inner()
            doc = json.loads(body)
            doc["output"] += f"?sig={QUERY_SECRET}"
            doc["images"] = []
            await ex.answer_json(status, doc)

        served.app.add("result", signed, times=10)
        manifest = tmp_path / "m.yaml"
        manifest.write_text(
            "name: dbg\ndefaults: {resolution: 1k}\nprompts:\n  - id: p\n    prompt: a fox\n",
            encoding="utf-8",
        )
        done = _cli(
            "--debug",
            "run",
            str(manifest),
            "--backend",
            "segmind",
            "--base-url",
            served.base_url,
            "--out",
            str(tmp_path / "out"),
            "--time-scale",
            str(SCALE),
            "--no-progress",
            env={"SEGMIND_API_KEY": SECRET},
        )
    assert done.returncode == 0, done.stderr
    log = done.stderr
    assert f"runner.http: POST {served.base_url}/v2/grok-imagine-image -> 200 in " in log
    assert "x-api-key=<redacted>" in log
    assert "/status -> 200" in log and "/media/" in log
    assert SECRET not in log and QUERY_SECRET not in log and "?sig" not in log
    assert "HTTP Request:" not in log  # httpx's own line stays quiet


@pytest.mark.anyio
async def test_httpx_request_lines_never_show_a_query(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    emu = Emulator(EmulatorConfig(seed=1, utc_offset=1_800_000_000.0))
    hostile = Hostile(emu, offload=False)

    async def ok(ex: Exchange) -> None:
        await ex.answer(404, b"{}", {"content-type": "application/json"})

    hostile.add("other", ok, times=1)
    backend = SegmindBackend(
        REMOTE,
        KEY,
        transport=EmulatorTransport(hostile),
        media_transport=EmulatorTransport(hostile),
    )
    with caplog.at_level(logging.INFO, logger="httpx"):
        async with backend:
            with pytest.raises(DownloadError):
                await backend.download(
                    Media(url=f"{REMOTE}/x.png?sig={QUERY_SECRET}"), max_bytes=100
                )
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines and all(QUERY_SECRET not in line and "?" not in line for line in lines)


@pytest.mark.anyio
async def test_error_texts_never_carry_the_key() -> None:
    emu = Emulator(EmulatorConfig(seed=1, utc_offset=1_800_000_000.0))
    hostile = Hostile(emu, offload=False)
    bodies = [
        (401, {"error": f"Invalid API key {SECRET}"}),
        (400, {"error": f"bad request from {SECRET}"}),
        (406, {"error": f"no credits for {SECRET}"}),
        (429, {"error": f"slow down {SECRET}"}),
        (500, {"detail": {"key": SECRET}}),
        (302, {"error": "moved"}),
    ]
    for status, doc in bodies:

        async def answer(ex: Exchange, status: int = status, doc: object = doc) -> None:
            headers = {"location": f"https://elsewhere.example/?k={SECRET}"}
            await ex.answer_json(status, doc, headers if status == 302 else None)

        hostile.add("submit", answer, times=1)
    request = Request("a fox", "standard", "1:1", "1k", 1, "png")
    async with SegmindBackend(REMOTE, SECRET, transport=EmulatorTransport(hostile)) as backend:
        for _ in bodies:
            with pytest.raises(Exception) as caught:
                await backend.submit("grok-imagine-image", request)
            text = f"{caught.value} {caught.value!r} {caught.value.args}"
            assert SECRET not in text
        assert SECRET not in repr(backend)
    choice = BackendChoice(kind="segmind", base_url=REMOTE, api_key=SECRET)
    assert SECRET not in repr(choice)
