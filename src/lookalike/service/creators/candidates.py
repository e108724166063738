"""Creator ranking from a candidate stage, with a proof that the requested page is exact.

Exact creator search scores every counted post (``CreatorSearchService.rank``). At scale a
``PostIndex`` returns the L counted posts nearest the query instead, and this module decides
whether the first ``need`` ranks (the requested page and those before it) are the ones the exact
scan would give, growing L until they provably are:

* every post outside the candidates scores at most ``s_min``, the lowest candidate score (the
  candidates are the top L by cosine and the score is monotone in cosine);
* relevance is ``s1 + bonus * sum_{i=2..5} (s_i - t)`` (``CreatorSearchService.relevance``), so
  a creator with no candidate post has relevance at most ``U = s_min + 4 * bonus * (s_min - t)``,
  and one with n candidate matches at most its candidate relevance plus
  ``bonus * (s_min - t) * max(0, 5 - n)``;
* when ``U`` is below the need-th candidate relevance, only seen creators can reach the first
  ``need`` ranks; those whose upper bound reaches the need-th relevance (the contenders) get
  all their counted posts scored exactly, so their relevance and matched posts are exact and
  the first ``need`` ranks are final (the others' upper bounds lie below them);
* when ``s_min`` is below the match threshold every matching post is a candidate and the whole
  ranking, ``total`` included, is the exact one.

Otherwise L grows fourfold; past a quarter of the counted posts the exact scan is cheaper and
is used. The candidate set itself is approximate (ANN recall ~0.98 per post), so a creator
whose every matching post the candidate stage missed can be missed: measured by
``benchmarks/scale.py`` (``top6_agreement_vs_exact``). ``total`` is exact only in the
exhaustive cases; otherwise it counts the matching creators among the candidates (a lower bound).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from ...store.post_index import PostIndex

if TYPE_CHECKING:
    from ...store.creator_types import CreatorSnapshot



class _Ranked(Protocol):
    """What this module reads of a ``search.Ranking`` (not imported: search imports this module)."""

    @property
    def creator_rows(self) -> np.ndarray: ...

    @property
    def relevance(self) -> np.ndarray: ...

    @property
    def bounds(self) -> np.ndarray: ...

    def __len__(self) -> int: ...


R = TypeVar("R", bound=_Ranked)

#: First candidate count per needed rank (and its floor); grown 4x per round.
CANDIDATES_PER_RANK = 32
MIN_CANDIDATES = 512
#: Above this share of the counted posts, rank them all exactly instead.
EXACT_SHARE = 0.25
#: The 5 posts (best + 4 extra) that make up relevance (``search.MAX_MATCHED_POSTS``).
_POSTS_IN_RELEVANCE = 5


def rank_with_candidates(
    rank: Callable[[CreatorSnapshot, np.ndarray, np.ndarray], R], post_index: PostIndex, snapshot: CreatorSnapshot,
    vector: np.ndarray, counted: np.ndarray, need: int, *, threshold: float, bonus: float,
    score: Callable[[np.ndarray], np.ndarray],
) -> R:
    """A ``Ranking`` whose first ``need`` entries equal the exact scan's.

    Args:
        rank: ``CreatorSearchService.rank`` (snapshot, vector, rows) -> Ranking, exact over rows.
        post_index: the candidate stage.
        counted: (c,) int64 ascending post rows that pass the filters.
        need: ranks that must be exact ((page + 1) * page_size).
        threshold, bonus: the relevance parameters of the search.
        score: cosines -> scores exactly as ``rank`` computes them (calibrated and rounded).
    """
    limit = max(MIN_CANDIDATES, CANDIDATES_PER_RANK * need)
    while limit < EXACT_SHARE * len(counted):
        found = post_index.top_posts(snapshot, vector, counted, limit)
        if found is None:
            break
        rows, cosines = found
        if len(rows) == 0:
            break
        s_min = float(score(cosines[-1:].astype(np.float64))[0])
        candidates = np.sort(rows)
        if s_min < threshold:
            return rank(snapshot, vector, candidates)  # every matching post is a candidate
        ranking = rank(snapshot, vector, candidates)
        if len(ranking) >= need:
            kth = float(ranking.relevance[need - 1])
            margin = s_min - threshold
            if s_min + (_POSTS_IN_RELEVANCE - 1) * bonus * margin < kth:
                seen = ranking.bounds[:, 1] - ranking.bounds[:, 0]
                upper = ranking.relevance + bonus * margin * np.clip(_POSTS_IN_RELEVANCE - seen, 0, _POSTS_IN_RELEVANCE - 1)
                contenders = ranking.creator_rows[upper >= kth]
                extra = _posts_of(snapshot, contenders, counted)
                return rank(snapshot, vector, np.union1d(candidates, extra))
        limit *= 4
    return rank(snapshot, vector, counted)


def _posts_of(snapshot: CreatorSnapshot, creators: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """(p,) int64 ascending: the counted post rows of the given creator rows."""
    chosen = np.zeros(len(snapshot.creators), dtype=bool)
    chosen[creators] = True
    return counted[chosen[snapshot.posts.creator_row[counted]]]
