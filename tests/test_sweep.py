"""Sweep expansion: counts, order, include/exclude rules, laziness, and properties."""

from __future__ import annotations

import itertools
import math
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.jobs import Job
from runner.manifest import AXES, Manifest, parse_manifest
from runner.money import Micros, micros
from runner.params import ASPECT_RATIOS, MODES, OUTPUT_FORMATS, RESOLUTIONS, price
from runner.sweep import count_jobs, expand, fit_in, spaces, tally

ROOT = Path(__file__).resolve().parent.parent


def _m(text: str) -> Manifest:
    return parse_manifest(text, path="t.yaml", base_dir=ROOT / "manifests")


def _combo(job: Job) -> tuple[Any, ...]:
    r = job.request
    return (job.prompt_id, r.mode, r.aspect_ratio, r.resolution, r.n, r.output_format)


HEAD = "name: t\nprompts:\n  - id: a\n    prompt: a cat\n"


# -- counts and order


def test_product_counts_and_odometer_order() -> None:
    m = _m(HEAD + "sweep:\n  mode: [standard, quality]\n  aspect_ratio: ['1:1', '16:9', '4:3']\n")
    jobs = list(expand(m))
    assert len(jobs) == count_jobs(m) == 6
    # The last axis declared varies fastest.
    assert [(j.request.mode, j.request.aspect_ratio) for j in jobs] == [
        ("standard", "1:1"),
        ("standard", "16:9"),
        ("standard", "4:3"),
        ("quality", "1:1"),
        ("quality", "16:9"),
        ("quality", "4:3"),
    ]
    assert [j.index for j in jobs] == list(range(6))
    assert jobs[4].sweep == (("mode", "quality"), ("aspect_ratio", "16:9"))


def test_declared_order_not_field_order() -> None:
    m = _m(HEAD + "sweep:\n  aspect_ratio: ['1:1', '16:9']\n  mode: [standard, quality]\n")
    jobs = list(expand(m))
    assert [j.request.mode for j in jobs] == ["standard", "quality"] * 2
    assert jobs[0].sweep[0][0] == "aspect_ratio"


def test_every_param_is_explicit() -> None:
    job = next(expand(_m(HEAD)))
    assert job.request.params() == {
        "prompt": "a cat",
        "mode": "standard",
        "aspect_ratio": "16:9",
        "resolution": "2k",
        "n": 1,
        "output_format": "png",
    }
    assert job.sweep == () and job.vars == ()


def test_zip_pairs_values() -> None:
    m = _m(
        HEAD + "sweep:\n  mode: [standard, quality]\n"
        "zip:\n  - resolution: [1k, 2k]\n    output_format: [jpeg, png]\n"
    )
    combos = [(j.request.mode, j.request.resolution, j.request.output_format) for j in expand(m)]
    assert combos == [
        ("standard", "1k", "jpeg"),
        ("standard", "2k", "png"),
        ("quality", "1k", "jpeg"),
        ("quality", "2k", "png"),
    ]
    assert count_jobs(m) == 4


def test_vars_come_first_and_render() -> None:
    m = _m(
        "name: t\nprompts:\n  - id: mug\n    prompt: A {color} mug on {surface}\n"
        "    vars:\n      color: [red, teal]\n      surface: [oak, marble]\n"
        "sweep:\n  mode: [standard, quality]\n"
    )
    jobs = list(expand(m))
    assert len(jobs) == 8
    assert [j.request.prompt for j in jobs[:3]] == ["A red mug on oak"] * 2 + [
        "A red mug on marble"
    ]
    assert jobs[2].vars == (("color", "red"), ("surface", "marble"))
    assert jobs[-1].request.prompt == "A teal mug on marble"
    assert jobs[-1].sweep == (("mode", "quality"),)


def test_vars_belong_to_their_prompt() -> None:
    m = _m(
        "name: t\nprompts:\n  - id: a\n    prompt: a {x}\n    vars: {x: [1, 2, 3]}\n"
        "  - id: b\n    prompt: b\n"
    )
    assert [j.prompt_id for j in expand(m)] == ["a", "a", "a", "b"]


def test_exclude_drops_matching_combinations() -> None:
    m = _m(
        "name: t\nprompts:\n  - id: mug\n    prompt: A {color} mug\n"
        "    vars: {color: [red, teal]}\n  - id: cat\n    prompt: a cat\n"
        "sweep:\n  mode: [standard, quality]\n  resolution: [1k, 2k]\n"
        "exclude:\n  - {mode: quality, resolution: 2k}\n  - {color: teal, mode: standard}\n"
    )
    mug = [(j.request.prompt, j.request.mode, j.request.resolution) for j in expand(m)][:5]
    assert mug == [
        ("A red mug", "standard", "1k"),
        ("A red mug", "standard", "2k"),
        ("A red mug", "quality", "1k"),
        ("A teal mug", "quality", "1k"),
        ("a cat", "standard", "1k"),
    ]
    # mug: 8 - 2 - 2 (the entries do not overlap); cat: 4 - 1 (the var entry is not its)
    assert count_jobs(m) == 4 + 3 == len(list(expand(m)))


def test_exclude_can_target_a_prompt() -> None:
    m = _m(
        HEAD + "  - id: b\n    prompt: b\nsweep:\n  mode: [standard, quality]\n"
        "exclude:\n  - {prompt: b, mode: quality}\n"
    )
    assert [_combo(j)[:2] for j in expand(m)] == [
        ("a", "standard"),
        ("a", "quality"),
        ("b", "standard"),
    ]


def test_include_adds_after_the_product_with_base_values() -> None:
    m = _m(
        "name: t\ndefaults: {resolution: 1k}\nprompts:\n  - id: a\n    prompt: a cat\n"
        "sweep:\n  aspect_ratio: ['1:1', '4:3']\n"
        "include:\n  - {mode: quality}\n  - {aspect_ratio: '1:1'}\n  - {mode: quality}\n"
    )
    jobs = list(expand(m))
    # The second include is a product combination, the third repeats the first.
    assert [(j.request.mode, j.request.aspect_ratio) for j in jobs] == [
        ("standard", "1:1"),
        ("standard", "4:3"),
        ("quality", "16:9"),  # unnamed axes take the base value, not the sweep's
    ]
    assert jobs[-1].sweep == (("aspect_ratio", "16:9"), ("mode", "quality"))
    assert jobs[0].sweep == (("aspect_ratio", "1:1"), ("mode", "standard"))
    assert count_jobs(m) == 3


def test_include_restores_an_excluded_combination() -> None:
    m = _m(
        HEAD + "sweep:\n  mode: [standard, quality]\n"
        "exclude:\n  - {mode: quality}\ninclude:\n  - {mode: quality}\n"
    )
    assert [j.request.mode for j in expand(m)] == ["standard", "quality"]


def test_include_expands_the_vars_it_does_not_name() -> None:
    m = _m(
        "name: t\nprompts:\n  - id: mug\n    prompt: A {color} mug on {surface}\n"
        "    vars: {color: [red, teal], surface: [oak, marble]}\n"
        "  - id: cat\n    prompt: a cat\n"
        "include:\n  - {prompt: mug, color: gold, mode: quality}\n  - {surface: oak, n: 2}\n"
    )
    extra = [(j.prompt_id, j.request.prompt, j.request.mode, j.request.n) for j in expand(m)]
    assert extra[4:6] == [
        ("mug", "A gold mug on oak", "quality", 1),
        ("mug", "A gold mug on marble", "quality", 1),
    ]
    assert extra[6:8] == [
        ("mug", "A red mug on oak", "standard", 2),
        ("mug", "A teal mug on oak", "standard", 2),
    ]
    # The second entry names a var that only `mug` declares: `cat` gets nothing from it.
    assert extra[8:] == [("cat", "a cat", "standard", 1)]
    assert count_jobs(m) == 9


def test_a_new_var_value_is_not_taken_for_an_earlier_include() -> None:
    m = _m(
        "name: t\nprompts:\n  - id: mug\n    prompt: A {color} mug\n    vars: {color: [red]}\n"
        "include:\n  - {prompt: mug, mode: quality}\n"
        "  - {prompt: mug, color: gold, mode: quality}\n"
    )
    assert [(j.request.prompt, j.request.mode) for j in expand(m)] == [
        ("A red mug", "standard"),
        ("A red mug", "quality"),
        ("A gold mug", "quality"),
    ]
    assert count_jobs(m) == 3


def test_repeat_is_innermost_and_part_of_the_key() -> None:
    m = _m(HEAD + "sweep:\n  mode: [standard, quality]\nrepeat: 3\n")
    jobs = list(expand(m))
    assert [(j.request.mode, j.repeat) for j in jobs] == [
        ("standard", 0),
        ("standard", 1),
        ("standard", 2),
        ("quality", 0),
        ("quality", 1),
        ("quality", 2),
    ]
    assert len({j.key for j in jobs}) == 6
    assert jobs[0].request == jobs[1].request
    assert count_jobs(m) == 6


def test_image_axis_and_prompt_image() -> None:
    m = _m(
        "name: t\nprompts:\n  - id: a\n    prompt: edit\n"
        "sweep:\n  image: [inputs/beach.jpg, 'https://example.com/x.png']\n"
    )
    jobs = list(expand(m))
    assert [j.request.image.kind if j.request.image else None for j in jobs] == ["path", "url"]
    assert jobs[0].sweep == (("image", "inputs/beach.jpg"),)
    m2 = _m("name: t\nprompts:\n  - id: a\n    prompt: edit\n    image: inputs/beach.jpg\n")
    image = next(expand(m2)).request.image
    assert image is not None and image.path is not None and image.path.endswith("beach.jpg")


def test_endpoint_and_model_go_into_the_job() -> None:
    job = next(expand(_m(HEAD + "api: {endpoint: v1}\n")))
    assert (job.endpoint, job.model) == ("v1", "grok-imagine-image")


def test_examples_expand() -> None:
    from runner.manifest import load_manifest

    example = load_manifest(ROOT / "manifests" / "example.yaml")
    assert count_jobs(example) == len(list(expand(example))) == 6
    demo = load_manifest(ROOT / "manifests" / "sweep-demo.yaml")
    jobs = list(expand(demo))
    assert count_jobs(demo) == len(jobs) == 24
    assert len({j.key for j in jobs}) == 24


# -- laziness


def test_expansion_is_lazy_for_a_trillion_jobs() -> None:
    values = "[" + ", ".join(f"v{i}" for i in range(100)) + "]"
    names = [f"x{i}" for i in range(6)]
    text = (
        "name: huge\nprompts:\n  - id: a\n    prompt: '"
        + " ".join("{" + n + "}" for n in names)
        + "'\n    vars:\n"
        + "".join(f"      {n}: {values}\n" for n in names)
    )
    m = _m(text)
    assert count_jobs(m) == 10**12
    tracemalloc.start()
    try:
        stream = expand(m)
        assert isinstance(stream, Iterator)
        first = list(itertools.islice(stream, 10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [j.index for j in first] == list(range(10))
    assert first[9].request.prompt == "v0 v0 v0 v0 v0 v9"
    assert peak < 2_000_000  # bytes: a few jobs' worth, not a materialised product


def test_count_is_arithmetic_with_excludes() -> None:
    values = "[" + ", ".join(f"v{i}" for i in range(1000)) + "]"
    text = (
        "name: t\nprompts:\n  - id: a\n    prompt: '{x} {y}'\n"
        f"    vars:\n      x: {values}\n      y: {values}\n"
        "sweep:\n  mode: [standard, quality]\n  n: [1, 2]\n"
        "exclude:\n  - {mode: quality, n: 2}\n"
    )
    m = _m(text)
    (space,) = spaces(m)
    result = tally(m, space)
    assert result.jobs == 1000 * 1000 * 3
    assert result.images == 1000 * 1000 * (1 + 2 + 1)
    assert result.credits == pytest.approx(1e6 * (0.02 + 0.04 + 0.05))


# -- properties over random manifests

AXIS_VALUES: dict[str, tuple[Any, ...]] = {
    "mode": MODES,
    "aspect_ratio": ASPECT_RATIOS[:5],
    "resolution": RESOLUTIONS,
    "n": (1, 2, 3, 4),
    "output_format": OUTPUT_FORMATS,
    "image": ("https://example.com/a.png", "https://example.com/b.png"),
}
TOKENS = ("red", "teal", "gold", "oak", "marble", "dawn")


def _zip_group(draw: st.DrawFn, zipped: list[str]) -> dict[str, list[Any]]:
    length = draw(st.integers(1, min(len(AXIS_VALUES[a]) for a in zipped)))
    first = st.lists(
        st.sampled_from(AXIS_VALUES[zipped[0]]), unique=True, min_size=length, max_size=length
    )
    group = {zipped[0]: draw(first)}  # unique first list: the pairs differ
    for a in zipped[1:]:
        group[a] = draw(st.lists(st.sampled_from(AXIS_VALUES[a]), min_size=length, max_size=length))
    return group


def _prompt(draw: st.DrawFn, k: int, free: list[str]) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=2))
    # Delimited fields: distinct var values always render distinct texts.
    prompt: dict[str, Any] = {
        "id": f"p{k}",
        "prompt": f"p{k}" + "".join(f" <{{{n}}}>" for n in names),
    }
    if names:
        prompt["vars"] = {
            n: draw(st.lists(st.sampled_from(TOKENS), unique=True, min_size=1, max_size=3))
            for n in names
        }
    chosen = draw(st.lists(st.sampled_from(free), unique=True))
    params = {a: draw(st.sampled_from(AXIS_VALUES[a])) for a in chosen}
    if "image" in params:
        prompt["image"] = params.pop("image")
    if params:
        prompt["params"] = params
    return prompt


def _exclude(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any] | None:
    """A partial combination taken from one prompt's product, so that it can match."""
    p = draw(st.sampled_from(doc["prompts"]))
    combo: dict[str, Any] = {n: draw(st.sampled_from(v)) for n, v in p.get("vars", {}).items()}
    combo.update({a: draw(st.sampled_from(v)) for a, v in doc.get("sweep", {}).items()})
    for group in doc.get("zip", []):
        i = draw(st.integers(0, len(next(iter(group.values()))) - 1))
        combo.update({a: values[i] for a, values in group.items()})
    if not combo:
        return None
    keys = draw(st.lists(st.sampled_from(sorted(combo)), unique=True, min_size=1))
    entry = {key: combo[key] for key in keys}
    if draw(st.booleans()):
        entry["prompt"] = p["id"]
    return entry


def _include(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(list(AXIS_VALUES)), unique=True, max_size=2))
    entry = {a: draw(st.sampled_from(AXIS_VALUES[a])) for a in chosen}
    if draw(st.booleans()):
        p = draw(st.sampled_from(doc["prompts"]))
        entry["prompt"] = p["id"]
        for n, v in p.get("vars", {}).items():
            if draw(st.booleans()):
                entry[n] = draw(st.sampled_from((*v, "new")))
    return entry


@st.composite
def manifest_docs(draw: st.DrawFn) -> dict[str, Any]:
    axes = list(AXIS_VALUES)
    swept = draw(st.lists(st.sampled_from(axes), unique=True, max_size=3))
    doc: dict[str, Any] = {"name": "prop", "prompts": [], "repeat": draw(st.integers(1, 2))}
    if swept:
        doc["sweep"] = {
            a: draw(st.lists(st.sampled_from(AXIS_VALUES[a]), unique=True, min_size=1, max_size=3))
            for a in swept
        }
    rest = [a for a in axes if a not in swept]
    zipped = draw(st.lists(st.sampled_from(rest), unique=True, max_size=2))
    if zipped:
        doc["zip"] = [_zip_group(draw, zipped)]
    free = [a for a in rest if a not in zipped]
    doc["prompts"] = [_prompt(draw, k, free) for k in range(draw(st.integers(1, 3)))]
    excludes = [_exclude(draw, doc) for _ in range(draw(st.integers(0, 2)))]
    if any(excludes):
        doc["exclude"] = [e for e in excludes if e]
    includes = [_include(draw, doc) for _ in range(draw(st.integers(0, 3)))]
    if any(includes):
        doc["include"] = [e for e in includes if e]
    return doc


def _reference(m: Manifest) -> list[tuple[Any, ...]]:
    """A plain, materialising statement of the expansion rules, to compare with `expand`."""
    out: list[tuple[Any, ...]] = []
    for prompt in m.prompts:
        names = set(prompt.var_names)

        def concerns(entry: Any, prompt: Any = prompt, names: set[str] = names) -> bool:
            return entry.prompt in (None, prompt.id) and all(
                k in AXES or k in names for k, _ in entry.values
            )

        combos = []
        units = (*prompt.vars, *m.sweep, *m.zip)
        for rows in itertools.product(*(u.values for u in units)):
            values = dict(prompt.base)
            for unit, row in zip(units, rows, strict=True):
                values.update(zip(unit.names, row, strict=True))
            if not any(concerns(e) and all(values[k] == v for k, v in e.values) for e in m.exclude):
                combos.append(values)
        seen = [tuple(sorted(c.items(), key=str)) for c in combos]
        for entry in m.include:
            if not concerns(entry):
                continue
            named = dict(entry.values)
            free = [u for u in prompt.vars if u.names[0] not in named]
            for rows in itertools.product(*(u.values for u in free)):
                values = {**prompt.base, **named}
                values.update((u.names[0], row[0]) for u, row in zip(free, rows, strict=True))
                frozen = tuple(sorted(values.items(), key=str))
                if frozen not in seen:
                    seen.append(frozen)
                    combos.append(values)
        for values in combos:
            var_values = tuple((n, values[n]) for n in prompt.var_names)
            params = tuple(values[a] for a in AXES)
            out += [(prompt.id, var_values, params, r) for r in range(m.repeat)]
    return out


def _observed(job: Job) -> tuple[Any, ...]:
    r = job.request
    image = r.image.source if r.image else None
    params = (r.mode, r.aspect_ratio, r.resolution, r.n, r.output_format, image)
    return (job.prompt_id, job.vars, params, job.repeat)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifest_docs())
def test_expansion_properties(doc: dict[str, Any]) -> None:
    m = parse_manifest(yaml.safe_dump(doc, sort_keys=False), path="prop.yaml")
    jobs = list(expand(m))
    # count = formula (arithmetic, no iteration)
    assert count_jobs(m) == len(jobs)
    # the rules, as a plain materialising reference
    assert [_observed(j) for j in jobs] == _reference(m)
    # keys unique, indices dense, order deterministic
    assert len({j.key for j in jobs}) == len(jobs)
    assert [j.index for j in jobs] == list(range(len(jobs)))
    assert list(expand(m)) == jobs
    # images and credits by arithmetic equal the sums over the jobs
    totals = [tally(m, s) for s in spaces(m)]
    assert sum(t.images for t in totals) == sum(j.request.n for j in jobs)
    credits = sum(price(j.request.mode, j.request.resolution, j.request.n) for j in jobs)
    assert math.isclose(sum(t.credits for t in totals), credits, abs_tol=1e-9)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifest_docs(), st.integers(0, 400_000))
def test_the_cut_under_a_cap_is_the_walks(doc: dict[str, Any], cap: int) -> None:
    # fit_in (arithmetic) against the plain walk: jobs in order before the first that passes.
    m = parse_manifest(yaml.safe_dump(doc, sort_keys=False), path="prop.yaml")
    for space in spaces(m):
        jobs = [j for j in expand(m) if j.prompt_id == space.prompt.id]
        walked, spent = 0, 0
        for job in jobs:
            cost = micros(price(job.request.mode, job.request.resolution, job.request.n))
            if spent + cost > cap:
                break
            walked, spent = walked + 1, spent + cost
        assert fit_in(m, space, Micros(cap)) == (walked, spent)


def test_a_cap_inside_a_trillion_jobs_is_cut_by_arithmetic() -> None:
    values = "[" + ", ".join(f"v{i}" for i in range(100)) + "]"
    names = [f"x{i}" for i in range(6)]
    text = (
        "name: huge\nprompts:\n  - id: a\n    prompt: '"
        + " ".join("{" + n + "}" for n in names)
        + "'\n    vars:\n"
        + "".join(f"      {n}: {values}\n" for n in names)
        + "sweep:\n  mode: [standard, quality]\n"
        + "exclude:\n  - {x0: v3}\n  - {mode: quality, x5: v1}\n"
    )
    m = _m(text)
    (space,) = spaces(m)
    tracemalloc.start()
    try:
        # $1e9 is 5e10 standard jobs' worth: a walk would take weeks.
        jobs, spent = fit_in(m, space, micros(1e9))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert spent <= micros(1e9)
    # Each x5 step is (standard $0.02, quality $0.05) but for v1 (quality excluded).
    per_x4 = 100 * 20_000 + 99 * 50_000  # µ$ of one value of x4: 100 x5 values
    assert jobs > 0 and spent > micros(1e9) - per_x4
    assert peak < 2_000_000  # bytes
