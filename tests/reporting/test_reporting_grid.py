"""`runner grid`: a labelled contact sheet with Pillow, decoded back and checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from reporting_helpers import Folder, make_sweep_folder

from runner.cli import main
from runner.errors import UsageError
from runner.reporting.gallery import collect_items
from runner.reporting.grid import (
    BACKGROUND,
    BAND,
    CELL_PX,
    MAX_WIDTH_PX,
    MIN_CELL_PX,
    grid_size,
    layout_grid,
    write_grid,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    return make_sweep_folder(tmp_path_factory.mktemp("grid") / "out")


def test_layout_places_values_in_expansion_order_and_marks_failures(folder: Folder) -> None:
    layout = layout_grid(collect_items(folder.out, jobs=folder.by_key), "prompt", "aspect_ratio")
    assert layout.rows == ("mug", "lighthouse") and layout.cols == ("16:9", "1:1")
    assert all(cell.image is not None for cell in layout.cells.values())
    # Several jobs per cell: the first image is shown, the others are counted.
    assert layout.cells[(0, 0)].others > 0
    by_color = layout_grid(collect_items(folder.out, jobs=folder.by_key), "color", "repeat")
    assert by_color.rows == ("red", "teal") and by_color.cols == ("0", "1")


def test_a_cell_whose_jobs_all_failed_is_marked(folder: Folder) -> None:
    items = collect_items(folder.out, jobs=folder.by_key)
    failed = next(item for item in items if item.state == "failed")
    only = [item for item in items if item.key == failed.key]
    layout = layout_grid(only, "prompt", "mode")
    assert layout.cells[(0, 0)].failed == "failed" and layout.cells[(0, 0)].image is None


def test_an_unknown_axis_names_the_axes_there_are(folder: Folder) -> None:
    with pytest.raises(UsageError, match=r"axes here: .*color"):
        layout_grid(collect_items(folder.out), "colour", "mode")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_the_sheet_decodes_at_its_size_with_a_header_band(
    folder: Folder, tmp_path: Path, suffix: str
) -> None:
    target = tmp_path / f"grid{suffix}"
    code = main(
        ["grid", str(folder.out), "--rows", "prompt", "--cols", "aspect_ratio", "-o", str(target)]
    )
    assert code == 0
    layout = layout_grid(collect_items(folder.out), "prompt", "aspect_ratio")
    size = grid_size(layout)
    with Image.open(target) as sheet:
        sheet.load()
        assert sheet.format == {".png": "PNG", ".jpg": "JPEG", ".webp": "WEBP"}[suffix]
        assert sheet.size == (size.width, size.height)
        rgb = sheet.convert("RGB")
    assert size.width <= MAX_WIDTH_PX and size.cell == CELL_PX
    # The header band is drawn, and differs from the sheet's background.
    band = rgb.getpixel((size.width - 4, 4))
    assert isinstance(band, tuple) and band != BACKGROUND
    assert sum(abs(a - b) for a, b in zip(band, BAND, strict=True)) < 30
    # A cell holds a picture (the demo's images are not the background colour).
    middle = rgb.getpixel((size.left + 8 + size.cell // 2, size.top + 8 + size.cell // 2))
    assert middle != BACKGROUND


def test_many_columns_shrink_the_cells_to_fit_a_comment(folder: Folder, tmp_path: Path) -> None:
    target = tmp_path / "wide.png"
    layout = write_grid(folder.out, target, rows="prompt", cols="surface")
    assert layout.cols == ("an oak table", "white marble")
    items = collect_items(folder.out)
    wide = grid_size(layout_grid(items, "repeat", "color"), max_width=300)
    assert MIN_CELL_PX <= wide.cell < CELL_PX and wide.width <= 300


def test_bad_output_names_and_folders_are_usage_errors(folder: Folder, tmp_path: Path) -> None:
    assert main(["grid", str(folder.out), "--rows", "prompt", "--cols", "mode", "-o", "g.gif"]) == 2
    nope = str(tmp_path / "nope")
    assert main(["grid", nope, "--rows", "prompt", "--cols", "mode", "-o", "g.png"]) == 2
