"""What the cross-key checks of one manifest share, and how they report a problem.

A `Checker` holds the parsed source and its validated model, the provider,
the input images loaded so far and the problems found so far. A check
raises a ManifestError placed at a value's file:line:column (`fail`);
`collect` records it and lets the checks go on, one axis, zip group,
prompt or section at a time, so the error a user reads lists every problem
at once (`check`, through messages.combine).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from runner.errors import ManifestError
from runner.jobs import ImageInput
from runner.manifest.data import DataFile, Format, locate
from runner.manifest.hosting import sources_problem
from runner.manifest.images import load_image, sources_key
from runner.manifest.messages import combine
from runner.manifest.schema import ManifestModel
from runner.manifest.source import Loc, Source, describe, shorten
from runner.providers import Provider


class Skipped(Exception):
    """Ends a check whose cause is already among the recorded problems."""


class Checker:
    """The state of one manifest's cross-key checks: what they read, load and find."""

    def __init__(self, source: Source, model: ManifestModel, host: Provider) -> None:
        self.source = source
        self.model = model
        self.host = host
        self.n_max = host.n_max
        self.images: dict[str, ImageInput] = {}
        # The further sources of an include entry's multi-image edit, by its `image` value.
        self.image_sets: dict[str, tuple[ImageInput, ...]] = {}
        raw = source.data if isinstance(source.data, dict) else {}
        self.raw: Mapping[str, object] = raw
        self.problems: list[ManifestError] = []

    @contextlib.contextmanager
    def collect(self) -> Iterator[None]:
        """Record a ManifestError raised in the block and go on after it.

        `Skipped` ends the block silently: its problem is already recorded.
        """
        try:
            yield
        except ManifestError as err:
            self.problems.append(err)
        except Skipped:
            pass

    def check(self) -> None:
        """Raise every problem recorded so far as one ManifestError (in file order)."""
        if self.problems:
            ordered = sorted(self.problems, key=lambda e: (e.line or 0, e.column or 0))
            raise combine(ordered)

    def fail(
        self, message: str, loc: Loc, hint: str | None = None, *, key: bool = False
    ) -> ManifestError:
        """A ManifestError at `loc` in the manifest (at its key with `key`), to raise."""
        return self.source.error(message, loc, hint=hint, key=key)

    @property
    def roots(self) -> list[Path]:
        """The `input_roots` folders, resolved against the manifest's folder."""
        return [self.source.base_dir / root for root in self.model.input_roots]

    def image(self, text: str, loc: Loc) -> str:
        """Load the input image `text` (once per manifest) into `images`; its key."""
        if text in self.image_sets:
            raise self.fail(
                f"`{shorten(text)}` also names the source images of an include entry",
                loc,
                "rename this image file",
            )
        if text not in self.images:
            try:
                self.images[text] = load_image(text, self.source.base_dir, self.roots)
            except ManifestError as err:
                raise self.fail(err.message, loc, err.hint) from None
        return text

    def check_sources(self, images: Sequence[str], *, with_image: bool, loc: Loc) -> None:
        """Refuse an `images:` list at `loc` that cannot be one edit (hosting.sources_problem)."""
        problem = sources_problem(images, with_image=with_image, provider=self.host)
        if problem is not None:
            at = loc if problem.item is None else (*loc, problem.item)
            raise self.fail(problem.message, at, problem.hint, key=problem.key)

    def image_sources(self, images: Sequence[str], loc: Loc) -> str:
        """Load the source images of one edit (`images:` of an include entry, checked by
        `check_sources`); the `image` value that names them all (images.sources_key).

        Several sources: the value maps to the first in `images` and to the others
        in `image_sets`, so the sweep sends them together.
        """
        texts = [self.image(text, (*loc, i)) for i, text in enumerate(images)]
        key = sources_key(texts)
        if len(texts) > 1:
            if key in self.images and key not in self.image_sets:
                raise self.fail(
                    f"`{shorten(key)}` names an image of its own elsewhere in the manifest, "
                    "so it cannot also name these source images",
                    loc,
                    "rename that image file",
                )
            self.images[key] = self.images[texts[0]]
            self.image_sets[key] = tuple(self.images[text] for text in texts[1:])
        return key

    def data_file(self, text: str, loc: Loc, formats: Mapping[str, Format]) -> DataFile:
        """The data file `text` names (vars_from, prompts_from), located as input images are."""
        try:
            return locate(text, self.source.base_dir, self.roots, self.source.path, formats=formats)
        except ManifestError as err:
            raise self.fail(err.message, loc, err.hint) from None

    def no_duplicates(self, values: Iterable[object], loc: Loc, what: str) -> None:
        """Refuse a value listed twice in the list at `loc` (named `what`)."""
        seen: dict[object, int] = {}
        for i, value in enumerate(values):
            if value in seen:
                raise self.fail(
                    f"{_show(value)} is listed twice in {what} (also item {seen[value]})",
                    (*loc, i),
                    "remove the repeat: it would make duplicate jobs; use `repeat` for more"
                    " requests of the same params",
                )
            seen[value] = i


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(str(v) for v in value) + ")"
    return describe(value)
