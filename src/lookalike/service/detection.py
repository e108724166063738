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


#: Margin of a query's item crops, as a share of the box's width / height on each side. The
#: embedding is mean-pooled over the whole crop, so a margin mixes in whatever surrounds the
#: item: the room, a neighbouring item. Measured with ``lookalike eval multi-item`` (60
#: composed images, general_search, seeds 11 / 23): items found in the merged top 10 with
#: margin 0.1 / 0.05 / 0.02 / 0 (query crops of the detected items): 0.673 / 0.687 / 0.707 /
#: 0.747 and 0.693 / 0.700 / 0.713 / 0.713 (offline re-ranking of the same boxes); with the
#: true pasted boxes as segments 0.707 / 0.713 / 0.733 / 0.773 and 0.753 / 0.753 / 0.773 /
#: 0.793. So the box is used as is (the detector's mask already reaches the item's edge).
#: Imports into ``item_search`` libraries keep ``lookalike.crops.DEFAULT_MARGIN``.
QUERY_CROP_MARGIN = 0.0


def item_crop(image: Image.Image, detection: Detection | None, crop_type: str) -> Image.Image:
    """The region of a query ``image`` to embed for ``detection``: its ``crop_type`` crop
    (``lookalike.crops.crop``) with :data:`QUERY_CROP_MARGIN`, or the whole image when
    ``detection`` is ``None``."""
    return image if detection is None else crop(image, detection, crop_type=crop_type, margin=QUERY_CROP_MARGIN)
