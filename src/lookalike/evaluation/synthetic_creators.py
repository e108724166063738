"""A synthetic creator platform at any size, for scale benchmarks and tests.

Profiles are drawn as ``lookalike creators demo`` draws them (``creator_demo``: followers,
engagement, gender, age, market location and language, brands, video share); posts carry
synthetic embeddings instead of photos, so a million posts cost no model time: ``niches`` unit
centres in ``dim`` dimensions plus a shared offset (real CNN features are mostly positively
correlated), with variance along axis i falling as 1 / (i + 1) as in
``benchmarks/filtered_recall.make_clustered`` (learned embeddings spread their variance over a
few dozen directions; isotropic noise would be a much harder case for any compact form), each
creator with one or two niches and 80-90 % of its posts drawn around them, a post being
``centre + 0.6 * offset + spread * noise`` normalised, with ``spread`` uniform in 0.6..1.4 so
same-niche cosines straddle the match threshold (cosine 0.48 for efficientnet-lite0) as real
same-class photos do. Queries are fresh draws around a niche.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np

from ..service.creators.dictionaries import Locations
from ..store.creator_store import CreatorStore
from ..store.creator_types import CreatorRecord, PostRecord
from .creator_demo import (
    AGE_GROUPS,
    BRAND_ACCOUNT_P,
    BRANDS,
    ENGAGEMENT_BETA,
    FOLLOWERS_CLIP,
    FOLLOWERS_MEDIAN,
    FOLLOWERS_SIGMA,
    GENDERS,
    HAS_EMAIL_P,
    HISTORY_DAYS,
    ONE_NICHE_P,
    REFERENCE_DATE,
    VIDEO_SHARE,
    _audience,
    _pick,
)

OFF_NICHE_SHARE = (0.10, 0.20)
SPREAD = (0.6, 1.4)


@dataclass(frozen=True)
class SyntheticSpace:
    """The niche centres and shared offset of one synthetic embedding space."""

    centres: np.ndarray  # (niches, dim) float32, unit rows
    offset: np.ndarray  # (dim,) float32, unit

    scale: np.ndarray  # (dim,) float32: standard deviation per axis, unit total variance

    @classmethod
    def make(cls, niches: int, dim: int, seed: int) -> SyntheticSpace:
        rng = np.random.default_rng(seed)
        scale = (np.arange(1, dim + 1, dtype=np.float64) ** -0.5).astype(np.float32)
        scale /= np.linalg.norm(scale)
        centres = rng.standard_normal((niches, dim)).astype(np.float32) * scale
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        offset = rng.standard_normal(dim).astype(np.float32) * scale
        return cls(centres, offset / np.linalg.norm(offset), scale)

    def draw(self, rng: np.random.Generator, niches: np.ndarray) -> np.ndarray:
        """(len(niches), dim) float32 unit rows around the given niche ids."""
        dim = self.centres.shape[1]
        spread = rng.uniform(*SPREAD, size=(len(niches), 1)).astype(np.float32)
        noise = rng.standard_normal((len(niches), dim)).astype(np.float32) * self.scale
        x = self.centres[niches] + 0.6 * self.offset + spread * noise
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic_creators(
    space: SyntheticSpace, count: int, posts_per_creator: int, seed: int, platform: str, locations: Locations,
) -> Iterator[tuple[CreatorRecord, list[tuple[PostRecord, str, np.ndarray]]]]:
    """``count`` creators with ``posts_per_creator`` posts each, deterministic for a seed.

    Yields (profile, [(post, image hash, (dim,) float32 embedding), ...]) as
    ``CreatorStore.upsert_creator`` takes them.
    """
    rng = np.random.default_rng(seed)
    niches = space.centres.shape[0]
    now = REFERENCE_DATE.timestamp()
    for i in range(count):
        user_id = f"{seed}{i:08d}"
        own = rng.choice(niches, size=1 if rng.random() < ONE_NICHE_P else 2, replace=False)
        off = round(posts_per_creator * rng.uniform(*OFF_NICHE_SHARE))
        post_niches = np.concatenate([rng.choice(own, posts_per_creator - off), rng.integers(0, niches, off)])
        vectors = space.draw(rng, post_niches)
        account_type = "brand" if rng.random() < BRAND_ACCOUNT_P else "creator"
        followers = int(np.clip(round(FOLLOWERS_MEDIAN * math.exp(rng.normal(0, FOLLOWERS_SIGMA))), *FOLLOWERS_CLIP))
        a, b = ENGAGEMENT_BETA[platform]
        location_ids, language = _audience(rng, locations)
        brands = tuple(BRANDS[j] for j in rng.choice(len(BRANDS), size=int(rng.choice([0, 0, 1, 1, 2, 3])), replace=False))
        record = CreatorRecord(
            platform=platform, user_id=user_id, username=f"user{user_id}", full_name=None, profile_picture=None,
            followers_count=followers,
            engagement_rate=float(np.clip(rng.beta(a, b) * (followers / FOLLOWERS_MEDIAN) ** -0.1, 0.001, 0.5)),
            account_category=None, account_type=account_type,
            gender=cast("str | None", _pick(rng, GENDERS)) if account_type == "creator" else None,
            age_group=cast("str | None", _pick(rng, AGE_GROUPS)) if account_type == "creator" else None,
            location_ids=tuple(location_ids), language=language, has_email=bool(rng.random() < HAS_EMAIL_P),
            brands=brands,
        )  # fmt: skip
        newest = min(rng.exponential(30.0), 365.0)
        ages = np.concatenate([[newest], rng.uniform(newest, HISTORY_DAYS, size=posts_per_creator - 1)])
        posts = []
        for k in range(posts_per_creator):
            post_id = f"{user_id}_{k}"
            video = bool(rng.random() < VIDEO_SHARE[platform])
            posts.append((
                PostRecord(post_id=post_id, user_id=user_id, url=None, thumbnail=None,
                           created_at=float(now - ages[k] * 86400.0), content_type="video" if video else "image",
                           stats={"likesCount": 1, "commentsCount": 0}),
                f"{i:032x}{k:032x}", vectors[k],
            ))  # fmt: skip
        yield record, posts


def write_synthetic_platform(
    store: CreatorStore, space: SyntheticSpace, count: int, posts_per_creator: int, seed: int, platform: str,
    locations: Locations, model_id: str = "efficientnet-lite0", batch: int = 100,
) -> int:
    """Upsert the creators of ``synthetic_creators`` into ``store``, ``batch`` creators a
    transaction (``CreatorStore.upsert_creators``); creators already stored with the same content
    are skipped. Returns posts written."""
    written = 0
    tag = f"synthetic-{seed}-{posts_per_creator}"
    pending: list = []
    for record, posts in synthetic_creators(space, count, posts_per_creator, seed, platform, locations):
        if store.content_hash(platform, record.user_id) == tag:
            continue
        pending.append((record, posts, tag))
        written += len(posts)
        if len(pending) >= batch:
            store.upsert_creators(pending, model_id)
            pending = []
    if pending:
        store.upsert_creators(pending, model_id)
    return written
