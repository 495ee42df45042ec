"""The two providers as test parameters: what a test needs to know to run either one.

Read from runner.providers and the wire modules (never restated), so a test
parametrized with the `provider` fixture (tests/conftest.py) runs the same
scenario against Segmind's submit-and-poll routes and xAI's synchronous ones
on the same emulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from runner.backends.calls import KEY_HEADER as SEGMIND_KEY_HEADER
from runner.backends.xai_wire import AUTH_HEADER as XAI_KEY_HEADER
from runner.emulator.config import EndpointKind
from runner.providers import PROVIDERS, Provider

_KEY_HEADERS: Final = {"segmind": SEGMIND_KEY_HEADER, "xai": XAI_KEY_HEADER}


@dataclass(frozen=True, slots=True)
class ProviderCase:
    """One provider under test.

    `billed` is the emulator's endpoint kind of its billed call (``submit`` for
    Segmind's v2, ``sync`` for xAI's only call); `key_header` the (lower-case)
    header its key travels in, `other_header` the other provider's.
    """

    name: str
    provider: Provider

    @property
    def billed(self) -> EndpointKind:
        return "submit" if self.provider.default_endpoint == "v2" else "sync"

    @property
    def polls(self) -> bool:
        """Whether its jobs are polled (status calls) before their result."""
        return self.provider.default_endpoint == "v2"

    @property
    def key_header(self) -> str:
        return _KEY_HEADERS[self.name]

    @property
    def other_header(self) -> str:
        return next(h for name, h in _KEY_HEADERS.items() if name != self.name)

    @property
    def api_line(self) -> str:
        """The manifest line that picks this provider."""
        return f"api: {{provider: {self.name}}}"

    def env(self, key: str, base_url: str | None = None) -> dict[str, str]:
        """The environment of a run with `key` (and an API root) for this provider."""
        env = {self.provider.key_env: key}
        if base_url is not None:
            env[self.provider.base_url_env] = base_url
        return env


CASES: Final = tuple(ProviderCase(name, p) for name, p in PROVIDERS.items())
