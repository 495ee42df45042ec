"""Input images named by a manifest: a local file, an http(s) URL, or a data URI.

Each becomes a `runner.jobs.ImageInput` whose sha256 stands for the image in
the job key: of the file's bytes (read once, here, at load time), of the
decoded data URI, or of the URL text (the URL is not fetched). Failures raise
ManifestError without a place; the manifest loader adds file, line and field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from runner.errors import ManifestError
from runner.jobs import ImageInput

MAX_IMAGE_BYTES: Final = 20 * 1024 * 1024
"""An input image larger than this (20 MiB) is refused."""

_DATA_URI = re.compile(r"^data:image/(png|jpeg|jpg|webp);base64,(.*)$", re.DOTALL)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_FORMATS = "PNG, JPEG or WebP"


SOURCES_JOIN: Final = " + "
"""Joins the sources of a multi-image edit into the one `image` value that names them."""


def sources_key(sources: Sequence[str]) -> str:
    """The `image` value of an edit of `sources`, in order: a single source is itself
    (so ``images: [a]`` is the job ``image: a`` is), several are joined by " + "."""
    return SOURCES_JOIN.join(sources)


def load_image(source: str, base_dir: Path, roots: Sequence[Path] = ()) -> ImageInput:
    """Resolve one `image:` value of a manifest whose folder is `base_dir`.

    Paths are relative to `base_dir` and must stay inside it or inside one of
    `roots` (the manifest's `input_roots`); the file is read and hashed now,
    so a missing or unreadable file fails at load time.
    """
    text = source.strip()
    if not text:
        raise ManifestError("the image is an empty string", hint="give a path, URL or data URI")
    if text.startswith("data:"):
        return _data_uri(text)
    if _SCHEME.match(text) and not _looks_like_drive(text):
        return _url(text)
    return _file(text, base_dir, roots)


def _looks_like_drive(text: str) -> bool:
    return len(text) > 2 and text[1] == ":" and text[2] in "\\/"


def _url(text: str) -> ImageInput:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ManifestError(
            f"the image URL scheme `{parts.scheme}:` is not supported",
            hint="use an http(s) URL, a data:image/...;base64, URI, or a path next to the manifest",
        )
    if not parts.netloc or any(ch.isspace() for ch in text):
        raise ManifestError(
            f"`{text}` is not a valid URL", hint="write it as https://host/path/image.png"
        )
    return ImageInput(kind="url", source=text, sha256=hashlib.sha256(text.encode()).hexdigest())


def _data_uri(text: str) -> ImageInput:
    match = _DATA_URI.match(text)
    if match is None:
        raise ManifestError(
            "the data URI is not a base64 PNG, JPEG or WebP image",
            hint="write it as data:image/png;base64,<data>",
        )
    payload = "".join(match.group(2).split())
    if len(payload) * 3 // 4 > MAX_IMAGE_BYTES:
        raise ManifestError(
            f"the data URI image is over {MAX_IMAGE_BYTES // (1024 * 1024)} MB",
            hint="use a smaller image",
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ManifestError(
            "the data URI's base64 payload does not decode",
            hint="check that it was not cut or wrapped with other characters",
        ) from None
    _check_format(data, "the data URI")
    # The backend sends `source` as is; `ImageInput.describe` keeps it out of logs.
    return ImageInput(kind="data", source=text, sha256=hashlib.sha256(data).hexdigest())


def resolve_local(text: str, base_dir: Path, roots: Sequence[Path], what: str) -> Path:
    """The file a manifest names by `text`, relative to `base_dir`, checked to stay inside.

    The one path rule for local inputs (images, data files): after symlinks
    the target must be inside the manifest's folder or one of `roots`
    (`input_roots`). `what` names the input in the message ("image", "data file").
    """
    root = base_dir.resolve()
    target = (root / text).resolve()
    allowed = [root, *(r.resolve() for r in roots)]
    if not any(target.is_relative_to(folder) for folder in allowed):
        raise ManifestError(
            f"the {what} path `{text}` leads outside the manifest's folder ({root})",
            hint=f"copy the {what} into the manifest's folder, or name the "
            "folder it is in under `input_roots:`",
        )
    return target


def _file(text: str, base_dir: Path, roots: Sequence[Path]) -> ImageInput:
    target = resolve_local(text, base_dir, roots, "image")
    try:
        # O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer;
        # anything but a regular file is refused before a byte is read.
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError
            if not stat.S_ISREG(mode):
                raise ManifestError(
                    f"the image path `{text}` is not a regular file (a FIFO, socket or device)",
                    hint="name an image file",
                )
            data = handle.read(MAX_IMAGE_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError(
            f"the image file `{text}` does not exist (looked for {target})",
            hint="image paths are relative to the manifest's folder; check the name",
        ) from None
    except IsADirectoryError:
        raise ManifestError(f"the image path `{text}` is a folder, not a file") from None
    except OSError as err:
        raise ManifestError(
            f"cannot read the image file `{text}`: {err.strerror}", hint="check its permissions"
        ) from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ManifestError(
            f"the image file `{text}` is over {MAX_IMAGE_BYTES // (1024 * 1024)} MB",
            hint="resize or recompress it",
        )
    _check_format(data, f"the image file `{text}`")
    return ImageInput(
        kind="path", source=text, sha256=hashlib.sha256(data).hexdigest(), path=str(target)
    )


def _check_format(data: bytes, what: str) -> None:
    png = data.startswith(b"\x89PNG\r\n\x1a\n")
    jpeg = data.startswith(b"\xff\xd8\xff")
    webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if not (png or jpeg or webp):
        raise ManifestError(f"{what} is not a {_FORMATS} image", hint=f"convert it to {_FORMATS}")
