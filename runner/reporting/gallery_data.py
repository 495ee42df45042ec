"""The data the gallery's page reads: its axes, and each entry with its value on each axis.

The axes a user may lay out along rows and columns are the prompt id, each
template var, each request param and the repeat index that take two or
more values; each entry says the index of its value on every axis (``a``),
so the page's script groups by integers (gallery_page.py has the page).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final
from urllib.parse import quote

from runner.params import PARAM_NAMES
from runner.reporting.gallery_items import GalleryItem
from runner.reporting.gallery_page import embed_json
from runner.reporting.jobinfo import key8

_NO_DETAILS: Final = '"d":null}'


def axis_values(item: GalleryItem) -> dict[str, str]:
    """The axis ids of an entry and its value on each: prompt, var:NAME, params, repeat."""
    facts = item.facts
    values = {"prompt": item.prompt_id}
    if facts is None:
        return values
    values.update((f"var:{name}", value) for name, value in facts.vars)
    values.update((name, str(value)) for name, value in facts.params)
    values["repeat"] = str(facts.repeat)
    return values


def _axis_order(items: list[GalleryItem]) -> list[str]:
    """Axis ids: prompt, vars (first seen), swept params (first seen), other params, repeat."""
    order: dict[str, None] = {"prompt": None}
    for item in items:
        if item.facts is not None:
            order.update((f"var:{name}", None) for name, _ in item.facts.vars)
    for item in items:
        if item.facts is not None:
            order.update((name, None) for name, _ in item.facts.sweep if name in PARAM_NAMES)
    order.update((name, None) for name in PARAM_NAMES)
    order["repeat"] = None
    return list(order)


def _url(name: str) -> str:
    return quote(name, safe="/")


def _layout(items: list[GalleryItem], *, title: str, meta: list[tuple[str, str]]) -> Any:
    """The page's data but its items: title, meta, axes with two or more values, the
    default rows and columns.
    """
    values = [axis_values(item) for item in items]
    axes: list[dict[str, Any]] = []
    for axis in _axis_order(items):
        seen = dict.fromkeys(v.get(axis, "") for v in values)
        if len(seen) >= 2:
            label = axis.removeprefix("var:")
            if axis.startswith("var:") and label in (*PARAM_NAMES, "prompt", "repeat"):
                label = f"var {label}"
            axes.append({"id": axis, "label": label, "values": list(seen)})
    swept = {name for item in items if item.facts for name, _ in item.facts.sweep}
    ids = [axis["id"] for axis in axes]
    cols = next((a for a in ids if a in swept), None) or next(
        (a for a in ids if a.startswith("var:")), None
    )
    rest = [a for a in ids if a not in (cols, "repeat")]
    rows = "prompt" if "prompt" in rest else (rest[0] if rest else None)
    if cols is None and rows is not None:
        cols = next((a for a in ids if a not in (rows, "repeat")), None)
    return {"title": title, "meta": meta, "axes": axes, "rows": rows or "", "cols": cols or ""}


def _page_item(
    item: GalleryItem, axes: list[dict[str, Any]], index: list[dict[str, int]]
) -> dict[str, Any]:
    """One entry as the page reads it (`a`: its value's index on each axis)."""
    values = axis_values(item)
    label = item.facts.label() if item.facts else f"job {item.order} [{key8(item.key)}]"
    if item.facts is not None and dict(item.facts.params).get("n", 1) != 1:
        label += f" image {item.image_index + 1}"
    return {
        "k": item.key,
        "s": item.state,
        "i": item.image_index,
        "a": [index[a][values.get(axis["id"], "")] for a, axis in enumerate(axes)],
        "t": _url(item.thumb.name) if item.thumb else None,
        "tw": item.thumb.width if item.thumb else None,
        "th": item.thumb.height if item.thumb else None,
        "f": _url(item.image) if item.image else None,
        "r": item.reason,
        "l": label,
        "p": item.facts.prompt if item.facts else "",
        "d": item.details if item.details_json is None else None,  # last: see _item_json
    }


def _item_json(item: GalleryItem, axes: list[dict[str, Any]], index: list[dict[str, int]]) -> str:
    """`_page_item` as `embed_json` text; details held as text are put in as they are."""
    text = embed_json(_page_item(item, axes, index))
    if item.details_json is None:
        return text
    # "d" comes last and was left null: the text made from the details (by embed_json
    # too) is the very text their place in the whole would have, escapes included.
    assert text.endswith(_NO_DETAILS)
    return f"{text[: -len('null}')]}{item.details_json}}}"


def _indexes(axes: list[dict[str, Any]]) -> list[dict[str, int]]:
    return [{value: i for i, value in enumerate(axis["values"])} for axis in axes]


def page_data(items: list[GalleryItem], *, title: str, meta: list[tuple[str, str]]) -> Any:
    """The JSON the page reads: axes with two or more values, and the items."""
    data = _layout(items, title=title, meta=meta)
    index = _indexes(data["axes"])
    data["items"] = [
        {**_page_item(item, data["axes"], index), "d": item.detail_rows()} for item in items
    ]
    return data


def page_chunks(
    items: list[GalleryItem], *, title: str, meta: list[tuple[str, str]]
) -> Iterator[str]:
    """`page_data` as the page embeds it (gallery_page.embed_json), in pieces: its head,
    then each entry's text, to write one by one (the page's text is never whole in memory).

    Consumes `items` (the list is empty once the pieces are all taken): each entry is
    dropped as its JSON is made, so one entry's text is held at a time, not the page's.
    """
    data = _layout(items, title=title, meta=meta)
    axes, index = data["axes"], _indexes(data["axes"])
    data["items"] = []
    head = embed_json(data)
    empty = '"items":[]}'
    assert head.endswith(empty)  # dict order puts the items last
    items.reverse()
    yield f'{head[: -len(empty)]}"items":['
    if items:
        yield _item_json(items.pop(), axes, index)
    while items:
        yield ","
        yield _item_json(items.pop(), axes, index)
    yield "]}"


def page_json(items: list[GalleryItem], *, title: str, meta: list[tuple[str, str]]) -> str:
    """`page_data` as the page embeds it (gallery_page.embed_json): `page_chunks` joined.

    Consumes `items` (the list is empty after).
    """
    return "".join(page_chunks(items, title=title, meta=meta))
