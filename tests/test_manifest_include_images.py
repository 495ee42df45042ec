"""`images: [a, b, c]` in an `include` entry: a multi-image edit, with a prompt's rules and keys.

An include entry's `images:` is checked by the rule an inline prompt's and a
`prompts_from` line's `images:` follow (runner.manifest.hosting.sources_problem),
and makes the very job (the same key) a prompt with those `images:` makes;
the run sends every source, and the sidecar records them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from whole_runs import MERGE_HEAD, source_images

from runner.emulator import Emulator, EmulatorConfig
from runner.errors import ManifestError
from runner.manifest import parse_manifest
from runner.money import micros
from runner.plan import make_plan
from runner.run import RunOptions, run_manifest
from runner.sweep import expand

# The edit as the prompt's own `images:` ...
OWN = MERGE_HEAD + "    images: [in/a.png, in/b.png, in/c.png]\n"
# ... and as an include entry over a one-image prompt.
INCLUDED = (
    MERGE_HEAD
    + "    image: in/c.png\n"
    + "include:\n  - {prompt: merge, images: [in/a.png, in/b.png, in/c.png]}\n"
)


def test_an_include_entrys_images_make_the_prompts_own_multi_image_job(tmp_path: Path) -> None:
    data = source_images(tmp_path)
    (own,) = expand(parse_manifest(OWN, base_dir=tmp_path))
    single, included = expand(parse_manifest(INCLUDED, base_dir=tmp_path))
    assert included.key == own.key  # the same request: the same job, resumable either way
    shas = [hashlib.sha256(d).hexdigest() for d in data]
    assert [image.sha256 for image in included.request.images] == shas
    assert [image.sha256 for image in single.request.images] == shas[2:]
    # xAI bills the sources: 3 + 1 images for the include's job, 1 + 1 for the prompt's.
    assert make_plan(parse_manifest(INCLUDED, base_dir=tmp_path)).credits == micros(6 * 0.02)
    # A list of one image is `image:` (so the product already has it: nothing added).
    one = INCLUDED.replace("images: [in/a.png, in/b.png, in/c.png]", "images: [in/c.png]")
    assert [j.key for j in expand(parse_manifest(one, base_dir=tmp_path))] == [single.key]
    # The prompt's own sources named again by an include add no copy of its job.
    again = OWN + "include:\n  - {images: [in/a.png, in/b.png, in/c.png]}\n"
    assert [j.key for j in expand(parse_manifest(again, base_dir=tmp_path))] == [own.key]
    # Another order is another edit (<IMAGE_0> is another image).
    other = OWN + "include:\n  - {images: [in/b.png, in/a.png, in/c.png]}\n"
    assert len({j.key for j in expand(parse_manifest(other, base_dir=tmp_path))}) == 2


@pytest.mark.parametrize(
    ("entry", "provider", "expected"),
    [
        (
            "{prompt: merge, image: in/a.png, images: [in/a.png, in/b.png]}",
            "xai",
            r":10:\d+: include\[0\]\.images: `image` and `images` are both set",
        ),
        (
            "{prompt: merge, images: [in/a.png, in/b.png]}",
            "segmind",
            r":10:\d+: include\[0\]\.images: 2 source images for one edit, but Segmind takes at "
            r"most 1 \(api\.provider xai takes up to 3\)",
        ),
        (
            "{prompt: merge, images: [in/a.png, in/b.png, in/c.png, in/a.png]}",
            "xai",
            r"include\[0\]\.images: 4 source images for one edit, but xAI takes at most 3",
        ),
        (
            "{prompt: merge, images: [in/a.png, in/b.png, in/a.png]}",
            "xai",
            r"include\[0\]\.images\[2\]: `images` names `in/a\.png` twice \(items 0 and 2\)",
        ),
        (
            "{prompt: merge, images: [in/a.png, in/gone.png]}",
            "xai",
            r"include\[0\]\.images\[1\]: the image file `in/gone\.png` does not exist",
        ),
        (
            "{prompt: merge, images: in/a.png}",
            "xai",
            r"include\[0\]\.images: `images` takes a list of source images",
        ),
        (
            "{prompt: merge, mode: [standard, quality]}",
            "xai",
            r"include\[0\]\.mode: expected a single value \(text or a number\), got a list",
        ),
    ],
)
def test_an_include_entrys_images_follow_a_prompts_rules(
    tmp_path: Path, entry: str, provider: str, expected: str
) -> None:
    source_images(tmp_path)
    text = MERGE_HEAD.replace("provider: xai", f"provider: {provider}")
    text += f"    image: in/c.png\ninclude:\n  - {entry}\n"
    with pytest.raises(ManifestError, match=expected):
        parse_manifest(text, base_dir=tmp_path)


def test_an_image_named_like_a_list_of_sources_is_refused(tmp_path: Path) -> None:
    data = source_images(tmp_path)
    (tmp_path / "in" / "a.png + in").mkdir()
    (tmp_path / "in" / "a.png + in" / "b.png").write_bytes(data[0])
    text = (
        MERGE_HEAD
        + "    image: in/c.png\ninclude:\n"
        + "  - {prompt: merge, images: [in/a.png, in/b.png]}\n"
        + "  - {prompt: merge, image: in/a.png + in/b.png}\n"
    )
    with pytest.raises(ManifestError, match=r"include\[1\]\.image: .* also names the source"):
        parse_manifest(text, base_dir=tmp_path)


@pytest.mark.anyio
async def test_an_included_multi_image_edit_sends_every_source(tmp_path: Path) -> None:
    data = source_images(tmp_path)
    manifest = parse_manifest(INCLUDED, base_dir=tmp_path)
    out = tmp_path / "out"
    emu = Emulator(EmulatorConfig(utc_offset=1_800_000_000.0))
    options = RunOptions(out=out, backend="local")
    report = await run_manifest(manifest, options, env={}, emulator=emu)
    assert report.counts.get("completed") == 2
    sidecars = [json.loads(p.read_text()) for p in sorted(out.glob("merge/*.json"))]
    sources = sorted(
        [s["params"]["image"]["sha256"], *(m["sha256"] for m in s["params"]["more_images"])]
        for s in sidecars
    )
    shas = [hashlib.sha256(d).hexdigest() for d in data]
    assert sources == sorted([shas, shas[2:]])
