"""Which provider a manifest is for, and what that provider allows: load-time checks.

The provider is ``--provider`` (an override) or the manifest's
``api.provider`` (default ``segmind``). Its limits (runner.providers) reach
the schema's validators through pydantic's validation context, so a value
one provider cannot take (n = 8 on Segmind) is refused at its own
file:line:column with the allowed range, before any job is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from runner.errors import ManifestError, UsageError
from runner.jobs import Endpoint
from runner.manifest.model import Api
from runner.manifest.source import Loc, shorten
from runner.providers import DEFAULT_PROVIDER, PROVIDERS, Provider

Fail = Callable[[str, Loc, str], ManifestError]


def provider_of(data: object, override: str | None) -> Provider:
    """The provider of a parsed manifest: `override` when given, else its ``api.provider``.

    A value the schema will refuse (not a known name) yields the default here,
    so the schema's own message, placed at the value, is the one shown.
    Raises UsageError for an unknown `override`.
    """
    if override is not None:
        if override not in PROVIDERS:
            raise UsageError(f"--provider {override!r}: use {' or '.join(PROVIDERS)}")
        return PROVIDERS[override]
    api = data.get("api") if isinstance(data, Mapping) else None
    name = api.get("provider") if isinstance(api, Mapping) else None
    return (
        PROVIDERS.get(name, PROVIDERS[DEFAULT_PROVIDER])
        if isinstance(name, str)
        else (PROVIDERS[DEFAULT_PROVIDER])
    )


def context_of(provider: Provider) -> dict[str, object]:
    """The validation context the schema's param validators read."""
    return {"provider": provider.name, "n_max": provider.n_max}


def input_images_problem(count: int, provider: Provider) -> tuple[str, str] | None:
    """Why one edit of `count` source images cannot go to `provider` (message, hint), or None."""
    if count < 1:
        return (
            "an empty list of source images",
            f"give 1 to {provider.max_input_images} images, or remove `images`",
        )
    if count <= provider.max_input_images:
        return None
    more = [
        f"api.provider {p.name} takes up to {p.max_input_images}"
        for p in PROVIDERS.values()
        if p.max_input_images >= count
    ]
    return (
        f"{count} source images for one edit, but {provider.title} takes at most "
        f"{provider.max_input_images}",
        "; ".join(more) if more else f"keep at most {provider.max_input_images}",
    )


@dataclass(frozen=True, slots=True)
class SourcesProblem:
    """Why an `images:` list cannot be one edit: `message`, `hint`, and where: the list
    item at fault (`item`), else the `images` key itself (`key`: the key, not its value)."""

    message: str
    hint: str
    item: int | None = None
    key: bool = False


def sources_problem(
    images: Sequence[str], *, with_image: bool, provider: Provider
) -> SourcesProblem | None:
    """The first problem of the source images of one multi-image edit (`images:` of an
    inline prompt, of a `prompts_from` line or of an `include` entry), or None.

    The one rule for all three: not with `image` too (`with_image`), a count
    `provider` takes, each source once. Each caller places the problem.
    """
    if with_image:
        return SourcesProblem(
            "`image` and `images` are both set",
            "keep one: `image` for one source image, `images` for a multi-image edit",
            key=True,
        )
    problem = input_images_problem(len(images), provider)
    if problem is not None:
        return SourcesProblem(*problem)
    seen: dict[str, int] = {}
    for i, text in enumerate(images):
        if text in seen:
            return SourcesProblem(
                f"`images` names `{shorten(text)}` twice (items {seen[text]} and {i})",
                "list each source image once",
                item=i,
            )
        seen[text] = i
    return None


def resolve_api(
    base_url: str | None, endpoint: Endpoint | None, provider: Provider, fail: Fail
) -> Api:
    """The manifest's `Api`: the endpoint defaults to the provider's; one it lacks is refused."""
    chosen = endpoint or provider.default_endpoint
    if chosen not in provider.endpoints:
        raise fail(
            f"{provider.title} has no {chosen} endpoint",
            ("api", "endpoint"),
            f"allowed with provider {provider.name}: {', '.join(provider.endpoints)}",
        )
    return Api(base_url=base_url, endpoint=chosen, provider=provider.name)
