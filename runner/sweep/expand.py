"""Jobs from the job spaces: every combination's requests, `repeat` times, in order. Pure.

Prompts come in file order and `Job.index` counts across all of them; every
combination yields `repeat` jobs (repeat index innermost). A subset
(`restrict`) selects from this stream, keeping each job's index and key.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

from runner.errors import UsageError
from runner.jobs import ImageInput, Job, Request, make_job
from runner.manifest import Manifest, Prompt
from runner.providers import provider
from runner.subset import PARAMS, Subset
from runner.sweep.space import Assignment, assignments, more_images, n_of, spaces


def expand(manifest: Manifest) -> Iterator[Job]:
    """Every job of the manifest, lazily, in the documented deterministic order.

    With `manifest.subset` (see `restrict`), only the subset's jobs, each
    with the index and key it has in the whole expansion.
    """
    jobs = expand_all(manifest)
    return jobs if manifest.subset is None else manifest.subset.select(jobs)


def restrict(manifest: Manifest, subset: Subset | None) -> Manifest:
    """`manifest` whose expansion, count and plan are those of `subset` (None: all jobs).

    Raises UsageError for a filter naming neither a param nor a var of any
    prompt, with a "did you mean".
    """
    if subset is None:
        return manifest
    known = {*PARAMS, *(name for prompt in manifest.prompts for name in prompt.var_names)}
    for condition in subset.conditions:
        if condition.name is not None and condition.name not in known:
            close = difflib.get_close_matches(condition.name, sorted(known), n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise UsageError(
                f"--filter {str(condition)!r}: `{condition.name}` is neither a request param nor"
                f" a var of any prompt ({hint}params: {', '.join(PARAMS)})"
            )
    return replace(manifest, subset=subset)


def expand_all(manifest: Manifest) -> Iterator[Job]:
    """Every job of the whole expansion, ignoring `manifest.subset`."""
    index = 0
    # Looked up once, not per job: a resume walks every job of the manifest.
    billed = provider(manifest.api.provider).billed_images
    for space in spaces(manifest):
        names = space.prompt.var_names
        for values in assignments(space):
            var_values = tuple((name, str(values[name])) for name in names)
            request = _request(manifest, space.prompt, values, dict(var_values), billed)
            sweep = tuple((name, _value(values, name)) for name in space.varying)
            for repeat in range(manifest.repeat):
                yield make_job(
                    index=index,
                    prompt_id=space.prompt.id,
                    request=request,
                    model=manifest.model,
                    endpoint=manifest.api.endpoint,
                    vars=var_values,
                    sweep=sweep,
                    repeat=repeat,
                )
                index += 1


def _request(
    manifest: Manifest,
    prompt: Prompt,
    values: Assignment,
    var_values: Mapping[str, str],
    billed: Callable[[int, int], int],
) -> Request:
    text = prompt.render(var_values)
    image = values["image"]
    more = more_images(manifest, prompt, values)
    sources = 0 if image is None else 1 + len(more)
    return Request(
        prompt=text,
        mode=str(values["mode"]),
        aspect_ratio=str(values["aspect_ratio"]),
        resolution=str(values["resolution"]),
        n=n_of(values),
        output_format=str(values["output_format"]),
        image=_image(manifest, prompt, str(image)) if image is not None else None,
        more_images=more,
        billed_sources=billed(0, sources),
    )


def _image(manifest: Manifest, prompt: Prompt, source: str) -> ImageInput:
    # A prompt read from a file carries its own image; sweep images are the manifest's.
    found = prompt.images.get(source)
    return found if found is not None else manifest.images[source]


def _value(values: Assignment, name: str) -> str | int:
    value = values[name]
    return "" if value is None else value
