"""Near-duplicate collapse of a ranked result list.

Two results are the same photo (re-encoded, resized, slightly cropped) when both hold:
- the cosine of their ``visual`` embeddings is at least ``DUPLICATE_COSINE`` (0.85, the
  efficientnet-lite0 knot where scores enter the 0.9+ "near-duplicate" band: the 5th
  percentile of (photo, augmented copy) pairs in ``benchmarks/calibrate_scores.py``);
- their difference hashes (dHash: the signs of horizontal gradients of a 9 x 8 grey
  thumbnail, 64 bits; N. Krawetz, "Kind of Like That", 2013) differ in at most
  ``MAX_HASH_BITS`` = 10 bits, the distance that post names for "likely the same image".
The embedding alone cannot tell a re-encode from another photo of the same product on white
(``benchmarks/duplicates.py``: on the fashion catalogue a photo's nearest distinct photo
has cosine 0.88 at the median); the hash looks at the pixels' layout, which a re-encode
keeps (at most 4 bits moved on the shared sets) and another photo does not.

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
#: Most dHash bits (of 64) in which two copies of one photo may differ.
MAX_HASH_BITS = 10


@dataclass(frozen=True)
class Group:
    """One kept result (``head``: its index in the input list) and the indices of the
    results folded into it, in rank order."""

    head: int
    members: tuple[int, ...]


def dhash(image: Image.Image) -> np.ndarray:
    """64-bit difference hash of an image: (64,) bool, True where a pixel of the 9 x 8
    grey thumbnail (Lanczos) is brighter than its left-hand neighbour."""
    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    return (grey[:, 1:] > grey[:, :-1]).ravel()


def collapse(
    vectors: np.ndarray,
    same_pixels: Callable[[int, int], bool],
    threshold: float = DUPLICATE_COSINE,
) -> list[Group]:
    """Greedy near-duplicate grouping of ranked results.

    Args:
        vectors: (n, d) float32, L2-normalised ``visual`` embeddings, in rank order.
        same_pixels: ``(i, j) -> bool``, whether results i and j look alike pixel-wise
            (e.g. dHashes within ``MAX_HASH_BITS``); asked only for pairs whose cosine
            reaches ``threshold``, so images are decoded only for likely duplicates.
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
        owner = next((h for h in heads if sims[i, h] >= threshold and same_pixels(h, i)), None)
        if owner is None:
            heads.append(i)
            members[i] = []
        else:
            members[owner].append(i)
    return [Group(head=h, members=tuple(members[h])) for h in heads]
