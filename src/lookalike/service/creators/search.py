"""Creator search: rank the creators of one platform by how much their posts look like a query image.

Posts are searched, not profiles. One query:

1. profile filters -> a boolean mask over the snapshot's creators (vectorised over ``CreatorColumns``);
   post filters (``maxPostAgeMonths``, ``contentType``) -> a mask over posts. A post *counts* when its
   creator passes and it passes.
2. every counted post is scored exactly (one matrix-vector product over the counted rows, cosine ->
   0..1 score with the model's calibration, ``lookalike.scoring``). Filters are applied before this
   exact scan, never to a truncated candidate list, so a selective filter cannot thin a page while
   matching creators exist.
3. a post *matches* when its score >= ``match_threshold``; a creator is in ``total`` when it passes
   the filters and has at least one matching post. Its relevance aggregates its matching posts
   (``relevance``); creators are ordered by relevance descending, then ``userId`` ascending (code
   points), a total order, so pages are stable and together hold every matching creator once.
4. only the requested page's creators are read back from the source (profile, matched and recent posts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from ...errors import InvalidParameter, ModelMismatch
from ...models.base import ScoreCalibration
from ...scoring import to_score
from ...store.creator_types import GENDERS, CreatorColumns, CreatorRecord, CreatorSnapshot, PostColumns, PostRecord
from ...store.post_index import PostIndex
from .candidates import rank_with_candidates
from .filters import CreatorQuery
from .platforms import check_platform

#: A post matches the query at a calibrated score >= 0.7. For efficientnet-lite0 0.7 is the knot at
#: cosine 0.48, the 99th percentile of unrelated photo pairs (README, Scores), and the lower edge of
#: the "similar" band 0.7..0.9, where 96 % of corel1k top-10 results share the query's class while
#: below 0.7 results are mostly unrelated. So a match is a post more alike than 99 % of unrelated
#: pairs; a higher threshold would drop same-niche posts (most of them score 0.7..0.85).
MATCH_THRESHOLD = 0.7
#: Weight of the 2nd..5th best matching posts in a creator's relevance (see ``relevance``). Measured
#: on 300 creators built from corel1k / oxford17 classes (1-2 niche classes each, 6-40 posts, 80 %
#: from the niches; 150 held-out query photos; relevant = a niche is the query's class), threshold 0.7:
#: bonus 0 / 0.1 / 0.25 / 0.5 / 1.0 gave precision@6 0.82 / 0.95 / 0.97 / 0.98 / 0.98 on corel1k and
#: 0.67 / 0.83 / 0.87 / 0.87 / 0.86 on oxford17 (thresholds 0.75 and 0.8 were worse at every bonus).
#: 0.25 is where the gain levels off, and it keeps the bonus at most the best post's own margin.
MULTI_MATCH_BONUS = 0.25
#: Matching posts beyond the best that add to relevance; also the number of matched posts returned.
MAX_MATCHED_POSTS = 5
MAX_RECENT_POSTS = 5
SECONDS_PER_DAY = 86400.0
#: Mean Gregorian month, for ``maxPostAgeMonths``.
DAYS_PER_MONTH = 30.44
# Post scores are rounded to 1e-6 before aggregation: BLAS may differ in the last bits for the
# same vector at another row, and identical posts must tie exactly (then userId decides).
_SCORE_DECIMALS = 6
# Above this share of counted posts one matvec over all rows beats copying the counted ones first
# (measured at 20k x 1280-d float32 on 2 cores: a gather of 20 % costs as much as the full scan).
_FULL_SCAN_SHARE = 0.15


class CreatorSource(Protocol):
    """What the search reads from the creator store (``store.creator_store`` implements it)."""

    def snapshot(self, platform: str) -> CreatorSnapshot:
        """The platform's current columnar view (cheap: cached by the store until a write)."""
        ...

    def profiles(self, platform: str, user_ids: Sequence[str]) -> dict[str, CreatorRecord]:
        """Profiles by userId; unknown ids are absent from the answer."""
        ...

    def posts(self, platform: str, post_ids: Sequence[str]) -> dict[str, PostRecord]:
        """Posts by id; unknown ids are absent from the answer."""
        ...

    def recent_posts(self, platform: str, user_ids: Sequence[str], limit: int = 5) -> dict[str, list[PostRecord]]:
        """Up to ``limit`` newest posts per userId, newest first."""
        ...

    def model_id(self) -> str | None:
        """The model that embeds creator posts."""
        ...


@dataclass(frozen=True)
class ProfileMatch:
    """One ranked creator.

    Attributes:
        relevance: see ``CreatorSearchService.relevance``; in [threshold, 1 + 4 * bonus * (1 - threshold)]
            (0.7..1.3 with the defaults); compare it within one query only.
        matched_posts: up to 5 (post, score in 0..1) with score >= the threshold, best first
            (ties: post id ascending); only posts that pass the post filters.
        recent_posts: up to 5 newest posts, newest first, whatever the filters.
    """

    creator: CreatorRecord
    relevance: float
    matched_posts: list[tuple[PostRecord, float]]
    recent_posts: list[PostRecord]


@dataclass(frozen=True)
class CreatorPage:
    """``total``: creators that pass the filters with >= 1 matching post; ``profiles``: this page of them."""

    total: int
    profiles: list[ProfileMatch]


@dataclass(frozen=True)
class Ranking:
    """Every matching creator of one query, ranked.

    Attributes:
        creator_rows: (k,) int64 rows of ``CreatorColumns``, best first.
        relevance: (k,) float64, aligned with ``creator_rows``.
        post_rows: (p,) int64 rows of all matching posts, grouped by creator, best first in a group.
        post_scores: (p,) float64 scores aligned with ``post_rows``.
        bounds: (k, 2) int64: creator i's matching posts are ``post_rows[bounds[i, 0]:bounds[i, 1]]``.
    """

    creator_rows: np.ndarray
    relevance: np.ndarray
    post_rows: np.ndarray
    post_scores: np.ndarray
    bounds: np.ndarray

    def __len__(self) -> int:
        return len(self.creator_rows)

    def matching_posts(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The i-th ranked creator's matching (post rows, scores), best first."""
        lo, hi = self.bounds[i]
        return self.post_rows[lo:hi], self.post_scores[lo:hi]


class CreatorSearchService:
    """Image search over creators (Modash ``/ai/image-search`` and ``/ai/tiktok/image-search``).

    Args:
        source: the creator store.
        embed: RGB image -> (d,) float32 L2-normalised ``visual`` embedding, same model as the posts.
        expand_locations: location ids -> those ids plus all their descendants (a country's states
            and cities), so a creator located in a city matches a filter on its country.
        clock: Unix seconds; ``lastPostedInDays`` and ``maxPostAgeMonths`` count back from it.
        calibration: the embedding model's ``image_calibration`` (cosine -> score).
        match_threshold: the score a post needs to match (``MATCH_THRESHOLD``).
        bonus: weight of further matches in relevance (``MULTI_MATCH_BONUS``).
        post_index: candidate stage for large platforms (``candidates``: the page stays
            the exact scan's); None scores every counted post.
    """

    def __init__(
        self,
        source: CreatorSource,
        embed: Callable[[Image.Image], np.ndarray],
        expand_locations: Callable[[Iterable[int]], frozenset[int]],
        clock: Callable[[], float] = time.time,
        *,
        calibration: ScoreCalibration,
        match_threshold: float = MATCH_THRESHOLD,
        bonus: float = MULTI_MATCH_BONUS,
        post_index: PostIndex | None = None,
    ) -> None:
        self._post_index = post_index
        self._source = source
        self._embed = embed
        self._expand_locations = expand_locations
        self._clock = clock
        self._calibration = calibration
        self._threshold = float(match_threshold)
        self._bonus = float(bonus)
        self._uid_rank: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def search(self, platform: str, image: Image.Image, query: CreatorQuery, page: int, page_size: int) -> CreatorPage:
        """One page of the creators whose posts look like ``image``.

        Args:
            platform: ``instagram`` or ``tiktok``.
            image: the decoded RGB query image.
            query: validated filters (``filters.parse_filters``).
            page: 0-based; page p holds ranks [p * page_size, (p + 1) * page_size).
            page_size: profiles per page (Instagram 6; TikTok ``pageSize``).

        Raises:
            InvalidParameter: platform, page or page_size out of range.
            ModelMismatch: the posts were embedded in another space than ``embed`` answers in.
        """
        check_platform(platform)
        if page < 0 or page_size < 1:
            raise InvalidParameter("page: must be >= 0 with a page size >= 1")
        snapshot = self._source.snapshot(platform)
        counted = self._counted_posts(snapshot, query)
        if counted.size == 0:
            return CreatorPage(total=0, profiles=[])
        vector = np.asarray(self._embed(image), dtype=np.float32).reshape(-1)
        if self._post_index is None or vector.shape[0] != snapshot.posts.vectors.shape[1]:
            ranking = self.rank(snapshot, vector, counted)  # (a size mismatch raises there)
        else:
            ranking = rank_with_candidates(
                self.rank, self._post_index, snapshot, vector, counted, (page + 1) * page_size,
                threshold=self._threshold, bonus=self._bonus, score=self._score,
            )
        chosen = np.arange(page * page_size, min((page + 1) * page_size, len(ranking)))
        return CreatorPage(total=len(ranking), profiles=self._hydrate(snapshot, ranking, chosen))

    # --- ranking ---------------------------------------------------------------------------------

    def rank(self, snapshot: CreatorSnapshot, vector: np.ndarray, counted: np.ndarray) -> Ranking:
        """Score the ``counted`` post rows ((c,) int64, ascending) against ``vector`` ((d,) float32,
        L2-normalised) and rank the creators with a matching post. Exact: every counted row is scored.

        Raises:
            ModelMismatch: ``vector`` and the post embeddings differ in size.
        """
        posts = snapshot.posts
        if vector.shape[0] != posts.vectors.shape[1]:
            raise ModelMismatch(
                f"{snapshot.platform} creator posts hold {posts.vectors.shape[1]}-d embeddings "
                f"(model {snapshot.model_id}), the query embedding has {vector.shape[0]}"
            )
        scores = self._score(self._cosines(posts.vectors, counted, vector))
        hit = scores >= self._threshold
        rows, scores = counted[hit], scores[hit]
        creators = posts.creator_row[rows]
        # Group by creator, best score first inside a group; lexsort is stable, so equal scores
        # keep ascending post rows (deterministic).
        order = np.lexsort((-scores, creators))
        rows, scores, creators = rows[order], scores[order], creators[order]
        starts = np.flatnonzero(np.r_[True, creators[1:] != creators[:-1]]) if len(rows) else np.zeros(0, np.int64)
        starts = starts.astype(np.int64)
        relevance = self.relevance(scores, starts)
        group_creators = creators[starts]
        ranked = np.lexsort((self._user_id_rank(snapshot)[group_creators], -relevance))
        ends = np.append(starts[1:], len(rows)) if len(starts) else starts
        return Ranking(
            creator_rows=group_creators[ranked],
            relevance=relevance[ranked],
            post_rows=rows,
            post_scores=scores,
            bounds=np.stack([starts, ends], axis=1)[ranked].reshape(-1, 2),
        )

    def relevance(self, scores: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Aggregate matching post scores into creator relevance.

        ``relevance = s1 + bonus * sum_{i=2..min(n,5)} (s_i - t)`` where s1 >= s2 >= ... are the
        creator's n matching post scores (each >= the threshold t). The best post leads; each of up
        to 4 further matches adds in proportion to its margin above the threshold, so a creator who
        posts such content repeatedly outranks one lucky post of equal score (niche creators are
        what a brand looks for: see ``MULTI_MATCH_BONUS`` for the measurement). Cap: the bonus is at
        most 4 * bonus * (s1 - t), with the defaults (t = 0.7, bonus = 0.25) at most the best post's
        own margin s1 - t, so relevance lies in [s1, 2 * s1 - t] within [0.7, 1.3]. Example: five
        posts at 0.80 give 0.80 + 0.25 * 4 * 0.10 = 0.90, level with one near-duplicate at 0.90.

        Args:
            scores: (p,) float64 matching scores grouped by creator, best first within a group.
            starts: (g,) int64 start of each group in ``scores``.

        Returns:
            (g,) float64 relevance per group.
        """
        if len(starts) == 0:
            return np.zeros(0)
        group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(scores)]))
        rank_in_group = np.arange(len(scores)) - starts[group]
        extra = (rank_in_group >= 1) & (rank_in_group < MAX_MATCHED_POSTS)
        bonus = np.bincount(group[extra], weights=scores[extra] - self._threshold, minlength=len(starts))
        return scores[starts] + self._bonus * bonus

    def _score(self, cosines: np.ndarray) -> np.ndarray:
        """Cosines -> scores as ranking compares them (calibrated, rounded to ``_SCORE_DECIMALS``)."""
        return np.round(to_score(cosines, self._calibration), _SCORE_DECIMALS)

    @staticmethod
    def _cosines(vectors: np.ndarray, rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
        if len(rows) > _FULL_SCAN_SHARE * len(vectors):
            return (vectors @ vector)[rows]
        return np.take(vectors, rows, axis=0) @ vector

    def _user_id_rank(self, snapshot: CreatorSnapshot) -> np.ndarray:
        """(m,) int64: each creator's position in userId order, cached while the snapshot's
        ``user_ids`` column is the same object (the store rebuilds it on every change)."""
        ids = snapshot.creators.user_ids
        cached = self._uid_rank.get(snapshot.platform)
        if cached is None or cached[0] is not ids:
            rank = np.empty(len(ids), dtype=np.int64)
            rank[np.argsort(ids.astype(str), kind="stable")] = np.arange(len(ids))
            cached = (ids, rank)
            self._uid_rank[snapshot.platform] = cached
        return cached[1]

    # --- filters ---------------------------------------------------------------------------------

    def _counted_posts(self, snapshot: CreatorSnapshot, query: CreatorQuery) -> np.ndarray:
        """(c,) int64 ascending rows of the posts that count: creator passes and post passes."""
        now = float(self._clock())
        creator_ok = profile_mask(snapshot.creators, query, self._expand_locations, now)
        posts = snapshot.posts
        if len(posts) == 0:
            return np.zeros(0, dtype=np.int64)
        ok = creator_ok[posts.creator_row] & post_mask(posts, query, now)
        return np.flatnonzero(ok)

    # --- hydration -------------------------------------------------------------------------------

    def _hydrate(self, snapshot: CreatorSnapshot, ranking: Ranking, chosen: np.ndarray) -> list[ProfileMatch]:
        platform = snapshot.platform
        user_ids = [str(snapshot.creators.user_ids[ranking.creator_rows[i]]) for i in chosen]
        matched = {uid: self._best_posts(snapshot.posts, ranking, i) for uid, i in zip(user_ids, chosen)}
        profiles = self._source.profiles(platform, user_ids)
        posts = self._source.posts(platform, [pid for best in matched.values() for pid, _ in best])
        recent = self._source.recent_posts(platform, user_ids, limit=MAX_RECENT_POSTS)
        out = []
        for uid, i in zip(user_ids, chosen):
            if uid not in profiles:  # deleted since the snapshot was taken
                continue
            out.append(
                ProfileMatch(
                    creator=profiles[uid],
                    relevance=float(ranking.relevance[i]),
                    matched_posts=[(posts[pid], score) for pid, score in matched[uid] if pid in posts],
                    recent_posts=list(recent.get(uid, []))[:MAX_RECENT_POSTS],
                )
            )
        return out

    @staticmethod
    def _best_posts(posts: PostColumns, ranking: Ranking, i: int) -> list[tuple[str, float]]:
        """The creator's up to 5 best matching (post id, score); equal scores by post id."""
        pairs = [(str(posts.post_ids[r]), float(s)) for r, s in zip(*ranking.matching_posts(i))]
        pairs.sort(key=lambda p: (-p[1], p[0]))
        return pairs[:MAX_MATCHED_POSTS]


def profile_mask(
    creators: CreatorColumns,
    query: CreatorQuery,
    expand_locations: Callable[[Iterable[int]], frozenset[int]],
    now: float,
) -> np.ndarray:
    """(m,) bool: the creators that pass every profile filter of ``query``.

    ``now`` in Unix seconds. Unknown values (gender, age, account type, language) never pass a
    filter on that field, except ``gender: UNKNOWN``.
    """
    m = len(creators)
    ok = np.ones(m, dtype=bool)
    q = query
    if q.followers_min is not None:
        ok &= creators.followers >= q.followers_min
    if q.followers_max is not None:
        ok &= creators.followers <= q.followers_max
    if q.engagement_rate_min is not None:
        ok &= creators.engagement_rate >= q.engagement_rate_min
    if q.has_email is not None:
        ok &= creators.has_email.astype(bool) == q.has_email
    if q.last_posted_in_days is not None:
        with np.errstate(invalid="ignore"):  # NaN: no posts, never passes
            ok &= creators.last_post_at >= now - q.last_posted_in_days * SECONDS_PER_DAY
    if q.gender is not None:
        ok &= _gender_mask(creators.gender, q.gender)
    if q.account_types:
        ok &= _isin(creators.account_type, q.account_types)
    if q.language is not None:
        ok &= _isin(creators.language, {q.language})
    groups = q.age_groups()
    if groups is not None:
        ok &= _isin(creators.age_group, groups)
    if q.username is not None:
        ok &= _isin(creators.usernames, {q.username})
    if q.locations:
        allowed = frozenset(expand_locations(q.locations))
        ok &= np.fromiter((not s.isdisjoint(allowed) for s in creators.location_ids), dtype=bool, count=m)
    if q.brands:
        ok &= np.fromiter((not s.isdisjoint(q.brands) for s in creators.brands), dtype=bool, count=m)
    return ok


def post_mask(posts: PostColumns, query: CreatorQuery, now: float) -> np.ndarray:
    """(n,) bool: the posts that pass the post filters (``maxPostAgeMonths``, ``contentType``)."""
    ok = np.ones(len(posts), dtype=bool)
    if query.max_post_age_months is not None:
        ok &= posts.created_at >= now - query.max_post_age_months * DAYS_PER_MONTH * SECONDS_PER_DAY
    if query.content_type is not None:
        ok &= posts.is_video.astype(bool) == (query.content_type == "video")
    return ok


def _gender_mask(column: np.ndarray, wanted: str) -> np.ndarray:
    known = _isin(column, GENDERS)
    if wanted == "KNOWN":
        return known
    if wanted == "UNKNOWN":
        return ~known
    return _isin(column, {wanted})


def _isin(column: np.ndarray, values: Iterable[object]) -> np.ndarray:
    """(m,) bool for an object column; None never matches."""
    wanted = set(values)
    return np.fromiter((v in wanted for v in column), dtype=bool, count=len(column))
