"""Decoding untrusted image bytes into RGB Pillow images.

Accepts JPEG, PNG, WebP and GIF (first frame); applies the EXIF orientation; rejects
oversized inputs before decoding pixels (decompression bombs); decodes large JPEGs at a
reduced size with Pillow's draft mode, since the models need only about 224 px.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidImage, InvalidParameter

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})

# Smallest side kept when JPEG draft mode downsamples by 1/2, 1/4 or 1/8 at decode time.
# 2x the largest model input (260 px for Lite2) keeps resampling quality.
DRAFT_MIN_SIDE = 520


def decode_base64(
    data: str, *, field: str, max_bytes: int, too_large: type[InvalidParameter] = InvalidImage
) -> bytes:
    """Decode a base64 string (optionally a ``data:image/...;base64,`` URL) to bytes.

    Args:
        data: the base64 text.
        field: request field name, used in error messages.
        max_bytes: limit on the decoded size, in bytes.
        too_large: the error raised over ``max_bytes`` (the Constructor face answers 413).

    Raises:
        InvalidImage: empty or not base64; ``too_large`` (default InvalidImage): larger than ``max_bytes``.
    """
    if not isinstance(data, str) or not data.strip():
        raise InvalidImage(f"{field}: must be a non-empty base64 string")
    text = data.strip()
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    # 4 base64 chars carry 3 bytes: reject before allocating a huge buffer.
    if len(text) * 3 // 4 > max_bytes + 3:
        raise too_large(f"{field}: image is larger than the limit of {max_bytes} bytes")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage(f"{field}: is not valid base64") from None
    if len(raw) > max_bytes:
        raise too_large(f"{field}: image is {len(raw)} bytes, larger than the limit of {max_bytes} bytes")
    if not raw:
        raise InvalidImage(f"{field}: decodes to zero bytes")
    return raw


def image_format(data: bytes) -> str | None:
    """The Pillow format name of encoded image bytes (``JPEG``, ``PNG``, ``WEBP``, ``GIF``, ...),
    read from the header only; ``None`` when Pillow does not recognise them."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except Exception:  # noqa: BLE001 - any unreadable header means "unknown"
        return None


def decode_image(data: bytes, *, field: str = "image", max_pixels: int = 50_000_000) -> Image.Image:
    """Decode image bytes to an RGB image.

    Args:
        data: encoded JPEG / PNG / WebP / GIF bytes.
        field: request field name, used in error messages.
        max_pixels: limit on width x height of the encoded image, in pixels.

    Returns:
        An RGB ``PIL.Image.Image``, EXIF orientation applied; large JPEGs come back
        downsampled (shortest side >= ``DRAFT_MIN_SIDE`` pixels).

    Raises:
        InvalidImage: unknown or corrupt format, too many pixels, truncated data.
    """
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidImage(f"{field}: not a decodable image (accepted: JPEG, PNG, WebP, GIF)") from None
    except Exception as exc:  # Pillow raises many types on corrupt headers
        raise InvalidImage(f"{field}: corrupt image header ({type(exc).__name__})") from None
    if image.format not in ACCEPTED_FORMATS:
        raise InvalidImage(f"{field}: format {image.format} is not accepted (accepted: JPEG, PNG, WebP, GIF)")
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"{field}: image has no pixels")
    if width * height > max_pixels:
        raise InvalidImage(
            f"{field}: image is {width}x{height} = {width * height} pixels, above the limit of {max_pixels}"
        )
    try:
        if image.format == "JPEG":
            scale = min(width, height) / DRAFT_MIN_SIDE
            if scale >= 2:
                image.draft("RGB", (max(1, int(width / scale)), max(1, int(height / scale))))
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.seek(0)  # GIF / animated WebP: first frame
            image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            image = _to_rgb(image)
    except InvalidImage:
        raise
    except Exception as exc:
        raise InvalidImage(f"{field}: image data is corrupt or truncated ({type(exc).__name__})") from None
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    # Transparent pixels become white, as they show on a typical product page.
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """Encode an RGB image as JPEG bytes."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
