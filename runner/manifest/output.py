"""The `output` section checked: a folder a file system can hold, a name template that
the store's rules accept for every prompt, and no two jobs sharing a file name."""

from __future__ import annotations

from runner.errors import UsageError
from runner.manifest.checker import Checker
from runner.manifest.model import Manifest, Prompt
from runner.naming import check_pattern
from runner.pathcheck import path_problem


def check_output_dir(ck: Checker, text: str | None) -> None:
    """`output.dir` must be a path a file system can hold (a NUL byte, a 300-byte name)."""
    problem = path_problem(text) if text is not None else None
    if problem is not None:
        raise ck.fail(
            f"cannot be used as a folder: {problem}",
            ("output", "dir"),
            "name a folder such as outputs/shots, or pass --out DIR",
        )


def output_pattern(ck: Checker, prompts: tuple[Prompt, ...]) -> str | None:
    """`output.name` (or its older spelling `output.pattern`), checked by the store's rules."""
    given = ck.model.output
    pattern = given.name or given.pattern
    if given.name is not None and given.pattern is not None:
        raise ck.fail(
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
            raise ck.fail(
                message,
                ("output", _name_field(ck)),
                "e.g. {prompt_id}/{slug}-{key8}-{i}; a var in the name must be a var"
                " of every prompt; the store adds the extension",
            ) from None
    return pattern


def check_unique_names(ck: Checker, manifest: Manifest) -> None:
    """No two jobs may share a file name (runner.name_clash decides, bounded by size)."""
    pattern = manifest.output.pattern
    if pattern is None:
        return
    # Imported here: name_clash walks the sweep, which imports this package.
    from runner.name_clash import find_clash

    try:
        clash = find_clash(manifest, pattern)
    except UsageError as err:  # a rendered name that is no safe file name
        raise ck.fail(str(err), ("output", _name_field(ck))) from None
    if clash is not None:
        raise ck.fail(clash.message(), ("output", _name_field(ck)), clash.fix)


def _name_field(ck: Checker) -> str:
    """The key the template was given under, for the error's place."""
    return "pattern" if ck.model.output.name is None else "name"
