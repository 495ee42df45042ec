"""Names that reach the disk: safe path components, slugs, name patterns, stems. Pure.

Two kinds of names reach the disk:

- ids a user chose (prompt ids, literal text of a name pattern) are *checked*
  with `check_name`: NFC-normalised, then refused with a UsageError if they
  hold anything outside the allow-list. Silently rewriting a chosen id would
  hide a mistake.
- values the runner derives (the slug, template vars, params substituted into
  a pattern) are *folded* with `fold_name` into ``[a-z0-9-]``; they always
  succeed.

The manifest checks its name template (`output.name`, also spelled
`output.pattern`) with `check_pattern` when it loads, and then that no two
jobs would share a name (runner.name_clash); the store renders a job's
`relative_stem` and adds the folder and extension (runner.store.layout). Both
use these rules, and neither imports the other.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from runner.errors import UsageError
from runner.jobs import Job

MAX_NAME_CHARS: Final = 64
"""Longest path component a user may choose (a prompt id), in characters."""

MAX_RENDERED_CHARS: Final = 160
"""Longest rendered file or folder name from a pattern, in characters."""

MAX_NAME_BYTES: Final = 200
"""Longest name in UTF-8 bytes: 255, the usual limit, less room for ``.<name>.<random>.tmp``."""

SLUG_CHARS: Final = 48
"""Longest derived slug, in characters."""

DEFAULT_PATTERN: Final = "{prompt_id}/{slug}-{key8}-{i}"

PLACEHOLDERS: Final = (
    "prompt_id",
    "prompt",
    "slug",
    "key8",
    "i",
    "index",
    "repeat",
    "mode",
    "resolution",
    "aspect_ratio",
    "n",
    "output_format",
)
"""Built-in placeholders of a name pattern; template vars may be used too (built-ins win).

``{prompt}`` is ``{prompt_id}`` under the name the issue tracker's examples use."""

IDENTITY_PLACEHOLDERS: Final = frozenset({"key8", "index"})
"""Placeholders that differ between any two jobs: a template holding one names every job apart."""

_ALIASES: Final = {"prompt": "prompt_id"}

# Punctuation a chosen name may hold besides letters, marks and digits of any script.
_EXTRA_CHARS: Final = frozenset("-_.")
# Windows refuses these as a file's stem whatever the extension ("CON.png", "com1.tar.gz").
_RESERVED: Final = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{p}{d}" for p in ("COM", "LPT") for d in "0123456789\u00b9\u00b2\u00b3"]
)
_DIGIT_COLON_DIGIT: Final = re.compile(r"(?<=\d):(?=\d)")
_NOT_SLUG: Final = re.compile(r"[^a-z0-9]+")


def show(value: str) -> str:
    """`value` as a message shows it: controls and bidi marks escaped."""
    # repr() escapes controls and bidi marks, so the message shows what is really there.
    return ascii(value)


def name_problem(name: str, max_chars: int = MAX_NAME_CHARS) -> str | None:
    """Why `name` (NFC) cannot be a path component, or None when it can.

    The rule of `check_name`, for callers that word their own error (the
    manifest, with the file and line). `max_chars` caps the length in characters.
    """
    if not name:
        return "it is empty"
    if name in (".", ".."):
        return "it is a relative folder reference"
    if name.startswith("."):
        return "it starts with a dot (hidden files are the runner's own)"
    if name.endswith((".", " ")):
        return "it ends with a dot or a space (Windows drops them)"
    if len(name) > max_chars:
        return f"it is {len(name)} characters long (at most {max_chars})"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"it is {len(name.encode('utf-8'))} bytes long in UTF-8 (at most {MAX_NAME_BYTES})"
    for ch in name:
        if ch in _EXTRA_CHARS:
            continue
        category = unicodedata.category(ch)
        if category[0] in "LMN":
            continue
        if category in ("Cc", "Cf"):
            return f"it holds the control or format character U+{ord(ch):04X}"
        return f"it holds the character {ch!r}"
    if name.split(".", 1)[0].upper() in _RESERVED:
        return "it is a reserved device name on Windows"
    return None


def check_name(value: str, *, field: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """Return `value` NFC-normalised if it is a safe path component; raise UsageError if not.

    Allowed: letters, marks and digits of any script, ``-``, ``_`` and ``.``;
    no leading dot, no trailing dot, at most MAX_NAME_CHARS characters, no
    Windows device name (``CON``, ``com1.txt``, ...). `field` names where the
    value came from (e.g. ``prompts[2].id``) for the message; `max_chars` is
    the length cap in characters (MAX_NAME_BYTES caps the UTF-8 bytes).
    """
    name = unicodedata.normalize("NFC", value)
    problem = name_problem(name, max_chars)
    if problem is not None:
        raise UsageError(
            f"{field}: {show(value)} cannot be used in a file name: {problem}. "
            "Choose a name of letters, digits, '-', '_' or '.' that does not start with a dot "
            "and is not a Windows device name."
        )
    return name


@functools.lru_cache(maxsize=4096)  # pure, and a sweep folds the same few values for every job
def fold_name(text: str, *, max_chars: int = SLUG_CHARS, fallback: str = "x") -> str:
    """A derived value as a readable file-name part: lowercase ASCII ``[a-z0-9-]``.

    ``16:9`` becomes ``16x9``; accents are dropped (``Crème`` -> ``creme``);
    other runs of characters become one ``-``. Cut at a ``-`` near `max_chars`
    (characters). Never empty (`fallback`), never a Windows device name.
    """
    text = _DIGIT_COLON_DIGIT.sub("x", text)
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG.sub("-", folded.lower()).strip("-")
    if len(slug) > max_chars:
        cut = slug.rfind("-", 0, max_chars + 1)
        slug = slug[:cut] if cut >= max_chars // 2 else slug[:max_chars]
        slug = slug.strip("-")
    if not slug:
        slug = fallback
    if slug.upper() in _RESERVED:
        slug += "_"
    return slug


def slug(job: Job) -> str:
    """The readable part of a job's file names: its var then sweep values, else the prompt's words.

    Folded and cut at SLUG_CHARS; the default template's ``{key8}`` keeps a cut
    name unique.
    """
    values = [value for _, value in job.vars] + [str(value) for _, value in job.sweep]
    if values:
        return fold_name("-".join(values))
    return fold_name(job.request.prompt, fallback="image")


@functools.lru_cache(maxsize=64)
def _fields(pattern: str) -> tuple[tuple[str, str | None], ...]:
    """(literal text, placeholder or None) pairs of a pattern; only bare ``{name}`` allowed.

    Cached: a run renders one pattern for every image (a bad one raises each time).
    """
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as err:
        raise UsageError(
            f"output.name: {show(pattern)} is not a valid template ({err}); "
            "write placeholders as {key8}, and braces as {{ }}"
        ) from None
    out: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name is not None and (spec or conversion or not name.isidentifier()):
            raise UsageError(
                f"output.name: placeholder {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} is not allowed; use a bare name such as {{key8}}"
            )
        out.append((literal, name))
    return tuple(out)


def placeholders(pattern: str) -> frozenset[str]:
    """The placeholders `pattern` names, aliases resolved (``prompt`` -> ``prompt_id``)."""
    return frozenset(_ALIASES.get(name, name) for _, name in _fields(pattern) if name is not None)


def check_pattern(pattern: str, *, var_names: Iterable[str] = ()) -> None:
    """Validate a manifest's name template (`output.name`); raise UsageError naming the fix.

    It must contain ``{i}`` (so the images of one request get their own
    names), use only known placeholders (PLACEHOLDERS or a template var in
    `var_names`), use ``/`` to separate folders, and its literal parts must be
    safe names. Whether two *jobs* would share a name is decided over the
    whole manifest by runner.name_clash.
    """
    if "\\" in pattern or pattern.startswith("/"):
        raise UsageError(
            f"output.name: {show(pattern)} must be a relative template with '/' between folders"
        )
    known = set(PLACEHOLDERS) | set(var_names)
    names = {name for _, name in _fields(pattern) if name is not None}
    unknown = sorted(names - known)
    if unknown:
        raise UsageError(
            f"output.name: unknown placeholder {{{unknown[0]}}}; "
            f"use one of {', '.join('{' + n + '}' for n in sorted(known))}"
        )
    if "i" not in names:
        raise UsageError(
            f"output.name: {show(pattern)} lacks {{i}}; it keeps the images of one request "
            f"apart (e.g. {DEFAULT_PATTERN!r})"
        )
    # A sample rendering checks the literal parts ("../", "CON", a leading dot).
    sample = {name: "a" for name in names}
    for part in _render(pattern, sample).split("/"):
        check_name(part, field="output.name", max_chars=MAX_RENDERED_CHARS)


def _render(pattern: str, values: Mapping[str, str]) -> str:
    return "".join(literal + (values[name] if name else "") for literal, name in _fields(pattern))


def _prompt_id(job: Job, i: int) -> str:
    return check_name(job.prompt_id, field=f"prompt id of job {job.index}")


_BUILT_IN: Final[Mapping[str, Callable[[Job, int], str]]] = {
    "prompt_id": _prompt_id,
    "prompt": _prompt_id,
    "slug": lambda job, i: slug(job),
    "key8": lambda job, i: job.key8,
    "i": lambda job, i: str(i),
    "index": lambda job, i: str(job.index),
    "repeat": lambda job, i: str(job.repeat),
    "mode": lambda job, i: fold_name(job.request.mode),
    "resolution": lambda job, i: fold_name(job.request.resolution),
    "aspect_ratio": lambda job, i: fold_name(job.request.aspect_ratio),
    "n": lambda job, i: str(job.request.n),
    "output_format": lambda job, i: fold_name(job.request.output_format),
}
"""How each built-in placeholder renders (PLACEHOLDERS); a template var is its folded value."""


def _values(job: Job, i: int, pattern: str) -> dict[str, str]:
    """The values of the placeholders `pattern` uses, and only those (the load-time walk
    renders up to runner.name_clash.ENUMERATE_IMAGES names)."""
    values: dict[str, str] = {}
    own = dict(job.vars)
    for _, name in _fields(pattern):
        if name is None or name in values:
            continue
        make = _BUILT_IN.get(name)
        values[name] = make(job, i) if make is not None else fold_name(own[name])
    return values


def relative_stem(job: Job, i: int, pattern: str | None = None) -> str:
    """The image's path relative to OUT without extension, ``/``-separated."""
    if not 0 <= i < job.request.n:
        raise ValueError(f"image index {i} outside 0..{job.request.n - 1}")
    pattern = pattern or DEFAULT_PATTERN
    if pattern != DEFAULT_PATTERN:
        check_pattern(pattern, var_names=[name for name, _ in job.vars])
    return render_stem(job, i, pattern)


def render_stem(job: Job, i: int, pattern: str) -> str:
    """`relative_stem` of a template already checked by `check_pattern` (the load-time walk)."""
    rendered = _render(pattern, _values(job, i, pattern))
    parts = [
        check_name(part, field="output.name", max_chars=MAX_RENDERED_CHARS)
        for part in rendered.split("/")
    ]
    return "/".join(parts)
