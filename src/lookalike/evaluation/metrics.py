"""Ranking metrics over binary relevance."""

from __future__ import annotations

from collections.abc import Sequence


def average_precision_at(relevant: Sequence[bool], n_relevant: int, k: int = 100) -> float:
    """AP@k: mean of precision@i over the ranks i <= k that hold a relevant item, divided by
    min(n_relevant, k) so that a perfect top-k scores 1 (the common "mAP@k" of retrieval
    benchmarks, e.g. Radenović et al., "Revisiting Oxford and Paris", CVPR 2018).

    Args:
        relevant: relevance of the ranked results, best first.
        n_relevant: number of relevant items in the whole database.
        k: cut-off rank.

    Returns:
        AP in [0, 1]; 0 when ``n_relevant`` is 0.
    """
    if n_relevant <= 0:
        return 0.0
    hits, total = 0, 0.0
    for rank, rel in enumerate(relevant[:k], start=1):
        if rel:
            hits += 1
            total += hits / rank
    return total / min(n_relevant, k)


def precision_at(relevant: Sequence[bool], k: int) -> float:
    """Fraction of the top k that are relevant (missing ranks count as not relevant)."""
    return sum(bool(r) for r in relevant[:k]) / k


def recall_at(relevant: Sequence[bool], n_relevant: int, k: int) -> float:
    """Fraction of all relevant items found in the top k; 0 when none exist."""
    return sum(bool(r) for r in relevant[:k]) / n_relevant if n_relevant else 0.0
