"""Choosing the backend and its base URL from arguments, environment and manifest."""

from __future__ import annotations

import pytest
from backend_helpers import FAKE_KEY, make_request

from runner.backends.select import (
    AUTO_LOCAL_NOTICE,
    DEFAULT_BASE_URL,
    LOCAL_BASE_URL,
    BackendChoice,
    choose_backend,
    open_backend,
)
from runner.errors import UsageError

KEYED = {"SEGMIND_API_KEY": FAKE_KEY}


def test_auto_with_key_is_segmind() -> None:
    choice = choose_backend("auto", base_url_arg=None, manifest_base_url=None, env=KEYED)
    assert (choice.kind, choice.base_url, choice.notice) == ("segmind", DEFAULT_BASE_URL, None)
    assert choice.api_key == FAKE_KEY
    assert FAKE_KEY not in repr(choice)
    assert FAKE_KEY not in str(choice)


def test_auto_without_key_is_local_with_notice() -> None:
    for env in ({}, {"SEGMIND_API_KEY": "  "}):
        choice = choose_backend("auto", base_url_arg=None, manifest_base_url=None, env=env)
        assert choice == BackendChoice("local", LOCAL_BASE_URL, AUTO_LOCAL_NOTICE, "local")
        assert choice.api_key is None
    assert AUTO_LOCAL_NOTICE == (
        "SEGMIND_API_KEY is not set: running on the embedded emulator (no credits spent). "
        "Set it, or pass --backend segmind, to call Segmind."
    )


def test_local_ignores_key_and_says_so_for_base_url() -> None:
    choice = choose_backend("local", base_url_arg=None, manifest_base_url=None, env=KEYED)
    assert (choice.kind, choice.notice, choice.api_key) == ("local", None, None)
    told = choose_backend("auto", base_url_arg="http://x.test", manifest_base_url=None, env={})
    assert told.notice is not None
    assert told.notice.startswith(AUTO_LOCAL_NOTICE)
    assert "--base-url is ignored" in told.notice


def test_segmind_without_key_is_usage_error() -> None:
    with pytest.raises(UsageError, match="set SEGMIND_API_KEY"):
        choose_backend("segmind", base_url_arg=None, manifest_base_url=None, env={})


def test_unknown_choice() -> None:
    with pytest.raises(UsageError, match="use auto, segmind, xai or local"):
        choose_backend("remote", base_url_arg=None, manifest_base_url=None, env={})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arg", "env_url", "manifest", "expected", "source"),
    [
        ("https://a.test/v1", "https://b.test", "https://c.test", "https://a.test", "--base-url"),
        (None, "https://b.test/v2/", "https://c.test", "https://b.test", "SEGMIND_BASE_URL"),
        (None, None, "https://c.test/", "https://c.test", "manifest api.base_url"),
        (None, "", "https://c.test", "https://c.test", "manifest api.base_url"),
        (None, None, None, DEFAULT_BASE_URL, "default"),
    ],
)
def test_base_url_precedence(
    arg: str | None, env_url: str | None, manifest: str | None, expected: str, source: str
) -> None:
    env = dict(KEYED)
    if env_url is not None:
        env["SEGMIND_BASE_URL"] = env_url
    choice = choose_backend("segmind", base_url_arg=arg, manifest_base_url=manifest, env=env)
    assert (choice.base_url, choice.base_url_source) == (expected, source)


def test_bad_base_url_names_its_source() -> None:
    env = {**KEYED, "SEGMIND_BASE_URL": "api.segmind.com"}
    with pytest.raises(UsageError) as caught:
        choose_backend("auto", base_url_arg=None, manifest_base_url=None, env=env)
    assert str(caught.value).startswith("SEGMIND_BASE_URL: ")
    with pytest.raises(UsageError, match=r"^manifest api\.base_url: .*query"):
        choose_backend(
            "segmind", base_url_arg=None, manifest_base_url="https://x.test/?a=1", env=KEYED
        )


def test_key_with_stray_characters() -> None:
    env = {"SEGMIND_API_KEY": f"{FAKE_KEY}\nextra"}
    with pytest.raises(UsageError) as caught:
        choose_backend("auto", base_url_arg=None, manifest_base_url=None, env=env)
    assert "control characters" in str(caught.value)
    assert FAKE_KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://gw.example.com", True),
        ("http://127.0.0.1:8765", False),
        ("http://localhost:8765", False),
        ("http://[::1]:8765", False),
        ("https://gw.example.com", False),
    ],
)
def test_plain_http_notice(url: str, warned: bool) -> None:
    choice = choose_backend("segmind", base_url_arg=url, manifest_base_url=None, env=KEYED)
    assert (choice.notice is not None) is warned


@pytest.mark.anyio
async def test_open_backend() -> None:
    local = choose_backend("local", base_url_arg=None, manifest_base_url=None, env={})
    async with open_backend(local) as backend:
        assert (backend.name, backend.base_url) == ("local", LOCAL_BASE_URL)
        result = await backend.run_sync("grok-imagine-image", make_request())
        assert result.media[0].data is not None
    remote = choose_backend("segmind", base_url_arg=None, manifest_base_url=None, env=KEYED)
    async with open_backend(remote) as backend:
        assert (backend.name, backend.base_url) == ("segmind", DEFAULT_BASE_URL)
