"""`runner export`: one row per image from the sidecars, as CSV and JSON Lines."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from reporting_helpers import make_sweep_folder

from runner.cli import main
from runner.export import COLUMNS, export_rows
from runner.store import read_sidecar
from runner.subset import parse_subset


def test_export_has_a_row_per_image_with_its_sidecar_facts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_sweep_folder(tmp_path / "out")
    images = sorted(folder.out.glob("*/*.jpg")) + sorted(folder.out.glob("*/*.png"))
    assert main(["export", str(folder.out), "--jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(images) == len(folder.completed)
    assert [r["job_index"] for r in rows] == sorted(r["job_index"] for r in rows)
    by_file = {r["file"]: r for r in rows}
    for image in images:
        name = image.relative_to(folder.out).as_posix()
        sidecar = read_sidecar(image.with_suffix(".json"))
        row = by_file[name]
        assert row["key"] == sidecar.key and row["sha256"] == sidecar.file.sha256
        assert row["request_id"] == sidecar.request_id and row["vars"] == sidecar.vars
        assert row["params"]["mode"] == sidecar.params.mode
        assert row["wall_s"] == sidecar.timings.wall_s
    assert set(rows[0]) == set(COLUMNS)

    assert main(["export", str(folder.out), "--csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["key"] for r in table] == [r["key"] for r in rows]
    assert json.loads(table[0]["vars"]) == rows[0]["vars"]
    # The per-image credits add up to what the sidecars say the jobs cost.
    assert sum(float(r["credits_usd"]) for r in table) == pytest.approx(
        sum(r["credits_usd"] for r in rows)
    )


def test_export_to_a_file_and_of_a_subset(tmp_path: Path) -> None:
    folder = make_sweep_folder(tmp_path / "out")
    target = tmp_path / "images.csv"
    assert main(["export", str(folder.out), "--csv", "-o", str(target), "--filter", "mug"]) == 0
    table = list(csv.DictReader(target.open()))
    assert table and {r["prompt_id"] for r in table} == {"mug"}
    two = list(export_rows(folder.out, parse_subset(None, 2)))
    assert len({r["key"] for r in two}) == 2


def test_export_needs_a_folder_and_a_format(tmp_path: Path) -> None:
    assert main(["export", str(tmp_path / "nope"), "--csv"]) == 2
    assert main(["export", str(tmp_path)]) == 2  # --csv or --jsonl is required
