"""Decoding untrusted image bytes: formats, EXIF orientation, limits, clear errors."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from conftest import encode, photo
from lookalike.errors import InvalidImage
from lookalike.imaging import DRAFT_MIN_SIDE, decode_base64, decode_image


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_accepted_formats_decode_to_rgb(fmt):
    image = decode_image(encode(photo("coffee"), fmt))
    assert image.mode == "RGB" and image.size == (600, 400)


def test_exif_orientation_is_applied():
    src = photo("coffee")  # 600 x 400 landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    data = encode(src, "JPEG", exif=exif.tobytes())
    assert decode_image(data).size == (400, 600)


def test_gif_first_frame():
    red, blue = Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 255))
    buf = io.BytesIO()
    red.save(buf, format="GIF", save_all=True, append_images=[blue])
    assert decode_image(buf.getvalue()).getpixel((5, 5))[0] > 200


def test_transparent_png_on_white():
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    assert decode_image(encode(rgba, "PNG")).getpixel((3, 3)) == (255, 255, 255)


def test_large_jpeg_decodes_at_reduced_size():
    big = photo("retina").resize((4000, 4000))
    image = decode_image(encode(big))
    assert DRAFT_MIN_SIDE <= min(image.size) < 4000


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "not a decodable"),
        (b"plain text, not an image", "not a decodable"),
        (encode(Image.new("RGB", (50, 50)), "BMP"), "not accepted"),
    ],
)
def test_bad_bytes_are_named_errors(data, words):
    with pytest.raises(InvalidImage, match=words):
        decode_image(data, field="image_base64")


def test_truncated_jpeg():
    data = encode(photo("coffee"))
    with pytest.raises(InvalidImage, match="image_base64: image data is corrupt or truncated"):
        decode_image(data[: len(data) // 2], field="image_base64")


def test_pixel_limit():
    with pytest.raises(InvalidImage, match="pixels, above the limit"):
        decode_image(encode(Image.new("RGB", (3000, 3000))), max_pixels=1_000_000)


def test_base64_rules():
    assert decode_base64("data:image/png;base64,aGk=", field="f", max_bytes=10) == b"hi"
    with pytest.raises(InvalidImage, match="f: is not valid base64: character '\\*' at position 1"):
        decode_base64("a*c", field="f", max_bytes=10)
    assert decode_base64("aGk\n", field="f", max_bytes=10) == b"hi"  # whitespace (MIME lines) and no padding
    with pytest.raises(InvalidImage, match="larger than the limit"):
        decode_base64("aGVsbG8gd29ybGQ=", field="f", max_bytes=5)
    with pytest.raises(InvalidImage, match="non-empty"):
        decode_base64("", field="f", max_bytes=5)
