"""Crops of detected items: what gets embedded for an item instead of the whole photo.

Two crop types (the Constructor API's ``search_crop_type``):

* ``bbox``: the item's box grown by ``margin`` on each side, clamped to the image;
* ``segment``: the same box with every pixel outside the item's mask replaced by
  :data:`SEGMENT_FILL`, so background and neighbouring items do not leak into the embedding.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image

from .errors import InvalidParameter
from .models.detector import Detection, Detector

CropType = Literal["bbox", "segment"]
CROP_TYPES: tuple[CropType, ...] = ("bbox", "segment")
DEFAULT_MARGIN = 0.05
# The ImageNet mean colour (0.485, 0.456, 0.406) x 255: the embedders normalise around it,
# so the fill reads as "nothing" to them instead of as a bright white or black shape.
SEGMENT_FILL: tuple[int, int, int] = (124, 116, 104)


def check_crop_type(crop_type: str, field: str = "search_crop_type") -> CropType:
    """``crop_type`` when it is one of :data:`CROP_TYPES`.

    Raises:
        InvalidParameter: anything else; the message names ``field`` and the allowed values.
    """
    if crop_type not in CROP_TYPES:
        allowed = " or ".join(f"'{c}'" for c in CROP_TYPES)
        raise InvalidParameter(f"{field}: must be {allowed}, got {crop_type!r}")
    return crop_type  # type: ignore[return-value]


def crop_box(
    bbox: tuple[int, int, int, int], size: tuple[int, int], margin: float = DEFAULT_MARGIN
) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) pixels of ``bbox`` (x, y, width, height) grown by ``margin``
    x its width / height on each side and clamped to an image of ``size`` (width, height)."""
    x, y, w, h = bbox
    dx, dy = round(w * margin), round(h * margin)
    return max(0, x - dx), max(0, y - dy), min(size[0], x + w + dx), min(size[1], y + h + dy)


def crop(
    image: Image.Image,
    detection: Detection,
    crop_type: str = "bbox",
    margin: float = DEFAULT_MARGIN,
    fill: tuple[int, int, int] = SEGMENT_FILL,
) -> Image.Image:
    """The crop of ``detection`` from ``image`` (RGB), an RGB image of the grown box's size.

    Args:
        detection: found in ``image`` (its mask has the image's height and width).
        crop_type: ``bbox`` or ``segment`` (see the module docstring).
        margin: share of the box's width / height added on each side, e.g. 0.05.
        fill: RGB colour of the pixels outside the mask in a ``segment`` crop.

    Raises:
        InvalidParameter: unknown ``crop_type`` (named as ``search_crop_type``).
        ValueError: the mask's shape is not the image's (height, width).
    """
    kind = check_crop_type(crop_type)
    rgb = image.convert("RGB")
    box = crop_box(detection.bbox, rgb.size, margin)
    out = rgb.crop(box)
    if kind == "bbox":
        return out
    if detection.mask.shape != (rgb.height, rgb.width):
        raise ValueError(f"mask shape {detection.mask.shape} does not match the image ({rgb.height}, {rgb.width})")
    inside = detection.mask[box[1] : box[3], box[0] : box[2]]
    pixels = np.array(out)
    pixels[~inside] = fill
    return Image.fromarray(pixels, "RGB")


def main_item_crop(
    image: Image.Image, detector: Detector, crop_type: str = "bbox"
) -> tuple[Image.Image, Detection | None]:
    """The crop of the main item of ``image`` (the detector's first detection) and that
    detection; ``(the whole image as RGB, None)`` when nothing is detected.

    Raises:
        InvalidParameter: unknown ``crop_type``, before the detector runs.
    """
    check_crop_type(crop_type)
    found = detector.detect(image, max_items=1)
    if not found:
        return image.convert("RGB"), None
    return crop(image, found[0], crop_type), found[0]
