"""The `include` and `exclude` entries checked into `Combination` values.

An entry names axes and vars (and optionally `prompt: <id>`); each key must
be an axis or a var of the prompts it targets, each axis value one the
provider allows. An include entry may name a multi-image edit's sources
with `images: [a, b, c]` (the rules of a prompt's `images`, hosting.py):
they become one `image` value (images.sources_key) that names them all.
An exclude that matches no combination of any prompt is refused (it is a
typo, not a rule); an include may not concern a prompt whose vars come
from a file.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence

from runner.manifest.checker import Checker
from runner.manifest.fields import param_problem, scalar_problem
from runner.manifest.model import AXES, Combination, Manifest, Prompt, Value
from runner.manifest.source import Loc

Entry = Mapping[str, str | int | float | list[str]]
"""An entry as parsed: a list only under an include entry's `images`."""


def combinations(
    ck: Checker, section: str, entries: Sequence[Entry], manifest: Manifest
) -> Iterator[Combination]:
    """The entries of `section` (include or exclude), each checked against `manifest`."""
    ids = [p.id for p in manifest.prompts]
    all_vars = {name for p in manifest.prompts for name in p.var_names}
    for e, entry in enumerate(entries):
        combo: Combination | None = None
        with ck.collect():
            combo = _entry(
                ck, section, (section, e), entry, names=(ids, all_vars), manifest=manifest
            )
        if combo is not None:
            yield combo


def _entry(
    ck: Checker,
    section: str,
    loc: Loc,
    entry: Entry,
    *,
    names: tuple[list[str], set[str]],
    manifest: Manifest,
) -> Combination:
    """One include or exclude entry, checked, at `loc`; `names`: (prompt ids, all vars)."""
    ids, all_vars = names
    target = entry.get("prompt")
    if not entry:
        raise ck.fail(
            "an entry must name at least one axis or var",
            loc,
            'e.g. {mode: quality, aspect_ratio: "1:1"}',
        )
    sources = _sources(ck, section, entry, loc)
    prompt = None
    if target is not None:
        prompt = _target(ck, str(target), ids, manifest, (*loc, "prompt"))
    elif manifest.prompt_files and all(name in AXES or name == "images" for name in entry):
        # Axes only: it may concern the prompts of the file, not checked here.
        return Combination(
            None,
            tuple(
                _pair(ck, section, name, value, known=set(), loc=loc, sources=sources)
                for name, value in entry.items()
            ),
        )
    known = set(prompt.var_names) if prompt else all_vars
    values: list[tuple[str, Value]] = []
    for name, value in entry.items():
        if name == "prompt":
            continue
        values.append(_pair(ck, section, name, value, known=known, loc=loc, sources=sources))
    combo = Combination(prompt.id if prompt else None, tuple(values))
    targets = [p for p in manifest.prompts if combo.applies_to(p)]
    if section == "include" and any(u.kind == "rows" for p in targets for u in p.vars):
        raise ck.fail(
            "an include entry cannot concern a prompt whose vars come from a file",
            loc,
            "add the combination as a row of the vars_from file, or target another"
            " prompt with `prompt: <id>`",
        )
    if not targets:
        raise ck.fail(
            "no prompt declares all the vars this entry names",
            loc,
            "name vars of one prompt only, or add `prompt: <id>`",
        )
    if section == "exclude" and not any(_can_match(combo, p, manifest) for p in targets):
        raise ck.fail(
            "this entry matches no combination of any prompt",
            loc,
            "check its values against the sweep, zip and vars lists, or remove it",
        )
    return combo


def _sources(ck: Checker, section: str, entry: Entry, loc: Loc) -> str | None:
    """The `image` value of an include entry's `images:` (a multi-image edit), loaded and
    checked by the rules of a prompt's `images`; None without one."""
    images = entry.get("images")
    if section != "include" or images is None:
        return None  # an exclude's `images` is an unknown key (`_entry_value` says so)
    where = (*loc, "images")
    if not isinstance(images, list):
        raise ck.fail(
            "`images` takes a list of source images",
            where,
            "e.g. images: [inputs/a.png, inputs/b.png], or image: for one",
        )
    ck.check_sources(images, with_image="image" in entry, loc=where)
    return ck.image_sources(images, where)


def _pair(
    ck: Checker,
    section: str,
    name: str,
    value: str | int | float | list[str],
    *,
    known: set[str],
    loc: Loc,
    sources: str | None,
) -> tuple[str, Value]:
    """One key of an entry and its checked value; an include's `images` sets `image`."""
    if name == "images" and sources is not None:
        return "image", sources
    if isinstance(value, list):
        message, hint = scalar_problem(value) or ("", "")
        raise ck.fail(message, (*loc, name), hint)
    return name, _entry_value(ck, section, name, value, known=known, loc=(*loc, name))


def _target(ck: Checker, target: str, ids: list[str], manifest: Manifest, loc: Loc) -> Prompt:
    if target not in ids:
        close = difflib.get_close_matches(target, ids, n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        raise ck.fail(
            f"there is no prompt with id `{target}`", loc, hint + f"ids: {', '.join(ids)}"
        )
    return manifest.prompts[ids.index(target)]


def _entry_value(
    ck: Checker, section: str, name: str, value: str | int | float, *, known: set[str], loc: Loc
) -> Value:
    if name in AXES:
        problem = param_problem(name, value, n_max=ck.n_max)
        if problem is not None:
            raise ck.fail(problem[0], loc, problem[1])
        if name == "image" and section == "include":
            return ck.image(str(value), loc)
        return value if isinstance(value, int) and name == "n" else str(value)
    if name not in known:
        choices = sorted({*AXES, "prompt", *known})
        close = difflib.get_close_matches(name, choices, n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        raise ck.fail(
            f"unknown key `{name}`: not an axis nor a var of the targeted prompts",
            loc,
            hint + f"allowed: {', '.join(choices)}",
            key=True,
        )
    return str(value)


def _can_match(combo: Combination, prompt: Prompt, manifest: Manifest) -> bool:
    """Whether some combination of `prompt`'s product has every value `combo` names."""
    wanted = dict(combo.values)
    covered: set[str] = set()
    for unit in manifest.units(prompt):
        keys = [i for i, name in enumerate(unit.names) if name in wanted]
        covered.update(unit.names)
        if keys and not any(
            all(row[i] == wanted[unit.names[i]] for i in keys) for row in unit.values
        ):
            return False
    return all(prompt.base[name] == value for name, value in wanted.items() if name not in covered)
