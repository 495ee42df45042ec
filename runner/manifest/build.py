"""Load a manifest: read, parse, validate, check across keys, build the frozen values.

The checks here span several keys: prompt templates and their vars, zip
lengths, axes set in two places, include/exclude keys and values, input
images (read and hashed now). Each failure is a ManifestError placed at the
value's file:line:column through the `Source` it came from. The checks go
on past a failure, one axis, zip group, prompt or section at a time, so the
error a user reads lists every problem at once (messages.combine).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from os import PathLike, fspath
from pathlib import Path
from types import MappingProxyType

from pydantic import ValidationError

from runner.errors import ManifestError, UsageError
from runner.jobs import ImageInput
from runner.manifest.data import VAR_FORMATS, DataFile, Format, locate, scan_prompts, scan_vars
from runner.manifest.hosting import context_of, input_images_problem, provider_of, resolve_api
from runner.manifest.images import load_image
from runner.manifest.messages import combine, translate
from runner.manifest.model import (
    AXES,
    Budget,
    Combination,
    Coordinator,
    Manifest,
    Output,
    Prompt,
    PromptSource,
    Unit,
    Value,
)
from runner.manifest.schema import (
    RESERVED_VARS,
    VAR_NAME,
    AxesModel,
    ManifestModel,
    PromptModel,
    param_problem,
)
from runner.manifest.source import Loc, Source, describe, parse_source, read_source, render_loc
from runner.naming import check_pattern, name_problem
from runner.params import API_DEFAULTS, DEFAULT_PRICES
from runner.pathcheck import path_problem
from runner.providers import Provider

_VAR_NAME = VAR_NAME
_RESERVED_VARS = RESERVED_VARS


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
    return _Builder(source, model, n_max=host.n_max, host=host).build(host)


class _Builder:
    """Cross-key checks and the conversion to frozen values, one method per section."""

    def __init__(
        self, source: Source, model: ManifestModel, *, n_max: int, host: Provider | None = None
    ) -> None:
        self.source = source
        self.model = model
        self.n_max = n_max
        self.host = host
        self.images: dict[str, ImageInput] = {}
        raw = source.data if isinstance(source.data, dict) else {}
        self.raw: Mapping[str, object] = raw
        self.problems: list[ManifestError] = []

    @contextlib.contextmanager
    def _collect(self) -> Iterator[None]:
        """Record a ManifestError raised in the block and go on after it.

        `_Skipped` ends the block silently: its problem is already recorded.
        """
        try:
            yield
        except ManifestError as err:
            self.problems.append(err)
        except _Skipped:
            pass

    def _check(self) -> None:
        """Raise every problem recorded so far as one ManifestError (in file order)."""
        if self.problems:
            ordered = sorted(self.problems, key=lambda e: (e.line or 0, e.column or 0))
            raise combine(ordered)

    def build(self, host: Provider) -> Manifest:
        m = self.model
        sweep = self._sweep()
        zipped = self._zip(sweep)
        prompts = self._prompts(sweep, zipped)
        prompt_files: tuple[PromptSource, ...] = ()
        with self._collect():
            prompt_files = self._prompt_files(sweep, zipped, prompts)
        api = None
        with self._collect():
            api = resolve_api(_strip_version(m.api.base_url), m.api.endpoint, host, self._fail)
        pattern = None
        with self._collect():
            pattern = self._pattern(prompts)
        with self._collect():
            self._output_dir(m.output.dir)
        # Entries are checked against the prompts and axes: only once those are sound.
        self._check()
        assert api is not None
        manifest = Manifest(
            path=self.source.path,
            sha256=self.source.sha256,
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
            prices=self._prices(),
            output=Output(dir=m.output.dir or f"outputs/{m.name}", pattern=pattern),
            images=MappingProxyType(self.images),
            coordinator=(
                Coordinator(url=m.coordinator.url, lease=m.coordinator.lease)
                if m.coordinator is not None
                else None
            ),
            prompt_files=prompt_files,
        )
        include = tuple(self._entries("include", m.include, manifest))
        exclude = tuple(self._entries("exclude", m.exclude, manifest))
        self._check()
        # Include entries may name images of their own: take the final image table.
        manifest = replace(
            manifest, include=include, exclude=exclude, images=MappingProxyType(self.images)
        )
        self._unique_names(manifest)
        return manifest

    # -- helpers

    def _fail(
        self, message: str, loc: Loc, hint: str | None = None, *, key: bool = False
    ) -> ManifestError:
        return self.source.error(message, loc, hint=hint, key=key)

    def _image(self, text: str, loc: Loc) -> str:
        if text not in self.images:
            try:
                roots = [self.source.base_dir / root for root in self.model.input_roots]
                self.images[text] = load_image(text, self.source.base_dir, roots)
            except ManifestError as err:
                raise self._fail(err.message, loc, err.hint) from None
        return text

    def _no_duplicates(self, values: Iterable[object], loc: Loc, what: str) -> None:
        seen: dict[object, int] = {}
        for i, value in enumerate(values):
            if value in seen:
                raise self._fail(
                    f"{_show(value)} is listed twice in {what} (also item {seen[value]})",
                    (*loc, i),
                    "remove the repeat: it would make duplicate jobs; use `repeat` for more"
                    " requests of the same params",
                )
            seen[value] = i

    # -- sweep and zip

    def _axes(
        self, axes: AxesModel, loc: Loc, *, unique: bool
    ) -> Iterator[tuple[str, tuple[Value, ...]]]:
        """(axis, values) in the order the manifest writes them; `unique` checks each list."""
        raw = _get(self.raw, loc)
        order = list(raw) if isinstance(raw, dict) else []
        for name in order:
            values = getattr(axes, str(name))
            if values is None:
                continue
            checked: tuple[Value, ...] | None = None
            with self._collect():
                checked = self._axis(str(name), values, loc, unique=unique)
            if checked is not None:
                yield str(name), checked

    def _axis(self, name: str, values: list[Value], loc: Loc, *, unique: bool) -> tuple[Value, ...]:
        if not values:
            raise self._fail(
                "an empty list would make zero jobs",
                (*loc, name),
                "give at least one value or remove the axis",
            )
        if unique:
            self._no_duplicates(values, (*loc, name), render_loc((*loc, name)))
        if name == "image":
            values = [self._image(str(v), (*loc, name, i)) for i, v in enumerate(values)]
        return tuple(values)

    def _sweep(self) -> tuple[Unit, ...]:
        return tuple(
            Unit("sweep", (name,), tuple((v,) for v in values))
            for name, values in self._axes(self.model.sweep, ("sweep",), unique=True)
        )

    def _zip(self, sweep: tuple[Unit, ...]) -> tuple[Unit, ...]:
        owner: dict[str, str] = {unit.names[0]: f"sweep.{unit.names[0]}" for unit in sweep}
        groups: list[Unit] = []
        for g, group in enumerate(self.model.zip):
            with self._collect():
                groups.append(self._zip_group(g, group, owner))
        return tuple(groups)

    def _zip_group(self, g: int, group: AxesModel, owner: dict[str, str]) -> Unit:
        loc: Loc = ("zip", g)
        # A zip group may repeat a value in one list; only whole pairs must differ.
        before = len(self.problems)
        axes = list(self._axes(group, loc, unique=False))
        if len(self.problems) > before:
            raise _Skipped  # a list of the group is wrong: its length says nothing more
        if not axes:
            raise self._fail(
                "an empty zip group", loc, "give two or more axes with lists of equal length"
            )
        for name, _ in axes:
            if name in owner:
                raise self._fail(
                    f"`{name}` is also set in {owner[name]}",
                    (*loc, name),
                    "an axis may appear in only one of sweep and the zip groups",
                    key=True,
                )
            owner[name] = f"zip[{g}].{name}"
        first_name, first_values = axes[0]
        for name, values in axes[1:]:
            if len(values) != len(first_values):
                raise self._fail(
                    f"`{first_name}` has {len(first_values)} values but `{name}` has {len(values)}",
                    loc,
                    "the lists of a zip group pair up by position, so they must be equally long",
                )
        rows = tuple(zip(*(values for _, values in axes), strict=True))
        self._no_duplicates(rows, (*loc, first_name), f"zip[{g}] (as pairs)")
        return Unit("zip", tuple(name for name, _ in axes), rows)

    # -- prompts

    def _prompts(self, sweep: tuple[Unit, ...], zipped: tuple[Unit, ...]) -> tuple[Prompt, ...]:
        swept = {
            name: f"sweep.{name}" if unit.kind == "sweep" else f"zip[{zipped.index(unit)}]"
            for unit in (*sweep, *zipped)
            for name in unit.names
        }
        defaults = self.model.defaults.model_dump(exclude_none=True)
        seen: dict[str, int] = {}
        prompts = []
        for i, p in enumerate(self.model.prompts):
            with self._collect():
                prompts.append(self._prompt(i, p, swept, defaults, seen))
        return tuple(prompts)

    def _prompt(
        self,
        i: int,
        p: PromptModel,
        swept: Mapping[str, str],
        defaults: Mapping[str, Value],
        seen: dict[str, int],
    ) -> Prompt:
        """One prompt of `prompts`, checked; `seen` maps the ids so far to their index."""
        loc: Loc = ("prompts", i)
        if p.id in seen:
            raise self._fail(
                f"duplicate prompt id `{p.id}` (prompts[{seen[p.id]}] has it too)",
                (*loc, "id"),
                "give each prompt its own id: the id names its output folder",
            )
        seen[p.id] = i
        # The store's rule, checked here too so `runner validate` refuses what a run would.
        problem = name_problem(p.id)  # ASCII by the schema, so already NFC
        if problem is not None:
            raise self._fail(
                f"prompt id `{p.id}` cannot name a folder: {problem}",
                (*loc, "id"),
                "choose another id, e.g. snow-leopard_2",
            )
        if not p.prompt.strip():
            raise self._fail("the prompt text is blank", (*loc, "prompt"), "write the prompt")
        units = self._vars(p.vars, loc)
        if p.vars_from is not None:
            units = (self._vars_from(p.vars_from, units, (*loc, "vars_from")), *units)
        self._template(p.prompt, p.id, [n for u in units for n in u.names], loc)
        own = p.params.model_dump(exclude_none=True)
        if p.image is not None:
            own["image"] = self._image(p.image, (*loc, "image"))
        more = self._more_images(p.images, p.image is not None, (*loc, "images"))
        if p.images:
            own["image"] = self._image(p.images[0], (*loc, "images", 0))
        for name in own:
            if name in swept:
                image_key = "images" if p.images else "image"
                field = (*loc, image_key) if name == "image" else (*loc, "params", name)
                raise self._fail(
                    f"`{name}` is set for this prompt and also swept in {swept[name]}",
                    field,
                    "a prompt may set only axes that are not swept: remove one of them, or"
                    " shape the sweep with exclude/include",
                    key=True,
                )
        base: dict[str, Value | None] = {**API_DEFAULTS, "image": None, **defaults, **own}
        return Prompt(p.id, p.prompt, units, MappingProxyType(base), more_images=more)

    def _more_images(
        self, images: list[str] | None, has_image: bool, loc: Loc
    ) -> tuple[ImageInput, ...]:
        """The 2nd and later images of a prompt's `images:` list, checked against the provider."""
        if images is None:
            return ()
        if has_image:
            raise self._fail(
                "`image` and `images` are both set",
                loc,
                "keep one: `image` for one source image, `images` for a multi-image edit",
                key=True,
            )
        if self.host is not None:
            problem = input_images_problem(len(images), self.host)
            if problem is not None:
                raise self._fail(problem[0], loc, problem[1])
        self._no_duplicates(images, loc, "images")
        return tuple(
            self.images[self._image(text, (*loc, i))] for i, text in enumerate(images) if i > 0
        )

    def _data_file(self, text: str, loc: Loc, formats: Mapping[str, Format]) -> DataFile:
        roots = [self.source.base_dir / root for root in self.model.input_roots]
        try:
            return locate(text, self.source.base_dir, roots, self.source.path, formats=formats)
        except ManifestError as err:
            raise self._fail(err.message, loc, err.hint) from None

    def _vars_from(self, text: str, inline: tuple[Unit, ...], loc: Loc) -> Unit:
        """The rows unit of a `vars_from` file (runner.manifest.data), checked in one pass."""
        rows = scan_vars(self._data_file(text, loc, VAR_FORMATS), _RESERVED_VARS)
        for unit in inline:
            if unit.names[0] in rows.columns:
                raise self._fail(
                    f"var `{unit.names[0]}` is declared here and is also a column of {text}",
                    (*loc[:-1], "vars", unit.names[0]),
                    "keep one of them",
                    key=True,
                )
        return Unit("rows", rows.columns, rows)

    def _prompt_files(
        self, sweep: tuple[Unit, ...], zipped: tuple[Unit, ...], prompts: tuple[Prompt, ...]
    ) -> tuple[PromptSource, ...]:
        text = self.model.prompts_from
        if text is None:
            if not self.model.prompts:
                raise self._fail(
                    "`prompts` is required but missing",
                    ("prompts",),
                    "add `prompts:` to the manifest, or name a file under `prompts_from:`",
                )
            return ()
        data = self._data_file(text, ("prompts_from",), {".jsonl": "jsonl"})
        defaults = self.model.defaults.model_dump(exclude_none=True)
        base: dict[str, Value | None] = {**API_DEFAULTS, "image": None, **defaults}
        return (
            scan_prompts(
                data,
                base=base,
                base_dir=self.source.base_dir,
                roots=[self.source.base_dir / root for root in self.model.input_roots],
                swept=frozenset(name for unit in (*sweep, *zipped) for name in unit.names),
                inline_ids=[p.id for p in prompts],
            ),
        )

    def _vars(self, declared: Mapping[str, list[str]], loc: Loc) -> tuple[Unit, ...]:
        units = []
        before = len(self.problems)
        for name, values in declared.items():
            with self._collect():
                units.append(self._var(name, values, (*loc, "vars", name)))
        if len(self.problems) > before:
            raise _Skipped  # the prompt's template would only repeat its var's problem
        return tuple(units)

    def _var(self, name: str, values: list[str], where: Loc) -> Unit:
        if not _VAR_NAME.match(name):
            raise self._fail(
                f"`{name}` is not a usable var name",
                where,
                "use letters, digits and _ (not starting with a digit), e.g. color",
                key=True,
            )
        if name in _RESERVED_VARS:
            raise self._fail(
                f"`{name}` is a request param or keyword, so it cannot be a var name",
                where,
                f"rename the var (e.g. {name}_text); sweep params under `sweep`",
                key=True,
            )
        if not values:
            raise self._fail("an empty list would make zero jobs", where, "give at least one value")
        self._no_duplicates(values, where, f"vars.{name}")
        return Unit("var", (name,), tuple((v,) for v in values))

    def _template(self, text: str, prompt_id: str, declared: list[str], loc: Loc) -> None:
        where = (*loc, "prompt")
        used: set[str] = set()
        try:
            fields = list(string.Formatter().parse(text))
        except ValueError as err:
            raise self._fail(
                f"the prompt text has a stray brace ({err})",
                where,
                "write {name} for a var, and {{ or }} for a literal brace",
            ) from None
        for _, field, spec, conversion in fields:
            if field is None:
                continue
            if not _VAR_NAME.match(field) or spec or conversion:
                shown = "{" + field + (f"!{conversion}" if conversion else "")
                shown += (f":{spec}" if spec else "") + "}"
                raise self._fail(
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
                raise self._fail(
                    f"`{{{field}}}` is used but prompt `{prompt_id}` declares no var `{field}`",
                    where,
                    hint,
                )
            used.add(field)
        for name in declared:
            if name not in used:
                raise self._fail(
                    f"var `{name}` is declared but the prompt text never uses {{{name}}}",
                    (*loc, "vars", name),
                    f"add {{{name}}} to the prompt or remove the var: unused, it would only"
                    " repeat identical requests",
                    key=True,
                )

    # -- include and exclude

    def _entries(
        self, section: str, entries: list[dict[str, str | int | float]], manifest: Manifest
    ) -> Iterator[Combination]:
        ids = [p.id for p in manifest.prompts]
        all_vars = {name for p in manifest.prompts for name in p.var_names}
        for e, entry in enumerate(entries):
            combo: Combination | None = None
            with self._collect():
                combo = self._entry(section, (section, e), entry, (ids, all_vars), manifest)
            if combo is not None:
                yield combo

    def _entry(
        self,
        section: str,
        loc: Loc,
        entry: dict[str, str | int | float],
        names: tuple[list[str], set[str]],
        manifest: Manifest,
    ) -> Combination:
        """One include or exclude entry, checked, at `loc`; `names`: (prompt ids, all vars)."""
        ids, all_vars = names
        target = entry.get("prompt")
        if not entry:
            raise self._fail(
                "an entry must name at least one axis or var",
                loc,
                'e.g. {mode: quality, aspect_ratio: "1:1"}',
            )
        prompt = None
        if target is not None:
            prompt = self._target(str(target), ids, manifest, (*loc, "prompt"))
        elif manifest.prompt_files and all(name in AXES for name in entry):
            # Axes only: it may concern the prompts of the file, not checked here.
            return Combination(
                None,
                tuple(
                    (name, self._entry_value(section, name, value, set(), (*loc, name)))
                    for name, value in entry.items()
                ),
            )
        known = set(prompt.var_names) if prompt else all_vars
        values: list[tuple[str, Value]] = []
        for name, value in entry.items():
            if name == "prompt":
                continue
            values.append((name, self._entry_value(section, name, value, known, (*loc, name))))
        combo = Combination(prompt.id if prompt else None, tuple(values))
        targets = [p for p in manifest.prompts if combo.applies_to(p)]
        if section == "include" and any(u.kind == "rows" for p in targets for u in p.vars):
            raise self._fail(
                "an include entry cannot concern a prompt whose vars come from a file",
                loc,
                "add the combination as a row of the vars_from file, or target another"
                " prompt with `prompt: <id>`",
            )
        if not targets:
            raise self._fail(
                "no prompt declares all the vars this entry names",
                loc,
                "name vars of one prompt only, or add `prompt: <id>`",
            )
        if section == "exclude" and not any(_can_match(combo, p, manifest) for p in targets):
            raise self._fail(
                "this entry matches no combination of any prompt",
                loc,
                "check its values against the sweep, zip and vars lists, or remove it",
            )
        return combo

    def _target(self, target: str, ids: list[str], manifest: Manifest, loc: Loc) -> Prompt:
        if target not in ids:
            close = difflib.get_close_matches(target, ids, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise self._fail(
                f"there is no prompt with id `{target}`", loc, hint + f"ids: {', '.join(ids)}"
            )
        return manifest.prompts[ids.index(target)]

    def _entry_value(
        self, section: str, name: str, value: str | int | float, known: set[str], loc: Loc
    ) -> Value:
        if name in AXES:
            problem = param_problem(name, value, n_max=self.n_max)
            if problem is not None:
                raise self._fail(problem[0], loc, problem[1])
            if name == "image" and section == "include":
                return self._image(str(value), loc)
            return value if isinstance(value, int) and name == "n" else str(value)
        if name not in known:
            choices = sorted({*AXES, "prompt", *known})
            close = difflib.get_close_matches(name, choices, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise self._fail(
                f"unknown key `{name}`: not an axis nor a var of the targeted prompts",
                loc,
                hint + f"allowed: {', '.join(choices)}",
                key=True,
            )
        return str(value)

    # -- prices and output

    def _prices(self) -> Mapping[str, Mapping[str, float]]:
        table = {mode: dict(row) for mode, row in DEFAULT_PRICES.items()}
        for mode, row in self.model.prices.items():
            table[mode].update(row)
        return MappingProxyType({mode: MappingProxyType(row) for mode, row in table.items()})

    def _output_dir(self, text: str | None) -> None:
        """`output.dir` must be a path a file system can hold (a NUL byte, a 300-byte name)."""
        problem = path_problem(text) if text is not None else None
        if problem is not None:
            raise self._fail(
                f"cannot be used as a folder: {problem}",
                ("output", "dir"),
                "name a folder such as outputs/shots, or pass --out DIR",
            )

    def _pattern(self, prompts: tuple[Prompt, ...]) -> str | None:
        """`output.name` (or its older spelling `output.pattern`), checked by the store's rules."""
        given = self.model.output
        pattern = given.name or given.pattern
        if given.name is not None and given.pattern is not None:
            raise self._fail(
                "output.name and output.pattern are one setting given twice",
                ("output", "pattern"),
                "keep output.name (output.pattern is its older spelling)",
                key=True,
            )
        if pattern is None:
            return None
        for prompt in prompts:
            try:
                check_pattern(pattern, var_names=prompt.var_names)
            except UsageError as err:
                message = str(err).removeprefix("output.name: ")
                if prompt.var_names or len(prompts) > 1:
                    message += f" (for prompt `{prompt.id}`)"
                raise self._fail(
                    message,
                    ("output", self._name_field()),
                    "e.g. {prompt_id}/{slug}-{key8}-{i}; a var in the name must be a var"
                    " of every prompt; the store adds the extension",
                ) from None
        return pattern

    def _unique_names(self, manifest: Manifest) -> None:
        """No two jobs may share a file name (runner.name_clash decides, bounded by size)."""
        pattern = manifest.output.pattern
        if pattern is None:
            return
        # Imported here: name_clash walks the sweep, which imports this package.
        from runner.name_clash import find_clash

        try:
            clash = find_clash(manifest, pattern)
        except UsageError as err:  # a rendered name that is no safe file name
            raise self._fail(str(err), ("output", self._name_field())) from None
        if clash is not None:
            raise self._fail(clash.message(), ("output", self._name_field()), clash.fix)

    def _name_field(self) -> str:
        return "pattern" if self.model.output.name is None else "name"


class _Skipped(Exception):
    """Ends a check whose cause is already among the recorded problems."""


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


def _strip_version(url: str | None) -> str | None:
    if url is None:
        return None
    url = url.rstrip("/")
    for suffix in ("/v1", "/v2"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def _get(data: Mapping[str, object], loc: Loc) -> object:
    current: object = data
    for part in loc:
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        else:
            return None
    return current


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(str(v) for v in value) + ")"
    return describe(value)
