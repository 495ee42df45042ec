"""The gallery's page: one static HTML file with its CSS, script and data inline.

The CSS, the script and the body's markup are package files in ``assets/``
(gallery.css, gallery.js, gallery.html), inlined here when a page is written.

It works from ``file://`` with no server and no network: a Content
Security Policy lets the page load nothing but images under its own folder,
and run nothing but its own script and style (allowed by their sha256).

Safety with user text (prompts, reasons): the data is embedded as JSON in a
``<script type="application/json">`` with ``<``, ``>``, ``&`` and the two
JavaScript line separators escaped, so no text can close the element; the
script builds every node with ``textContent`` and ``setAttribute``, never
``innerHTML``.

The data (`page_data` in gallery.py): ``axes`` (id, label, values), and
``items``, each with ``a``: the index of its value on every axis, so the
script groups by integers. Layout work is O(items + rows + columns): cells
are placed on a CSS grid by row and column number, and empty cells are
drawn only when the grid is small.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from functools import cache
from importlib.resources import files
from typing import Any, Final

ASSETS: Final = "assets"
"""The page's own files, beside this module: gallery.css, gallery.js, gallery.html (the body)."""


@cache
def _asset(name: str) -> str:
    """The text of one of the page's files (read once per process)."""
    return (files("runner.reporting") / ASSETS / name).read_text(encoding="utf-8")


def _sha256_source(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def embed_json(value: Any) -> str:
    """JSON text safe inside a ``<script type="application/json">`` element.

    ``<``, ``>`` and ``&`` become ``\\u003c`` etc. (so no ``</script>`` or
    ``<!--`` can appear), as do U+2028 and U+2029; ``JSON.parse`` reads them back.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        if char in text:  # a page of 10,000 entries is ~11 MB: copy it only when needed
            text = text.replace(char, escape)
    return text


def render_page(title: str, data: Any) -> str:
    """The whole gallery.html for `data` (see the module docstring), titled `title`."""
    return render_embedded(title, embed_json(data))


def render_embedded(title: str, data_json: str) -> str:
    """The whole gallery.html for data already made safe by `embed_json`, titled `title`."""
    before, after = page_frame(title)
    return f"{before}{data_json}{after}"


def page_frame(title: str) -> tuple[str, str]:
    """The text of gallery.html before and after its data (made safe by `embed_json`),
    titled `title`: so a page can be written piece by piece, its data never whole in memory.
    """
    # Each element's text starts on its own line; the CSP hashes that exact text.
    style = "\n" + _asset("gallery.css")
    script = "\n" + _asset("gallery.js")
    body = _asset("gallery.html")  # ends with its newline
    policy = "; ".join(
        [
            "default-src 'none'",
            "img-src 'self' file: data:",
            f"style-src {_sha256_source(style)}",
            f"script-src {_sha256_source(script)}",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    before = (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(policy)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>{style}</style>\n"
        "</head>\n<body>\n"
        f"{body}"
        '<script type="application/json" id="gallery-data">'
    )
    after = f"</script>\n<script>{script}</script>\n</body>\n</html>\n"
    return before, after
