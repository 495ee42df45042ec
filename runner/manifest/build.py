"""Load a manifest: read, parse, validate, check across keys, build the frozen values.

The checks here span several keys, a module per section: `axes` (sweep and
zip: lengths, axes set in two places), `prompts` (templates and their vars,
input images, read and hashed now; prompt files), `entries` (include and
exclude keys and values) and `output` (the folder and the name template).
Each failure is a ManifestError placed at the value's file:line:column
through the `Source` it came from. The checks go on past a failure, one
axis, zip group, prompt or section at a time, so the error a user reads
lists every problem at once (`checker.Checker`, messages.combine).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from os import PathLike, fspath
from pathlib import Path
from types import MappingProxyType

from pydantic import ValidationError

from runner.manifest.axes import sweep_units, zip_units
from runner.manifest.checker import Checker
from runner.manifest.entries import combinations
from runner.manifest.hosting import context_of, provider_of, resolve_api
from runner.manifest.messages import translate
from runner.manifest.model import Budget, Coordinator, Manifest, Output, PromptSource
from runner.manifest.output import check_output_dir, check_unique_names, output_pattern
from runner.manifest.prompts import inline_prompts, prompt_files
from runner.manifest.schema import ManifestModel
from runner.manifest.source import Source, parse_source, read_source
from runner.params import DEFAULT_PRICES


def load_manifest(path: str | PathLike[str], *, provider: str | None = None) -> Manifest:
    """Read, parse and check a manifest file. Raises ManifestError naming place and fix.

    `provider` (``--provider``) overrides the manifest's ``api.provider``.
    """
    source = read_source(Path(path), display=fspath(path))
    return build_manifest(source, provider=provider)


def parse_manifest(
    text: str,
    *,
    path: str = "<manifest>",
    base_dir: Path | None = None,
    provider: str | None = None,
) -> Manifest:
    """Check manifest text; relative image paths resolve against `base_dir` (default: cwd)."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    source = parse_source(text, path=path, base_dir=base_dir or Path.cwd(), sha256=digest)
    return build_manifest(source, provider=provider)


def build_manifest(source: Source, *, provider: str | None = None) -> Manifest:
    """Validate a parsed source against the schema (with the provider's limits) and the
    cross-key rules."""
    host = provider_of(source.data, provider)
    try:
        model = ManifestModel.model_validate(source.data, context=context_of(host))
    except ValidationError as err:
        raise translate(err, source) from None
    return _assemble(Checker(source, model, host))


def _assemble(ck: Checker) -> Manifest:
    """Every section checked, then the frozen `Manifest`; raises all problems at once."""
    m = ck.model
    sweep = sweep_units(ck)
    zipped = zip_units(ck, sweep)
    prompts = inline_prompts(ck, sweep, zipped)
    files: tuple[PromptSource, ...] = ()
    with ck.collect():
        files = prompt_files(ck, sweep, zipped, prompts)
    api = None
    with ck.collect():
        api = resolve_api(_strip_version(m.api.base_url), m.api.endpoint, ck.host, ck.fail)
    pattern = None
    with ck.collect():
        pattern = output_pattern(ck, prompts)
    with ck.collect():
        check_output_dir(ck, m.output.dir)
    # Entries are checked against the prompts and axes: only once those are sound.
    ck.check()
    assert api is not None
    manifest = Manifest(
        path=ck.source.path,
        sha256=ck.source.sha256,
        name=m.name,
        model=m.model,
        api=api,
        prompts=prompts,
        sweep=sweep,
        zip=zipped,
        include=(),
        exclude=(),
        repeat=m.repeat,
        budget=Budget(
            max_credits=m.budget.max_credits,
            requests_per_minute=m.budget.requests_per_minute,
            rate_scope=m.budget.rate_scope,
            rate_model=m.budget.rate_model,
            max_in_flight=m.budget.max_in_flight,
            max_submits_in_flight=m.budget.max_submits_in_flight,
        ),
        prices=_prices(m),
        output=Output(dir=m.output.dir or f"outputs/{m.name}", pattern=pattern),
        images=MappingProxyType(ck.images),
        coordinator=(
            Coordinator(url=m.coordinator.url, lease=m.coordinator.lease)
            if m.coordinator is not None
            else None
        ),
        prompt_files=files,
    )
    include = tuple(combinations(ck, "include", m.include, manifest))
    exclude = tuple(combinations(ck, "exclude", m.exclude, manifest))
    ck.check()
    # Include entries may name images of their own: take the final image tables.
    manifest = replace(
        manifest,
        include=include,
        exclude=exclude,
        images=MappingProxyType(ck.images),
        image_sets=MappingProxyType(ck.image_sets),
    )
    check_unique_names(ck, manifest)
    return manifest


def _prices(model: ManifestModel) -> Mapping[str, Mapping[str, float]]:
    """The default price table (USD per image) with the manifest's `prices` over it."""
    table = {mode: dict(row) for mode, row in DEFAULT_PRICES.items()}
    for mode, row in model.prices.items():
        table[mode].update(row)
    return MappingProxyType({mode: MappingProxyType(row) for mode, row in table.items()})


def _strip_version(url: str | None) -> str | None:
    if url is None:
        return None
    url = url.rstrip("/")
    for suffix in ("/v1", "/v2"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url
