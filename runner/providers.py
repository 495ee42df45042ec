"""The hosts that serve the model, as data: what each can do and where its key lives.

One table, read by the manifest (load-time limits: images per request,
endpoints), by runner.backends.select (key and base-URL variables, default
roots) and by the emulator. Code varies by provider only by reading a
`Provider`, never by testing its name (STYLE.md point 12); the backends that
speak each wire protocol live in runner.backends.

Facts and their sources are in /work/shared/api/segmind-wire.md and
docs/xai-wire.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from runner.jobs import Endpoint
from runner.params import N_MAX

ProviderName = Literal["segmind", "xai"]
DEFAULT_PROVIDER: Final[ProviderName] = "segmind"

# The embedded emulator (of either provider) runs ten times faster than the
# host: a "10 s" job takes 1 s and a rate window 6 s, so a demo run shows real
# pacing without the wait. Here, not in runner.run, so that `runner plan` can
# say so without loading the run's stack.
LOCAL_TIME_SCALE: Final = 0.1


@dataclass(frozen=True, slots=True)
class Provider:
    """One host of the model.

    `n_max` is the most images one request may ask for; `max_input_images`
    the most source images of one edit; `bills_input_images` whether an
    edit's source images are billed like output images; `endpoints` the call shapes it has
    (``v2``: submit and poll; ``v1``: one blocking call), the first being
    the default. `key_env` / `base_url_env` name the environment variables
    of its key and API root; `console` is where a user gets a key.
    """

    name: ProviderName
    title: str
    default_base_url: str
    key_env: str
    base_url_env: str
    n_max: int
    max_input_images: int
    endpoints: tuple[Endpoint, ...]
    console: str
    bills_input_images: bool = False

    def billed_images(self, n: int, sources: int) -> int:
        """The images a request of `n` outputs and `sources` source images is billed for."""
        return n + (sources if self.bills_input_images else 0)

    @property
    def default_endpoint(self) -> Endpoint:
        """The call shape used when the manifest names none."""
        return self.endpoints[0]


SEGMIND: Final = Provider(
    name="segmind",
    title="Segmind",
    default_base_url="https://api.segmind.com",
    key_env="SEGMIND_API_KEY",
    base_url_env="SEGMIND_BASE_URL",
    n_max=N_MAX,
    max_input_images=1,
    endpoints=("v2", "v1"),
    console="the Segmind console",
)
XAI: Final = Provider(
    name="xai",
    title="xAI",
    default_base_url="https://api.x.ai",
    key_env="XAI_API_KEY",
    base_url_env="XAI_BASE_URL",
    n_max=10,
    max_input_images=3,
    endpoints=("v1",),  # synchronous only: the answer carries the images
    console="console.x.ai",
    bills_input_images=True,  # "edits are billed for the input and the output image"
)

PROVIDERS: Final[Mapping[str, Provider]] = MappingProxyType({p.name: p for p in (SEGMIND, XAI)})
PROVIDER_NAMES: Final[tuple[str, ...]] = tuple(PROVIDERS)
N_LIMIT: Final = max(p.n_max for p in PROVIDERS.values())
"""The most images per request any provider allows (the JSON Schema's bound)."""
MAX_INPUT_IMAGES: Final[int] = max(p.max_input_images for p in PROVIDERS.values())
"""The most source images of one edit any provider allows (the JSON Schema's bound)."""


def provider(name: str) -> Provider:
    """The provider called `name`. Raises KeyError for an unknown one (callers word the error)."""
    return PROVIDERS[name]
