"""`runner grid OUT --rows AXIS --cols AXIS -o grid.png`: a labelled contact sheet image.

The gallery's page as one picture for a pull-request comment: images laid
out by two axes (a param such as `mode`, a var such as `color`, `prompt` or
`repeat`; the gallery's own axis values, `gallery.axis_values`), with the
axis titles and values in a header band and a left band. A cell shows the
first image of its jobs in expansion order (a ``+k`` badge counts the
others); a cell whose jobs all failed (failed, expired, missing files) is
marked with a cross and the state; a cell no job reached stays empty.

`layout_grid` is pure (entries in, rows, columns and cells out); `render_grid`
draws with Pillow; `write_grid` reads the folder and writes the file
atomically as PNG, JPEG or WebP by its suffix. The sheet is at most
`MAX_WIDTH_PX` wide: cells shrink to fit (down to `MIN_CELL_PX`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, ImageDraw, ImageFont

from runner.errors import UsageError
from runner.params import PARAM_NAMES
from runner.reporting.gallery import GalleryItem, axis_values, collect_items, select_items
from runner.store import write_atomic
from runner.subset import Subset

MAX_WIDTH_PX: Final = 1600
"""The widest sheet (pixels): GitHub shows comment images up to about this width."""

CELL_PX: Final = 256
"""A cell's side (pixels) when the sheet fits."""

MIN_CELL_PX: Final = 64
"""Cells never shrink below this (pixels); a wider grid makes a wider sheet."""

FORMATS: Final = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}

BACKGROUND: Final = (255, 255, 255)
BAND: Final = (36, 41, 47)
BAND_TEXT: Final = (240, 246, 252)
FAILED: Final = (207, 34, 46)
EMPTY: Final = (234, 238, 242)

_FAILED_STATES = frozenset({"failed", "expired", "missing"})
_PAD = 8  # pixels around text and between cells


@dataclass(frozen=True, slots=True)
class Cell:
    """One cell: its first image (path relative to OUT), how many others, or a failure."""

    image: str | None
    others: int
    failed: str | None


@dataclass(frozen=True, slots=True)
class GridLayout:
    """Rows and columns (values in first-seen expansion order) and the cell at each (r, c)."""

    rows_axis: str
    cols_axis: str
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    cells: dict[tuple[int, int], Cell]


@dataclass(frozen=True, slots=True)
class GridSize:
    """The sheet's geometry in pixels."""

    cell: int
    left: int
    top: int
    width: int
    height: int


def axis_id(name: str) -> str:
    """A user's axis name as the gallery's axis id: params, `prompt`, `repeat`, else a var."""
    return name if name in (*PARAM_NAMES, "prompt", "repeat") else f"var:{name}"


def layout_grid(items: Sequence[GalleryItem], rows: str, cols: str) -> GridLayout:
    """Lay `items` (in expansion order) out by the axes `rows` and `cols`. Pure.

    Raises UsageError naming the axes there are when an axis has no value
    on any entry.
    """
    row_id, col_id = axis_id(rows), axis_id(cols)
    placed = [(axis_values(item), item) for item in items]
    for name, ident in ((rows, row_id), (cols, col_id)):
        if not any(ident in values for values, _ in placed):
            known = sorted({a.removeprefix("var:") for values, _ in placed for a in values})
            raise UsageError(
                f"no image or job has the axis `{name}`"
                + (f"; axes here: {', '.join(known)}" if known else "; the folder has no jobs")
            )
    row_values: dict[str, int] = {}
    col_values: dict[str, int] = {}
    images: dict[tuple[int, int], list[str]] = {}
    failures: dict[tuple[int, int], str] = {}
    for values, item in placed:
        if row_id not in values or col_id not in values:
            continue
        r = row_values.setdefault(values[row_id], len(row_values))
        c = col_values.setdefault(values[col_id], len(col_values))
        if item.state == "completed" and item.image is not None:
            images.setdefault((r, c), []).append(item.image)
        elif item.state in _FAILED_STATES:
            failures.setdefault((r, c), item.state)
    cells = {}
    for where in {*images, *failures}:
        shown = images.get(where, [])
        cells[where] = Cell(
            image=shown[0] if shown else None,
            others=max(len(shown) - 1, 0),
            failed=None if shown else failures.get(where),
        )
    return GridLayout(rows, cols, tuple(row_values), tuple(col_values), cells)


def grid_size(layout: GridLayout, *, max_width: int = MAX_WIDTH_PX) -> GridSize:
    """Cell side and bands so the sheet is at most `max_width` wide when cells can shrink."""
    text = _font(14)
    label_w = max((_text_width(text, v) for v in layout.rows), default=0)
    # Long row values (a var's text) are cut: the band takes at most a fifth of the sheet.
    left = min(max(label_w, _text_width(text, layout.rows_axis)) + 3 * _PAD, max_width // 5)
    top = 2 * (14 + 2 * _PAD)  # the axis title line, then the column values
    columns = max(len(layout.cols), 1)
    cell = (max_width - left - _PAD) // columns - _PAD
    cell = max(MIN_CELL_PX, min(CELL_PX, cell))
    width = left + columns * (cell + _PAD) + _PAD
    height = top + max(len(layout.rows), 1) * (cell + _PAD) + _PAD
    return GridSize(cell, left, top, width, height)


def render_grid(out: Path, layout: GridLayout, *, title: str = "") -> Image.Image:
    """Draw the sheet; images are read from `out` (a broken one is drawn as failed)."""
    size = grid_size(layout)
    sheet = Image.new("RGB", (size.width, size.height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font, small = _font(14), _font(12)
    draw.rectangle((0, 0, size.width, size.top - 1), fill=BAND)
    draw.rectangle((0, 0, size.left - 1, size.height), fill=BAND)
    heading = f"rows: {layout.rows_axis}  \u00b7  columns: {layout.cols_axis}"
    heading = f"{title}  -  {heading}" if title else heading
    draw.text((_PAD, _PAD), _fit(heading, font, size.width - 2 * _PAD), font=font, fill=BAND_TEXT)
    for c, value in enumerate(layout.cols):
        x = size.left + _PAD + c * (size.cell + _PAD)
        draw.text(
            (x, size.top // 2 + _PAD // 2),
            _fit(value, small, size.cell),
            font=small,
            fill=BAND_TEXT,
        )
    for r, value in enumerate(layout.rows):
        y = size.top + _PAD + r * (size.cell + _PAD)
        draw.text((_PAD, y), _fit(value, font, size.left - 2 * _PAD), font=font, fill=BAND_TEXT)
    for r in range(len(layout.rows)):
        for c in range(len(layout.cols)):
            x = size.left + _PAD + c * (size.cell + _PAD)
            y = size.top + _PAD + r * (size.cell + _PAD)
            _draw_cell(sheet, out, layout.cells.get((r, c)), (x, y), side=size.cell, font=small)
    return sheet


def write_grid(
    out: Path,
    target: Path,
    *,
    rows: str,
    cols: str,
    subset: Subset | None = None,
    title: str | None = None,
) -> GridLayout:
    """Read `out`, lay out its entries by `rows` x `cols`, write the sheet to `target`.

    The format follows `target`'s suffix (.png, .jpg/.jpeg, .webp). Raises
    UsageError (not a folder, unknown axis, unknown suffix) or StoreError.
    """
    fmt = FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise UsageError(f"-o {target}: name a .png, .jpg or .webp file")
    if not out.is_dir():
        raise UsageError(f"{out} is not a folder; pass the output folder of a run (its --out)")
    layout = layout_grid(select_items(collect_items(out), subset), rows, cols)
    sheet = render_grid(out, layout, title=title if title is not None else out.resolve().name)
    buffer = io.BytesIO()
    sheet.save(buffer, format=fmt, **({"quality": 85} if fmt != "PNG" else {}))
    write_atomic(target, buffer.getvalue())
    return layout


def _draw_cell(
    sheet: Image.Image,
    out: Path,
    cell: Cell | None,
    at: tuple[int, int],
    *,
    side: int,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    draw = ImageDraw.Draw(sheet)
    x, y = at
    box = (x, y, x + side - 1, y + side - 1)
    failed = cell.failed if cell is not None else None
    if cell is not None and cell.image is not None:
        try:
            with Image.open(out / cell.image) as image:
                image.thumbnail((side, side))
                picture = image.convert("RGB")
        except (OSError, ValueError):
            failed = "unreadable"
        else:
            sheet.paste(
                picture, (x + (side - picture.width) // 2, y + (side - picture.height) // 2)
            )
            if cell.others:
                badge = f"+{cell.others}"
                w = _text_width(font, badge) + _PAD
                draw.rectangle((x + side - w - 2, y + 2, x + side - 2, y + 18), fill=BAND)
                draw.text((x + side - w + _PAD // 2 - 2, y + 3), badge, font=font, fill=BAND_TEXT)
            return
    if failed is None:
        draw.rectangle(box, fill=EMPTY)
        return
    draw.rectangle(box, outline=FAILED, width=3)
    draw.line((x, y, x + side - 1, y + side - 1), fill=FAILED, width=2)
    draw.line((x, y + side - 1, x + side - 1, y), fill=FAILED, width=2)
    draw.text((x + _PAD, y + _PAD), failed, font=font, fill=FAILED)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text_width(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def _fit(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> str:
    """`text`, cut with an ellipsis to fit `width` pixels."""
    if _text_width(font, text) <= width:
        return text
    while text and _text_width(font, text + "...") > width:
        text = text[:-1]
    return text + "..."
