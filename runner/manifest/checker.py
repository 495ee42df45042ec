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
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from runner.errors import ManifestError
from runner.jobs import ImageInput
from runner.manifest.data import DataFile, Format, locate
from runner.manifest.images import load_image
from runner.manifest.messages import combine
from runner.manifest.schema import ManifestModel
from runner.manifest.source import Loc, Source, describe
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
        if text not in self.images:
            try:
                self.images[text] = load_image(text, self.source.base_dir, self.roots)
            except ManifestError as err:
                raise self.fail(err.message, loc, err.hint) from None
        return text

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
