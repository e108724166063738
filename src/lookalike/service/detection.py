"""The item detector as the services use it: a lazy provider, the crop types, the main item.

Only ``item_search`` work and segmented queries need the detector, so it is loaded on the
first request that does (about 0.3 s per image on 2 cores); a missing model then fails
those requests alone with ``ModelUnavailable`` (HTTP 400), never the whole server.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

from ..errors import InvalidParameter
from ..models.detector import Detection, Detector

DetectorProvider = Callable[[], Detector]
"""Returns the loaded item detector; raises ``ModelUnavailable`` when its weights are missing."""

CROP_TYPES = ("bbox", "segment")

#: Crop embedded for the main item of every image imported into an ``item_search`` library,
#: and of its plain queries by default. ``bbox`` keeps the item's own context (a handle, a
#: table edge) that the catalogue photos share; ``segment`` greys it out.
ITEM_CROP_TYPE = "bbox"


def default_detector() -> Detector:
    """The shared U²-Netp detector (``lookalike.models.load_detector``).

    Raises:
        ModelUnavailable: its weights are not installed.
    """
    from ..models import load_detector

    return load_detector()


def check_crop_type(value: object, field: str = "search_crop_type") -> str:
    """Raises ``InvalidParameter`` unless ``value`` is ``bbox`` or ``segment``."""
    if value not in CROP_TYPES:
        raise InvalidParameter(f"{field}: must be one of {', '.join(repr(c) for c in CROP_TYPES)} (got {value!r})")
    return value  # type: ignore[return-value]


def item_crop(image: Image.Image, detection: Detection | None, crop_type: str) -> Image.Image:
    """The region of ``image`` to embed for ``detection``: its ``crop_type`` crop
    (``lookalike.crops.crop``), or the whole image when ``detection`` is ``None``."""
    if detection is None:
        return image
    from ..crops import crop

    return crop(image, detection, crop_type=crop_type)


def main_item(detector: Detector, image: Image.Image, crop_type: str = ITEM_CROP_TYPE) -> Image.Image:
    """The ``crop_type`` crop of the main item of ``image`` (RGB), or the whole image when
    the detector finds nothing (the whole-image fallback of ``item_search``)."""
    found = detector.detect(image, max_items=1)
    return item_crop(image, found[0] if found else None, crop_type)
