"""Loading manifests: the broken-manifest corpus, the YAML rules, images, defaults."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

from runner.errors import ManifestError, UsageError
from runner.manifest import Manifest, load_manifest, parse_manifest
from runner.manifest.images import MAX_IMAGE_BYTES
from runner.manifest.source import MAX_MANIFEST_BYTES
from runner.params import API_DEFAULTS, DEFAULT_PRICES

ROOT = Path(__file__).resolve().parent.parent
BAD = Path(__file__).resolve().parent / "manifests_bad"
BEACH = ROOT / "manifests" / "inputs" / "beach.jpg"
CASES = sorted(BAD.glob("*.yaml"))


def _expected(path: Path) -> list[str]:
    """The `# expect: a | b | c` line of a corpus file: fragments the message must hold."""
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            return [part.strip() for part in line[len("# expect:") :].split("|")]
    raise AssertionError(f"{path.name} has no `# expect:` line")


def _load(tmp_path: Path, text: str) -> Manifest:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return load_manifest(path)


def _fails(tmp_path: Path, text: str) -> str:
    with pytest.raises(ManifestError) as caught:
        _load(tmp_path, text)
    return str(caught.value)


MINIMAL = "name: t\nprompts:\n  - id: a\n    prompt: a cat\n"


# -- the corpus of broken manifests


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_broken_manifest_names_place_and_fix(case: Path) -> None:
    fragments = _expected(case)
    with pytest.raises(ManifestError) as caught:
        load_manifest(case)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    # The place comes first, as file:line[:column]; a hint in parentheses says what to do.
    assert message.startswith(str(case)), message
    assert "Traceback" not in message
    assert caught.value.hint, "every corpus error says how to fix it"
    assert isinstance(caught.value, UsageError)  # exit code 2


def test_every_corpus_file_fails_in_its_own_way() -> None:
    messages = set()
    for case in CASES:
        with pytest.raises(ManifestError) as caught:
            load_manifest(case)
        messages.add((caught.value.field, caught.value.message))
    assert len(messages) == len(CASES)


# -- file-level limits


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"nope\.yaml: no such file"):
        load_manifest(tmp_path / "nope.yaml")


def test_a_folder_is_not_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="is a folder"):
        load_manifest(tmp_path)


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    assert "the manifest is empty" in _fails(tmp_path, "")


def test_manifest_over_10_mb_is_refused_before_parsing(tmp_path: Path) -> None:
    # Invalid YAML past the first line: a parse would fail with another message.
    text = MINIMAL + "# " + "x" * MAX_MANIFEST_BYTES + "\n: : [\n"
    message = _fails(tmp_path, text)
    assert "over the 10 MB limit" in message
    assert "not valid YAML" not in message


def test_non_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_manifest(path)


def test_alias_bomb_is_cheap(tmp_path: Path) -> None:
    # Nine levels of nine aliases: 9**9 strings if expanded. Walked once per node,
    # and refused for its expanded size before anything is built from it.
    bomb = "&a0 [x, x, x, x, x, x, x, x, x]"
    for i in range(1, 9):
        bomb = f"&a{i} [{bomb}, " + ", ".join([f"*a{i - 1}"] * 8) + "]"
    text = f"name: t\nprompts:\n  - id: a\n    prompt: a {{x}}\n    vars:\n      x: {bomb}\n"
    message = _fails(tmp_path, text)
    assert "with its YAML aliases expanded the manifest is 387,42" in message
    # Small aliases stay fine: the same nesting three levels deep is 729 characters.
    small = "&a0 [x, x, x, x, x, x, x, x, x]"
    for i in range(1, 3):
        small = f"&a{i} [{small}, " + ", ".join([f"*a{i - 1}"] * 8) + "]"
    text = f"name: t\nprompts:\n  - id: a\n    prompt: a {{x}}\n    vars:\n      x: {small}\n"
    assert "expected a single value" in _fails(tmp_path, text)


def test_every_problem_is_reported_at_its_place(tmp_path: Path) -> None:
    text = "name: t\nprompts:\n  - id: a\n    prompt: a cat\nrepeat: 0\nbudget: {rate_scope: x}\n"
    lines = _fails(tmp_path, text).splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("(an integer) (use 1 or more)") and ":5:9: repeat:" in lines[0]
    assert ":6:22: budget.rate_scope: expected 'submit' or 'all'" in lines[1]


# -- YAML 1.2 scalars


def test_unquoted_ratios_are_text_not_base_60(tmp_path: Path) -> None:
    text = MINIMAL + "sweep:\n  aspect_ratio: [16:9, 1:1, 9:19.5]\n"
    manifest = _load(tmp_path, text)
    assert manifest.sweep[0].values == (("16:9",), ("1:1",), ("9:19.5",))


def test_yaml_11_words_stay_text(tmp_path: Path) -> None:
    text = (
        "name: t\nprompts:\n  - id: '2024-01-01'\n    prompt: say {w} {d}\n"
        "    vars:\n      w: [yes, no, on, off]\n      d: [2024-01-01, 010]\n"
    )
    prompt = _load(tmp_path, text).prompts[0]
    assert prompt.id == "2024-01-01"
    assert prompt.vars[0].values == (("yes",), ("no",), ("on",), ("off",))
    assert prompt.vars[1].values == (("2024-01-01",), ("10",))


def test_merge_keys_may_override(tmp_path: Path) -> None:
    text = (
        "name: t\nbase: &base {mode: quality, n: 2}\n"
        "prompts:\n  - id: a\n    prompt: a cat\n    params:\n      <<: *base\n      n: 3\n"
    )
    # `base` is not a manifest key: the merge works, the stray key is reported.
    assert "unknown key `base`" in _fails(tmp_path, text)
    text = text.replace("name: t\nbase: &base {mode: quality, n: 2}\n", "name: t\n")
    text = text.replace("<<: *base", "<<: {mode: quality, n: 2}")
    params = _load(tmp_path, text).prompts[0].base
    assert (params["mode"], params["n"]) == ("quality", 3)


# -- values and defaults


def test_param_resolution_order(tmp_path: Path) -> None:
    text = (
        "name: t\ndefaults: {mode: quality, n: 2}\nprompts:\n"
        "  - id: a\n    prompt: a cat\n    params: {n: 3}\n  - id: b\n    prompt: a dog\n"
    )
    a, b = _load(tmp_path, text).prompts
    assert dict(a.base) == {**API_DEFAULTS, "image": None, "mode": "quality", "n": 3}
    assert dict(b.base) == {**API_DEFAULTS, "image": None, "mode": "quality", "n": 2}


def test_section_defaults(tmp_path: Path) -> None:
    manifest = _load(tmp_path, MINIMAL)
    assert manifest.model == "grok-imagine-image"
    assert manifest.api.endpoint == "v2" and manifest.api.base_url is None
    assert manifest.repeat == 1
    assert manifest.budget.requests_per_minute == 5
    assert manifest.budget.rate_scope == "submit"
    assert manifest.budget.max_in_flight == "auto"
    assert manifest.budget.max_credits is None
    assert manifest.output.dir == "outputs/t" and manifest.output.pattern is None
    assert manifest.prices == DEFAULT_PRICES
    assert manifest.sha256 == hashlib.sha256(MINIMAL.encode()).hexdigest()


def test_prices_override_one_cell(tmp_path: Path) -> None:
    manifest = _load(tmp_path, MINIMAL + "prices:\n  quality: {2k: 0.08}\n")
    assert manifest.prices["quality"]["2k"] == 0.08
    assert manifest.prices["quality"]["1k"] == DEFAULT_PRICES["quality"]["1k"]


def test_api_base_url_loses_version_suffix(tmp_path: Path) -> None:
    text = MINIMAL + "api:\n  base_url: https://staging.example.com/v1/\n  endpoint: v1\n"
    manifest = _load(tmp_path, text)
    assert manifest.api.base_url == "https://staging.example.com"
    assert manifest.api.endpoint == "v1"


def test_bad_base_url(tmp_path: Path) -> None:
    message = _fails(tmp_path, MINIMAL + "api: {base_url: api.segmind.com}\n")
    assert "api.base_url" in message and "https://api.segmind.com" in message


def test_max_in_flight_accepts_int_or_auto(tmp_path: Path) -> None:
    assert _load(tmp_path, MINIMAL + "budget: {max_in_flight: 4}\n").budget.max_in_flight == 4
    assert "positive integer or `auto`" in _fails(
        tmp_path, MINIMAL + "budget: {max_in_flight: 0}\n"
    )


def test_integer_id_must_be_quoted(tmp_path: Path) -> None:
    message = _fails(tmp_path, "name: t\nprompts:\n  - id: 7\n    prompt: a cat\n")
    assert "prompts[0].id" in message and 'quote it: "7"' in message


def test_literal_braces_are_allowed(tmp_path: Path) -> None:
    text = 'name: t\nprompts:\n  - id: a\n    prompt: "a {{curly}} {x}"\n    vars: {x: [1, 2.5]}\n'
    prompt = _load(tmp_path, text).prompts[0]
    assert prompt.render({"x": "1"}) == "a {curly} 1"
    assert prompt.vars[0].values == (("1",), ("2.5",))


def test_output_pattern_is_kept(tmp_path: Path) -> None:
    text = MINIMAL + "output:\n  dir: out\n  pattern: '{prompt_id}/{mode}-{key8}-{i}'\n"
    output = _load(tmp_path, text).output
    assert (output.dir, output.pattern) == ("out", "{prompt_id}/{mode}-{key8}-{i}")
    assert "'..' cannot be used" in _fails(
        tmp_path, MINIMAL + "output: {pattern: '../{key8}-{i}'}\n"
    )


def test_output_pattern_vars_must_belong_to_every_prompt(tmp_path: Path) -> None:
    text = (
        "name: t\nprompts:\n  - id: mug\n    prompt: a {color} mug\n    vars: {color: [red]}\n"
        "output: {pattern: '{color}/{key8}-{i}'}\n"
    )
    assert _load(tmp_path, text).output.pattern == "{color}/{key8}-{i}"
    both = text.replace("output:", "  - id: cat\n    prompt: a cat\noutput:")
    message = _fails(tmp_path, both)
    assert "output.pattern" in message and "{color}" in message and "prompt `cat`" in message


def test_include_value_is_validated_like_a_param(tmp_path: Path) -> None:
    message = _fails(tmp_path, MINIMAL + "include:\n  - {n: 7}\n")
    assert "include[0].n" in message and "allowed: 1..4" in message


def test_include_needs_a_prompt_with_its_vars(tmp_path: Path) -> None:
    text = (
        "name: t\nprompts:\n  - id: a\n    prompt: a {x}\n    vars: {x: [1]}\n"
        "  - id: b\n    prompt: b {y}\n    vars: {y: [1]}\ninclude:\n  - {x: 2, y: 2}\n"
    )
    assert "no prompt declares all the vars" in _fails(tmp_path, text)


# -- input images


def test_image_path_is_read_and_hashed(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "b.jpg").write_bytes(BEACH.read_bytes())
    text = "name: t\nprompts:\n  - id: a\n    prompt: edit\n    image: in/b.jpg\n"
    image = _load(tmp_path, text).images["in/b.jpg"]
    assert image.kind == "path"
    assert image.sha256 == hashlib.sha256(BEACH.read_bytes()).hexdigest()
    assert image.path == str((tmp_path / "in" / "b.jpg").resolve())


def test_image_url_and_data_uri(tmp_path: Path) -> None:
    data = base64.b64encode(BEACH.read_bytes()).decode()
    text = (
        "name: t\nprompts:\n  - id: a\n    prompt: edit\nsweep:\n  image:\n"
        "    - https://example.com/cat.png\n"
        f"    - data:image/jpeg;base64,{data}\n"
    )
    images = _load(tmp_path, text).images
    url = images["https://example.com/cat.png"]
    assert url.kind == "url"
    assert url.sha256 == hashlib.sha256(b"https://example.com/cat.png").hexdigest()
    uri = images[f"data:image/jpeg;base64,{data}"]
    assert uri.kind == "data"
    assert uri.sha256 == hashlib.sha256(BEACH.read_bytes()).hexdigest()
    assert data not in uri.describe()


def test_image_over_20_mb_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n")
        handle.truncate(MAX_IMAGE_BYTES + 1)
    text = "name: t\nprompts:\n  - id: a\n    prompt: edit\n    image: big.png\n"
    message = _fails(tmp_path, text)
    assert "prompts[0].image" in message and "over 20 MB" in message


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "link.jpg").symlink_to(BEACH)
    path = tmp_path / "m" / "m.yaml"
    path.write_text("name: t\nprompts:\n  - id: a\n    prompt: edit\n    image: link.jpg\n")
    with pytest.raises(ManifestError, match="leads outside the manifest's folder"):
        load_manifest(path)


def test_input_roots_allow_another_folder_explicitly(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "beach.jpg").write_bytes(BEACH.read_bytes())
    path = tmp_path / "m" / "m.yaml"
    text = "name: t\nprompts:\n  - id: a\n    prompt: edit\n    image: ../pics/beach.jpg\n"
    path.write_text(text)
    with pytest.raises(ManifestError, match="input_roots"):
        load_manifest(path)
    path.write_text(text + "input_roots: [../pics]\n")
    manifest = load_manifest(path)
    (image,) = manifest.images.values()
    assert image.path == str((tmp_path / "pics" / "beach.jpg").resolve())


def test_parse_manifest_without_a_file() -> None:
    manifest = parse_manifest(MINIMAL, path="inline.yaml")
    assert manifest.path == "inline.yaml"
    with pytest.raises(ManifestError, match=r"^inline\.yaml:5:9: repeat:"):
        parse_manifest(MINIMAL + "repeat: -1\n", path="inline.yaml")


def test_the_examples_load() -> None:
    for name in ("example.yaml", "sweep-demo.yaml"):
        manifest = load_manifest(ROOT / "manifests" / name)
        assert manifest.prompts
        assert re.fullmatch(r"outputs/[a-z-]+", manifest.output.dir)
