"""Item detection: where the items are in a photo (boxes and masks), for item_search.

(The U²-Netp implementation is added below this contract.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Detection:
    """One detected item in an image.

    Attributes:
        bbox: (x, y, width, height) in pixels of the original image, integers, inside it.
        mask: (height, width) bool over the whole original image, True on the item.
        mask_area: number of True pixels of ``mask``.
        score: detector confidence in 0..1.
        label: class name where the detector has one (U²-Netp has none: ``None``).
    """

    bbox: tuple[int, int, int, int]
    mask: np.ndarray
    mask_area: int
    score: float
    label: str | None = None


class Detector(Protocol):
    """Finds the items of an image."""

    model_id: str

    def detect(self, image: Image.Image, max_items: int = 5) -> list[Detection]:
        """Items in ``image`` (RGB), the main item first (largest salient area), at most
        ``max_items``; empty when nothing stands out from the background."""
        ...
