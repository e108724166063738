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
#: Measured on sop_subset (the first 120 products with 2+ photos, 446 photos, each photo the
#: query against all others, efficientnet-lite0): recall@1 / @5 with bbox crops on both sides
#: 0.774 / 0.883, segment crops 0.744 / 0.859, whole photos 0.780 / 0.886. Those catalogue
#: photos mostly show one product on a plain background, so the crop matters for queries of
#: busy scenes, and the box keeps the item's own context that a product's photos share.
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
