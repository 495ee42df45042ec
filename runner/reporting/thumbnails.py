"""Thumbnails for the gallery, made with Pillow, kept in ``OUT/.gallery/thumbs/``.

A hidden folder, so `runner verify` (which skips hidden folders) does not
take them for outputs. A thumbnail is named by its image's sha256 and its
size, so a re-run makes only new ones and an image that changed gets a new
one; thumbnails no image uses any more are removed. They are a cache,
written through the store's one atomic write (never half a file, fsynced
like every other file), and one that cannot be read is made again.
"""

from __future__ import annotations

import io
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from PIL import Image, features

from runner.reporting.jobinfo import REPORTS_DIR
from runner.store import ensure_dir, write_atomic

THUMB_PX: Final = 256
"""Longest side of a thumbnail, in pixels."""

THUMBS_DIR: Final = f"{REPORTS_DIR}/thumbs"
"""The thumbnails' folder, relative to OUT."""

_THUMB_NAME: Final = re.compile(r"^[0-9a-f]{24}-\d+\.(webp|jpg)$")
_In = TypeVar("_In")
_Out = TypeVar("_Out")


@dataclass(frozen=True, slots=True)
class Thumb:
    """A thumbnail: its path relative to OUT (``/``) and its size in pixels."""

    name: str
    width: int
    height: int


class _Unreadable(Exception):
    """An image Pillow cannot make a thumbnail of; str() says why."""


def _thumb_format() -> tuple[str, str]:
    """(Pillow format, extension): WEBP where Pillow has it, else JPEG."""
    return ("WEBP", "webp") if features.check("webp") else ("JPEG", "jpg")


def _make(source: Path, target: Path, px: int, fmt: str) -> tuple[int, int]:
    """Write a thumbnail of `source` to `target`; return its size in pixels.

    Raises _Unreadable for a bad image, StoreError when `target` cannot be written.
    """
    try:
        with Image.open(source) as image:
            image.draft("RGB", (px, px))  # JPEG: decode at a reduced scale, much faster
            image.thumbnail((px, px), Image.Resampling.LANCZOS)
            alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            mode = "RGBA" if alpha and fmt == "WEBP" else "RGB"
            small = image.convert(mode) if image.mode != mode else image
            buffer = io.BytesIO()
            small.save(buffer, format=fmt, quality=80)
            size = small.size
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise _Unreadable(str(err) or type(err).__name__) from None
    write_atomic(target, buffer.getvalue())
    return size


def _existing(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as image:
            image.verify()
            return image.size
    except (OSError, ValueError, SyntaxError):
        return None


def _in_order(
    pool: ThreadPoolExecutor,
    work: Callable[[_In], _Out],
    values: Iterable[_In],
    *,
    ahead: int,
) -> Iterator[_Out]:
    """`pool.map(work, values)`, with at most `ahead` calls submitted and not yet taken.

    `Executor.map` submits every call at once: a future per image (each with its lock
    and condition), all held until the last is done; for a page of 10,000 thumbnails
    that was half of the 14 MiB they added to the resident set.
    """
    pending: deque[Future[_Out]] = deque()
    for value in values:
        pending.append(pool.submit(work, value))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def make_thumbnails(
    out: Path, images: Sequence[tuple[str, str]], *, px: int = THUMB_PX, workers: int | None = None
) -> tuple[list[Thumb | str], int]:
    """Thumbnails of `images` ((name relative to OUT, sha256 hex) each) under `out`.

    Returns, per image, its Thumb or why it could not be read, and how many
    thumbnails were made now (the others existed). `px` is the longest side
    in pixels. Pillow decodes without holding the GIL, so `workers` threads
    (default: up to 4, one per core) share the work, a few images at a time (each
    image is closed as soon as its thumbnail is written). Raises StoreError when
    the folder cannot be written.
    """
    fmt, ext = _thumb_format()
    folder = out / THUMBS_DIR
    ensure_dir(folder)

    def one(image: tuple[str, str]) -> tuple[Thumb | str, bool]:
        name, sha256 = image
        thumb_name = f"{THUMBS_DIR}/{sha256[:24]}-{px}.{ext}"
        size = _existing(out / thumb_name)
        made = size is None
        if size is None:
            try:
                size = _make(out / name, out / thumb_name, px, fmt)
            except _Unreadable as err:
                return str(err), False
        return Thumb(thumb_name, size[0], size[1]), made

    threads = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(_in_order(pool, one, images, ahead=2 * threads))
    used = {t.name.rsplit("/", 1)[-1] for t, _ in results if isinstance(t, Thumb)}
    for path in folder.iterdir():
        if _THUMB_NAME.match(path.name) and path.name not in used:
            path.unlink(missing_ok=True)
    return [thumb for thumb, _ in results], sum(made for _, made in results)
