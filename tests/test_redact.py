"""Secrets never reach a message, a log line, a recorded command line or a sidecar."""

from __future__ import annotations

import pytest

from runner.backends import wire
from runner.redact import (
    MASK,
    SECRET_HEADERS,
    holds_secret,
    mask_key,
    redact_argv,
    redact_headers,
    redact_url,
    redact_urls,
    safe_url,
)

SECRET = "s3cr3t-pass"
KEY = "sk-test-0123456789abcdef"


def test_a_password_never_survives_redaction() -> None:
    url = f"redis://worker:{SECRET}@redis.internal:6380/2"
    shown = redact_url(url)
    assert SECRET not in shown
    assert shown == "redis://worker:***@redis.internal:6380/2"
    assert redact_url(f"rediss://:{SECRET}@[::1]:6379/0") == "rediss://:***@[::1]:6379/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_passwords_in_free_text_are_masked() -> None:
    assert redact_urls(f"note: rediss://u:{SECRET}@h/0 and redis://h/1") == (
        "note: rediss://u:***@h/0 and redis://h/1"
    )


def test_the_recorded_command_line_holds_no_password_and_no_key() -> None:
    argv = ["run", "m.yaml", "--coordinator", f"redis://:{SECRET}@h:1/0"]
    argv += [f"--coordinator=rediss://user:{SECRET}@h:2/0", f"--note={KEY}"]
    safe = redact_argv(argv, KEY)
    assert not [a for a in safe if SECRET in a or KEY in a]
    assert safe[3] == "redis://:***@h:1/0"
    assert safe[-1] == f"--note={MASK}"
    assert redact_argv(["run", "m.yaml"], None) == ["run", "m.yaml"]


def test_the_key_is_masked_wherever_it_is_echoed() -> None:
    assert mask_key(f"bad key {KEY}; again {KEY}", KEY) == "bad key ***; again ***"
    assert mask_key("nothing to hide", None) == "nothing to hide"
    assert mask_key("nothing to hide", "") == "nothing to hide"


def test_a_secret_in_text_is_found_and_empty_secrets_are_ignored() -> None:
    assert holds_secret(f'{{"prompt": "{KEY}"}}', ["", KEY])
    assert not holds_secret('{"prompt": "a cat"}', ["", KEY])
    assert not holds_secret("anything", [""])


@pytest.mark.parametrize("name", [wire.KEY_HEADER, "Authorization", "COOKIE", "Set-Cookie"])
def test_credential_headers_are_never_logged(name: str) -> None:
    line = redact_headers([("accept", "application/json"), (name, KEY)])
    assert KEY not in line
    assert line == f"accept=application/json, {name}=<redacted>"
    assert name.lower() in SECRET_HEADERS


def test_a_shown_url_has_no_credentials_and_no_query() -> None:
    url = f"https://user:{SECRET}@cdn.example:8443/img/a.png?token={KEY}#frag"
    assert safe_url(url) == "https://cdn.example:8443/img/a.png"
    assert safe_url("https://[::1]/x?sig=1") == "https://[::1]/x"
    assert safe_url("http://[bad") == "<invalid URL>"
