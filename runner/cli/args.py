"""What every `runner` subcommand shares: the parser types, option types and output.

Each command module (`runner.cli`, `runner.cli.run`) imports these public
names; none reaches into another's private helpers.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO, TypeVar, overload

Handler = Callable[[argparse.Namespace], int]
"""A subcommand's body: the parsed arguments in, the exit code out."""

_N = TypeVar("_N")


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser whose options may be added only when it is used.

    `populate`, when set, adds the options on the first parse (or help) of
    this subcommand: `runner emulator`'s options come from the emulator
    package, which other commands must not pay to import (uvicorn,
    starlette, Pillow).
    """

    populate: Callable[[argparse.ArgumentParser], None] | None = None

    def _populated(self) -> None:
        populate, self.populate = self.populate, None
        if populate is not None:
            populate(self)

    @overload
    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: None = None
    ) -> tuple[argparse.Namespace, list[str]]: ...
    @overload
    def parse_known_args(
        self, args: Iterable[str] | None, namespace: _N
    ) -> tuple[_N, list[str]]: ...
    @overload
    def parse_known_args(self, *, namespace: _N) -> tuple[_N, list[str]]: ...

    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: object = None
    ) -> tuple[object, list[str]]:
        """argparse's own, after adding any lazily built options."""
        self._populated()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        """argparse's own, after adding any lazily built options."""
        self._populated()
        return super().format_help()


if TYPE_CHECKING:
    from typing import TypeAlias

    Subparsers: TypeAlias = argparse._SubParsersAction[CommandParser]


def common() -> CommandParser:
    """The parent parser of every subcommand: `--debug` after the subcommand too."""
    # SUPPRESS keeps an absent flag from overwriting one given before the subcommand.
    parent = CommandParser(add_help=False)
    parent.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    return parent


def rpm_value(text: str) -> int | Literal["auto"]:
    """``--rpm``: a whole number of requests per minute, or ``auto`` (learned at run time)."""
    if text.strip().lower() == "auto":
        return "auto"
    return positive_int(text)


def positive_int(text: str) -> int:
    """An option's value as a whole number of at least 1 (a count, a rate per minute)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """An option's value as an amount in USD, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an amount in USD, got {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def path_value(text: str) -> Path:
    """A command-line path, refused (exit 2) when no file system could hold it (pathcheck)."""
    from runner.pathcheck import path_problem

    problem = path_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"cannot use {text[:60]!r} as a path: {problem}")
    return Path(text)


def write(stream: TextIO, text: str) -> None:
    """Write and flush `text`; a closed pipe (`runner plan ... | head`) is not an error."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        # Point stdout at devnull so the interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
