"""Near-duplicate collapse of a ranked result list.

Two results are near-duplicates when the cosine of their ``visual`` embeddings reaches
``DUPLICATE_COSINE``: the same photo re-encoded, resized or slightly cropped. A ranked list
is collapsed greedily: each result, in rank order, joins the group of the first *kept*
result it duplicates, or is kept as the head of a new group. The head keeps its rank and
score and lists the others' ids; the others leave the list.

The threshold: ``benchmarks/duplicates.py`` measured, for efficientnet-lite0 on the shared
photo sets, how often a re-encoded copy (60-100 % size, JPEG quality 60-90) stays below a
threshold and how often a photo's most similar *distinct* photo reaches it; 0.92 keeps
distinct photos apart for 99 % or more of the photos of every set but sop_subset (catalogue
photos of one product on white, where other photos of the same product sit close).
Figures in the README ("Near-duplicate collapse").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Cosine of ``visual`` embeddings at and above which two results count as the same photo.
DUPLICATE_COSINE = 0.92


@dataclass(frozen=True)
class Group:
    """One kept result (``head``: its index in the input list) and the indices of the
    results folded into it, in rank order."""

    head: int
    members: tuple[int, ...]


def collapse(vectors: np.ndarray, threshold: float = DUPLICATE_COSINE) -> list[Group]:
    """Greedy near-duplicate grouping of ranked results.

    Args:
        vectors: (n, d) float32, L2-normalised ``visual`` embeddings, in rank order.
        threshold: cosine at and above which a result joins a kept one.

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
        owner = next((h for h in heads if sims[i, h] >= threshold), None)
        if owner is None:
            heads.append(i)
            members[i] = []
        else:
            members[owner].append(i)
    return [Group(head=h, members=tuple(members[h])) for h in heads]


def head_ids(groups: Sequence[Group], ids: Sequence[str]) -> dict[str, list[str]]:
    """``{head image_id: [image_ids folded into it]}`` for ``groups`` over ``ids``."""
    return {ids[g.head]: [ids[m] for m in g.members] for g in groups}
