"""Downloaded bytes: right format and size, whole, and never a decompression bomb."""

from __future__ import annotations

import hashlib

import pytest
from store_helpers import SMALL, encode, handmade_png

from runner.errors import DownloadError
from runner.store.media import check_image, inspect_image, sniff_format

FORMATS = ["png", "jpeg", "webp"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_good_image_is_described(fmt: str) -> None:
    data = encode(fmt)
    info = check_image(data, expected_format=fmt, expected_size=SMALL)
    assert (info.format, info.width, info.height) == (fmt, *SMALL)
    assert info.bytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert sniff_format(data) == fmt


def test_a_2k_image_passes() -> None:
    # The size the API makes for 16:9 at 2k; the checks read headers and CRCs only.
    data = encode("png", (2816, 1536))
    info = check_image(data, expected_format="png", expected_size=(2816, 1536))
    assert (info.width, info.height) == (2816, 1536)


def test_a_png_bomb_is_refused_without_decoding() -> None:
    bomb = handmade_png(100_000, 100_000)
    assert len(bomb) < 100
    with pytest.raises(DownloadError, match="decompression bomb") as caught:
        check_image(bomb, expected_format="png", expected_size=None)
    assert caught.value.retryable is False


def test_a_size_under_pillows_limit_but_over_ours_is_refused() -> None:
    with pytest.raises(DownloadError, match="declares 9000x9000 pixels") as caught:
        inspect_image(handmade_png(9000, 9000), max_pixels=8192 * 8192)
    assert caught.value.retryable is False
    with pytest.raises(DownloadError, match="above the cap of 1000"):
        check_image(encode("png"), expected_format="png", expected_size=None, max_pixels=1000)


def test_a_jpeg_bomb_is_refused_too() -> None:
    data = bytearray(encode("jpeg"))
    sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    data[sof + 5 : sof + 9] = (65000).to_bytes(2, "big") + (65000).to_bytes(2, "big")
    with pytest.raises(DownloadError, match="decompression bomb") as caught:
        check_image(bytes(data), expected_format="jpeg", expected_size=None)
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("fmt", "cut"),
    [("png", 0.5), ("png", -3), ("jpeg", 0.6), ("jpeg", -1), ("webp", 0.5), ("webp", -2)],
)
def test_truncated_downloads_are_retryable(fmt: str, cut: float) -> None:
    data = encode(fmt)
    end = int(len(data) * cut) if cut > 0 else len(data) + int(cut)
    with pytest.raises(DownloadError) as caught:
        check_image(data[:end], expected_format=fmt, expected_size=SMALL)
    assert caught.value.retryable is True
    assert "truncated" in str(caught.value) or "corrupt" in str(caught.value)


def test_a_flipped_byte_in_a_png_is_caught_by_its_crc() -> None:
    data = bytearray(encode("png"))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(DownloadError, match="bad CRC") as caught:
        check_image(bytes(data), expected_format="png", expected_size=SMALL)
    assert caught.value.retryable is True


def test_bytes_after_the_end_of_a_webp_are_corruption() -> None:
    with pytest.raises(DownloadError, match="after its RIFF end") as caught:
        inspect_image(encode("webp") + b"junk")
    assert caught.value.retryable is True


@pytest.mark.parametrize("data", [b"", b"<html>Bad gateway</html>", b"\x89PN"])
def test_what_is_not_an_image_is_retryable(data: bytes) -> None:
    with pytest.raises(DownloadError, match="not a PNG, JPEG or WEBP") as caught:
        check_image(data, expected_format="png", expected_size=None)
    assert caught.value.retryable is True


def test_the_wrong_format_is_final() -> None:
    with pytest.raises(DownloadError, match="asked for jpeg but the image is png") as caught:
        check_image(encode("png"), expected_format="jpeg", expected_size=SMALL)
    assert caught.value.retryable is False


def test_the_wrong_size_is_final() -> None:
    with pytest.raises(DownloadError, match="asked for 1024x1024 pixels but the image is 64x48"):
        check_image(encode("webp"), expected_format="webp", expected_size=(1024, 1024))


def test_too_many_bytes_are_refused_before_anything_else() -> None:
    with pytest.raises(DownloadError, match="above the cap of 100 bytes") as caught:
        check_image(encode("png"), expected_format="png", expected_size=None, max_bytes=100)
    assert caught.value.retryable is False
