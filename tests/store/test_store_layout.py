"""Safe names and paths: nothing a manifest says can put a file outside OUT."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import job

from runner.errors import UsageError
from runner.naming import MAX_NAME_CHARS, check_name, check_pattern, fold_name, slug
from runner.store.layout import (
    contained,
    image_path,
    input_image_path,
    relative_name,
    sidecar_path,
)

BAD_NAMES = [
    ("../x", "starts with a dot"),
    ("x/../y", "'/'"),
    ("..", "relative folder"),
    (".", "relative folder"),
    ("/etc/passwd", "'/'"),
    ("C:evil", "':'"),
    ("a\\b", "'\\\\'"),
    ("CON", "reserved"),
    ("con", "reserved"),
    ("CON.png", "reserved"),
    ("com1.tar.gz", "reserved"),
    ("LPT9", "reserved"),
    ("nul", "reserved"),
    ("\u202eevil", "U+202E"),
    ("fox\u202egpj.exe", "U+202E"),
    ("a\u2066b", "U+2066"),
    ("a\x00b", "U+0000"),
    ("a\nb", "U+000A"),
    ("\u200bzero", "U+200B"),
    (".hidden", "starts with a dot"),
    ("trailing.", "ends with a dot"),
    ("space ", "ends with a dot or a space"),
    ("two words", "' '"),
    ("", "empty"),
    ("x" * (MAX_NAME_CHARS + 1), "characters long"),
    ("\u732b" * 64 + "\u732b" * 10, "characters long"),
]


@pytest.mark.parametrize(("value", "why"), BAD_NAMES)
def test_unsafe_names_are_refused_with_the_value_and_the_fix(value: str, why: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_name(value, field="prompts[3].id")
    message = str(caught.value)
    assert message.startswith("prompts[3].id: ")
    assert why in message
    assert "Choose a name of letters, digits" in message
    # Control and bidi characters are shown escaped, never raw in a terminal.
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in message)


@pytest.mark.parametrize(
    "value", ["leopard", "sky-edit", "v1.2_final", "caf\u00e9", "\u732b", "x" * MAX_NAME_CHARS]
)
def test_safe_names_pass_unchanged(value: str) -> None:
    assert check_name(value, field="id") == value


def test_names_are_nfc_so_equal_looking_ids_share_a_folder(tmp_path: Path) -> None:
    nfd, nfc = "cafe\u0301", "caf\u00e9"
    assert nfd != nfc
    assert check_name(nfd, field="id") == check_name(nfc, field="id") == nfc
    one = image_path(tmp_path, job(prompt_id=nfd), 0)
    two = image_path(tmp_path, job(prompt_id=nfc), 0)
    assert one.parent == two.parent == tmp_path.resolve() / nfc


def test_utf8_byte_length_is_capped_too() -> None:
    # 60 four-byte characters: under the character cap, over the byte cap.
    with pytest.raises(UsageError, match="bytes long"):
        check_name("\U0001d400" * 60, field="id")


def test_default_layout(tmp_path: Path) -> None:
    the_job = job(prompt_id="leopard", n=2, output_format="jpeg")
    first = image_path(tmp_path, the_job, 0)
    second = image_path(tmp_path, the_job, 1)
    stem = f"a-red-fox-in-the-snow-golden-hour-{the_job.key8}"
    assert first == tmp_path.resolve() / "leopard" / f"{stem}-0.jpg"
    assert second.name == f"{stem}-1.jpg"
    assert sidecar_path(first) == first.with_name(f"{stem}-0.json")
    assert relative_name(tmp_path, first) == f"leopard/{stem}-0.jpg"
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        image_path(tmp_path, the_job, 2)


def test_slug_from_sweep_values() -> None:
    swept = job(sweep=(("mode", "quality"), ("aspect_ratio", "1:1"), ("resolution", "2k")))
    assert slug(swept) == "quality-1x1-2k"
    assert slug(job(sweep=(("aspect_ratio", "19.5:9"), ("n", 2)))) == "19-5x9-2"


def test_slug_from_a_long_prompt_is_cut_at_a_word() -> None:
    text = (
        "A majestic snow leopard perched on a rocky cliff at dawn, golden sunlight, "
        "ultra-detailed wildlife photography"
    )
    made = slug(job(prompt=text))
    assert made == "a-majestic-snow-leopard-perched-on-a-rocky-cliff"
    assert len(made) <= 48


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Cr\u00e8me Br\u00fbl\u00e9e", "creme-brulee"),
        ("16:9", "16x9"),
        ("Photo: a cat", "photo-a-cat"),
        ("../../etc/passwd", "etc-passwd"),
        ("\u732b\u732b", "x"),
        ("", "x"),
        ("con", "con_"),
        ("COM1", "com1_"),
        ("y" * 60, "y" * 48),
    ],
)
def test_fold_name(text: str, folded: str) -> None:
    assert fold_name(text) == folded


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_folded_names_are_always_safe(text: str) -> None:
    folded = fold_name(text)
    assert re.fullmatch(r"[a-z0-9-]+_?", folded)
    assert len(folded) <= 49
    assert check_name(folded, field="x") == folded


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=80))
def test_a_checked_name_never_leaves_its_folder(text: str) -> None:
    out = Path("/nonexistent-out-root")
    try:
        name = check_name(text, field="id")
    except UsageError:
        return
    assert "/" not in name and "\\" not in name
    assert contained(out, name, what="x").parent == out


def test_bad_prompt_id_is_refused_when_the_path_is_made(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="prompt id of job 0"):
        image_path(tmp_path, job(prompt_id="../evil"), 0)
    assert list(tmp_path.iterdir()) == []


def test_every_image_of_every_job_gets_its_own_path(tmp_path: Path) -> None:
    paths: set[Path] = set()
    for index, mode in enumerate(["standard", "quality"]):
        for ratio in ["16:9", "1:1"]:
            for repeat in range(2):
                the_job = job(
                    n=4,
                    mode=mode,
                    aspect_ratio=ratio,
                    sweep=(("mode", mode), ("aspect_ratio", ratio)),
                    index=index,
                    repeat=repeat,
                )
                paths.update(image_path(tmp_path, the_job, i) for i in range(4))
    assert len(paths) == 2 * 2 * 2 * 4


def test_a_pattern_with_params_and_vars(tmp_path: Path) -> None:
    the_job = job(vars=(("color", "Deep Red/../x"),), aspect_ratio="16:9", mode="quality")
    path = image_path(tmp_path, the_job, 0, "{mode}/{aspect_ratio}/{color}-{key8}-{i}")
    assert path == tmp_path.resolve() / "quality" / "16x9" / f"deep-red-x-{the_job.key8}-0.png"
    other = image_path(tmp_path, the_job, 0, "{index}_{repeat}_n{n}_{output_format}.{key8}-{i}")
    assert other == tmp_path.resolve() / f"0_0_n1_png.{the_job.key8}-0.png"


@pytest.mark.parametrize(
    ("pattern", "match"),
    [
        ("{prompt_id}/{key8}", r"lacks \{i\}"),
        ("{nope}-{key8}-{i}", r"unknown placeholder \{nope\}"),
        ("{key8.__class__}-{i}", "not allowed"),
        ("{key8!r}-{i}", "not allowed"),
        ("{key8:>20}-{i}", "not allowed"),
        ("{key8}-{i", "not a valid template"),
        ("../{key8}-{i}", "relative folder"),
        ("/abs/{key8}-{i}", "relative template"),
        ("a\\{key8}-{i}", "relative template"),
        ("{prompt_id}/.{key8}-{i}", "starts with a dot"),
        ("CON/{key8}-{i}", "reserved"),
        ("C:{key8}-{i}", "':'"),
    ],
)
def test_bad_patterns_are_refused(pattern: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        check_pattern(pattern)


def test_a_pattern_may_name_template_vars_it_is_told_about() -> None:
    check_pattern("{color}/{key8}-{i}", var_names=["color"])
    with pytest.raises(UsageError, match=r"unknown placeholder \{color\}"):
        check_pattern("{color}/{key8}-{i}")


def test_contained_refuses_escapes(tmp_path: Path) -> None:
    for bad in ["../x.png", "/etc/passwd", "C:evil", "C:\\evil", "a/../../x"]:
        with pytest.raises(UsageError, match="output path"):
            contained(tmp_path, bad, what="output path")
    assert contained(tmp_path, "a/./b.png", what="x") == tmp_path.resolve() / "a" / "b.png"


def test_contained_follows_symlinks_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "fox").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UsageError, match="leads outside"):
        contained(out, "fox/image.png", what="output path")


def test_input_images_come_from_the_manifest_folder_or_allowed_roots(tmp_path: Path) -> None:
    base = tmp_path / "manifests"
    shared = tmp_path / "shared"
    (base / "inputs").mkdir(parents=True)
    shared.mkdir()
    assert input_image_path("inputs/beach.jpg", base=base) == base / "inputs" / "beach.jpg"
    with pytest.raises(UsageError, match="outside the manifest's folder"):
        input_image_path("../shared/a.png", base=base)
    with pytest.raises(UsageError, match="allow its folder explicitly"):
        input_image_path("/etc/passwd", base=base)
    allowed = input_image_path("../shared/a.png", base=base, roots=[shared])
    assert allowed == shared / "a.png"
