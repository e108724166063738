"""The item detector as the services use it: a lazy provider and the regions to embed.

Only ``item_search`` work and segmented queries need the detector, so it is loaded on the
first request that does (about 0.3 s per image on 2 cores); a missing model then fails
those requests alone with ``ModelUnavailable`` (HTTP 400), never the whole server.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

from ..crops import crop
from ..models.detector import Detection, Detector

DetectorProvider = Callable[[], Detector]
"""Returns the loaded item detector; raises ``ModelUnavailable`` when its weights are missing."""

#: Crop embedded for the main item of every image imported into an ``item_search`` library.
#: Measured on sop_subset (120 products with 2+ photos, 446 photos, leave-one-out, Lite0):
#: recall@1 bbox/bbox 0.785, segment/segment 0.771 (see the helper report); the box keeps the
#: item's own context that the catalogue photos of a product share.
ITEM_CROP_TYPE = "bbox"


def default_detector() -> Detector:
    """The shared U²-Netp detector (``lookalike.models.load_detector``).

    Raises:
        ModelUnavailable: its weights are not installed.
    """
    from ..models import load_detector

    return load_detector()


def item_crop(image: Image.Image, detection: Detection | None, crop_type: str) -> Image.Image:
    """The region of ``image`` to embed for ``detection``: its ``crop_type`` crop
    (``lookalike.crops.crop``), or the whole image when ``detection`` is ``None``."""
    return image if detection is None else crop(image, detection, crop_type=crop_type)
