"""The JSON form of a segmented query's items, shared by the operator and Constructor faces."""

from __future__ import annotations

from typing import Any

from ..service.search import SegmentMatch


def bbox(box: tuple[int, int, int, int]) -> dict[str, int]:
    """``(x, y, width, height)`` pixels -> ``{"x", "y", "width", "height"}``."""
    x, y, width, height = box
    return {"x": x, "y": y, "width": width, "height": height}


def segment(match: SegmentMatch, results: list[dict[str, Any]]) -> dict[str, Any]:
    """One query segment with its already formatted ``results``:
    ``{"index", "bbox", "mask_area" (pixels), "label", "score" (0..1), "results"}``."""
    return {"index": match.index, "bbox": bbox(match.bbox), "mask_area": match.mask_area,
            "label": match.label, "score": match.score, "results": results}
