"""Near-duplicate collapse of a ranked result list.

Two results are the same photo (re-encoded or resized) when both hold:
- the cosine of their ``visual`` embeddings is at least ``DUPLICATE_COSINE`` (0.85, the
  efficientnet-lite0 knot where scores enter the 0.9+ "near-duplicate" band: the 5th
  percentile of (photo, augmented copy) pairs in ``benchmarks/calibrate_scores.py``);
- their 16 x 16 RGB thumbnails (box filter) differ by at most ``MAX_PIXEL_DIFF`` = 4 grey
  levels of 255 on average: re-encoding (JPEG quality 60-90) and resizing (60-100 %) moved
  them by 0.7-0.9 at the median and 2.1 at most on the shared sets (``benchmarks/duplicates.py``),
  so 4 is about twice JPEG's noise and far below what another photo differs by.
The embedding alone cannot tell a copy from another photo of the same kind of product on
white (on the fashion catalogue a photo's nearest *distinct* photo has cosine 0.88 at the
median), and a 64-bit difference hash could not either (45 % of fashion photos have a
distinct photo within 10 bits: centred products on white share one gradient layout); the
thumbnail compares colours and places. Crops, colour edits and mirror images are *not*
folded: they move the thumbnail by 10-25 levels.

A ranked list is collapsed greedily: each result, in rank order, joins the group of the
first *kept* result it duplicates, or is kept as the head of a new group. The head keeps its
rank and score and lists the others' ids; the others leave the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Cosine of ``visual`` embeddings from which two results may be the same photo.
DUPLICATE_COSINE = 0.85
#: Largest mean absolute difference (0..255) of two copies' 16 x 16 RGB thumbnails.
MAX_PIXEL_DIFF = 4.0
THUMBNAIL_SIDE = 16


@dataclass(frozen=True)
class Group:
    """One kept result (``head``: its index in the input list) and the indices of the
    results folded into it, in rank order."""

    head: int
    members: tuple[int, ...]


def thumbnail(image: Image.Image) -> np.ndarray:
    """(16, 16, 3) float32 in 0..255: the image squashed to 16 x 16 RGB with a box filter."""
    side = THUMBNAIL_SIDE
    return np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BOX), dtype=np.float32)


def same_pixels(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two ``thumbnail`` arrays differ by at most ``MAX_PIXEL_DIFF`` on average."""
    return float(np.abs(a - b).mean()) <= MAX_PIXEL_DIFF


def collapse(
    vectors: np.ndarray,
    alike: Callable[[int, int], bool],
    threshold: float = DUPLICATE_COSINE,
) -> list[Group]:
    """Greedy near-duplicate grouping of ranked results.

    Args:
        vectors: (n, d) float32, L2-normalised ``visual`` embeddings, in rank order.
        alike: ``(i, j) -> bool``, whether results i and j look alike pixel-wise
            (``same_pixels`` of their thumbnails); asked only for pairs whose cosine reaches
            ``threshold``, so images are decoded only for likely duplicates.
        threshold: cosine from which a pair is checked.

    Returns:
        The groups in rank order of their heads; every index 0..n-1 is in exactly one.
    """
    n = len(vectors)
    if n == 0:
        return []
    sims = vectors @ vectors.T
    heads: list[int] = []
    members: dict[int, list[int]] = {}
    for i in range(n):
        owner = next((h for h in heads if sims[i, h] >= threshold and alike(h, i)), None)
        if owner is None:
            heads.append(i)
            members[i] = []
        else:
            members[owner].append(i)
    return [Group(head=h, members=tuple(members[h])) for h in heads]
