"""The prompts checked into `Prompt` values: ids, vars, templates, images, prompt files.

A prompt's id must name a folder and be unique; its vars (inline, or the
rows of a `vars_from` file) must each be a `{field}` of its text and every
field a var; the params it sets must not be swept; its input images are
loaded now. A `prompts_from` file is checked in one pass here
(runner.manifest.data) and read again, lazily, by the expansion.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Mapping
from types import MappingProxyType

from runner.jobs import ImageInput
from runner.manifest.checker import Checker, Skipped
from runner.manifest.data import VAR_FORMATS, scan_prompts, scan_vars
from runner.manifest.fields import RESERVED_VARS, VAR_NAME
from runner.manifest.model import Prompt, PromptSource, Unit, Value
from runner.manifest.schema import PromptModel
from runner.manifest.source import Loc, render_loc
from runner.naming import name_problem
from runner.params import API_DEFAULTS


def inline_prompts(
    ck: Checker, sweep: tuple[Unit, ...], zipped: tuple[Unit, ...]
) -> tuple[Prompt, ...]:
    """The manifest's `prompts`, each checked (against the swept axes too)."""
    swept = {
        name: f"sweep.{name}" if unit.kind == "sweep" else f"zip[{zipped.index(unit)}]"
        for unit in (*sweep, *zipped)
        for name in unit.names
    }
    defaults = ck.model.defaults.model_dump(exclude_none=True)
    seen: dict[str, int] = {}
    prompts = []
    for i, p in enumerate(ck.model.prompts):
        with ck.collect():
            prompts.append(_prompt(ck, i, p, swept=swept, defaults=defaults, seen=seen))
    return tuple(prompts)


def prompt_files(
    ck: Checker, sweep: tuple[Unit, ...], zipped: tuple[Unit, ...], prompts: tuple[Prompt, ...]
) -> tuple[PromptSource, ...]:
    """The `prompts_from` file, scanned once (none: `prompts` is required)."""
    text = ck.model.prompts_from
    if text is None:
        if not ck.model.prompts:
            raise ck.fail(
                "`prompts` is required but missing",
                ("prompts",),
                "add `prompts:` to the manifest, or name a file under `prompts_from:`",
            )
        return ()
    data = ck.data_file(text, ("prompts_from",), {".jsonl": "jsonl"})
    defaults = ck.model.defaults.model_dump(exclude_none=True)
    base: dict[str, Value | None] = {**API_DEFAULTS, "image": None, **defaults}
    return (
        scan_prompts(
            data,
            base=base,
            base_dir=ck.source.base_dir,
            roots=ck.roots,
            swept=frozenset(name for unit in (*sweep, *zipped) for name in unit.names),
            inline_ids=[p.id for p in prompts],
            host=ck.host,
        ),
    )


def _prompt(
    ck: Checker,
    i: int,
    p: PromptModel,
    *,
    swept: Mapping[str, str],
    defaults: Mapping[str, Value],
    seen: dict[str, int],
) -> Prompt:
    """One prompt of `prompts`, checked; `seen` maps the ids so far to their index."""
    loc: Loc = ("prompts", i)
    if p.id in seen:
        raise ck.fail(
            f"duplicate prompt id `{p.id}` (prompts[{seen[p.id]}] has it too)",
            (*loc, "id"),
            "give each prompt its own id: the id names its output folder",
        )
    seen[p.id] = i
    # The store's rule, checked here too so `runner validate` refuses what a run would.
    problem = name_problem(p.id)  # ASCII by the schema, so already NFC
    if problem is not None:
        raise ck.fail(
            f"prompt id `{p.id}` cannot name a folder: {problem}",
            (*loc, "id"),
            "choose another id, e.g. snow-leopard_2",
        )
    if not p.prompt.strip():
        raise ck.fail("the prompt text is blank", (*loc, "prompt"), "write the prompt")
    units = _vars(ck, p.vars, loc)
    if p.vars_from is not None:
        units = (_vars_from(ck, p.vars_from, units, (*loc, "vars_from")), *units)
    _template(ck, p.prompt, p.id, [n for u in units for n in u.names], loc)
    own = p.params.model_dump(exclude_none=True)
    if p.image is not None:
        own["image"] = ck.image(p.image, (*loc, "image"))
    more = _more_images(ck, p.images, p.image is not None, (*loc, "images"))
    if p.images:
        own["image"] = ck.image(p.images[0], (*loc, "images", 0))
    for name in own:
        if name in swept:
            image_key = "images" if p.images else "image"
            field = (*loc, image_key) if name == "image" else (*loc, "params", name)
            raise ck.fail(
                f"`{name}` is set for this prompt and also swept in {swept[name]}",
                field,
                "a prompt may set only axes that are not swept: remove one of them, or"
                " shape the sweep with exclude/include",
                key=True,
            )
    base: dict[str, Value | None] = {**API_DEFAULTS, "image": None, **defaults, **own}
    return Prompt(p.id, p.prompt, units, MappingProxyType(base), more_images=more)


def _more_images(
    ck: Checker, images: list[str] | None, has_image: bool, loc: Loc
) -> tuple[ImageInput, ...]:
    """The 2nd and later images of a prompt's `images:` list, checked against the provider."""
    if images is None:
        return ()
    ck.check_sources(images, with_image=has_image, loc=loc)
    return tuple(ck.images[ck.image(text, (*loc, i))] for i, text in enumerate(images) if i > 0)


def _vars_from(ck: Checker, text: str, inline: tuple[Unit, ...], loc: Loc) -> Unit:
    """The rows unit of a `vars_from` file (runner.manifest.data), checked in one pass."""
    rows = scan_vars(ck.data_file(text, loc, VAR_FORMATS), RESERVED_VARS)
    for unit in inline:
        if unit.names[0] in rows.columns:
            raise ck.fail(
                f"var `{unit.names[0]}` is declared here and is also a column of {text}",
                (*loc[:-1], "vars", unit.names[0]),
                "keep one of them",
                key=True,
            )
    return Unit("rows", rows.columns, rows)


def _vars(ck: Checker, declared: Mapping[str, list[str]], loc: Loc) -> tuple[Unit, ...]:
    units = []
    before = len(ck.problems)
    for name, values in declared.items():
        with ck.collect():
            units.append(_var(ck, name, values, (*loc, "vars", name)))
    if len(ck.problems) > before:
        raise Skipped  # the prompt's template would only repeat its var's problem
    return tuple(units)


def _var(ck: Checker, name: str, values: list[str], where: Loc) -> Unit:
    if not VAR_NAME.match(name):
        raise ck.fail(
            f"`{name}` is not a usable var name",
            where,
            "use letters, digits and _ (not starting with a digit), e.g. color",
            key=True,
        )
    if name in RESERVED_VARS:
        raise ck.fail(
            f"`{name}` is a request param or keyword, so it cannot be a var name",
            where,
            f"rename the var (e.g. {name}_text); sweep params under `sweep`",
            key=True,
        )
    if not values:
        raise ck.fail("an empty list would make zero jobs", where, "give at least one value")
    ck.no_duplicates(values, where, f"vars.{name}")
    return Unit("var", (name,), tuple((v,) for v in values))


def _template(ck: Checker, text: str, prompt_id: str, declared: list[str], loc: Loc) -> None:
    """The prompt text's `{fields}` are exactly its declared vars, each used."""
    where = (*loc, "prompt")
    used: set[str] = set()
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as err:
        raise ck.fail(
            f"the prompt text has a stray brace ({err})",
            where,
            "write {name} for a var, and {{ or }} for a literal brace",
        ) from None
    for _, field, spec, conversion in fields:
        if field is None:
            continue
        if not VAR_NAME.match(field) or spec or conversion:
            shown = "{" + field + (f"!{conversion}" if conversion else "")
            shown += (f":{spec}" if spec else "") + "}"
            raise ck.fail(
                f"`{shown}` is not a plain var field",
                where,
                "write {name} with a var's name only, and {{ or }} for a literal brace",
            )
        if field not in declared:
            close = difflib.get_close_matches(field, declared, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            hint += f"declare it under {render_loc((*loc, 'vars'))}"
            hint += f" (declared: {', '.join(declared)})" if declared else ""
            hint += ", or write {{" + field + "}} for literal braces"
            raise ck.fail(
                f"`{{{field}}}` is used but prompt `{prompt_id}` declares no var `{field}`",
                where,
                hint,
            )
        used.add(field)
    for name in declared:
        if name not in used:
            raise ck.fail(
                f"var `{name}` is declared but the prompt text never uses {{{name}}}",
                (*loc, "vars", name),
                f"add {{{name}}} to the prompt or remove the var: unused, it would only"
                " repeat identical requests",
                key=True,
            )
