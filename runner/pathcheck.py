"""Whether a path the user gave can name a file or folder at all, before anything is made.

A NUL byte, or a component longer than the file system takes, makes Python
raise (ValueError, or OSError ENAMETOOLONG) from deep inside the first
`mkdir` or `open`; checked here instead, a manifest's `output.dir` is refused
at load time with its file:line, and a command-line path with a usage error.
"""

from __future__ import annotations

import os
from typing import Final

# Bytes (UTF-8) in one path component: 255 on ext4, XFS, btrfs, APFS and NTFS (in UTF-16 units).
MAX_COMPONENT_BYTES: Final = 255
# Bytes in a whole path: Linux's PATH_MAX.
MAX_PATH_BYTES: Final = 4096


def path_problem(text: str) -> str | None:
    """What makes `text` unusable as a path (None: nothing; it may still not exist)."""
    if "\x00" in text:
        return "it contains a NUL byte, which no file name can hold"
    try:
        encoded = os.fsencode(text)
    except UnicodeError:
        return "it holds characters the file system cannot encode"
    if len(encoded) > MAX_PATH_BYTES:
        return f"it is {len(encoded):,} bytes long, above the {MAX_PATH_BYTES:,} a path may be"
    for part in encoded.replace(b"\\", b"/").split(b"/"):
        if len(part) > MAX_COMPONENT_BYTES:
            shown = os.fsdecode(part[:24])
            return (
                f"its component `{shown}...` is {len(part)} bytes long, above the "
                f"{MAX_COMPONENT_BYTES} a file or folder name may be"
            )
    return None
