"""Creator-search records and the columnar snapshot the search ranks over.

A *creator* is an Instagram or TikTok profile with audience facts; a *post* is one of its
images (a video's cover frame) with an embedding. ``CreatorStore`` (``creator_store``) writes
them; ``CreatorSnapshot`` is its read-only, columnar view of one platform that
``service.creators.search`` filters and ranks without touching SQLite per query.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The platforms' names are spelled here and only here; their rules live in service/creators/platforms.py.
INSTAGRAM = "instagram"
TIKTOK = "tiktok"
PLATFORMS = (INSTAGRAM, TIKTOK)
GENDERS = ("MALE", "FEMALE")
ACCOUNT_TYPES = ("creator", "brand")
#: Age groups, as Modash names them; a group "lo-hi" covers ages lo..hi inclusive.
AGE_GROUPS = ("13-17", "18-24", "25-34", "35-44", "45-64", "65+")
CONTENT_TYPES = ("image", "video")


@dataclass(frozen=True)
class PostRecord:
    """One post as stored and returned.

    Attributes:
        created_at: Unix time, seconds (UTC).
        content_type: ``image`` or ``video`` (a video's cover frame is the embedded image).
        stats: ``likesCount``, ``commentsCount`` (-1 when hidden); TikTok also
            ``sharesCount``, ``playsCount``, ``collectsCount``. Integers.
    """

    post_id: str
    user_id: str
    url: str | None
    thumbnail: str | None
    created_at: float
    content_type: str
    stats: dict[str, int]


@dataclass(frozen=True)
class CreatorRecord:
    """One creator profile as stored and returned (without posts).

    Attributes:
        engagement_rate: a fraction (0.01 = 1%).
        gender: ``MALE`` / ``FEMALE`` / ``None`` (unknown).
        age_group: one of ``AGE_GROUPS`` or ``None`` (unknown).
        location_ids: ids from the locations dictionary (a city, state or country).
        language: ISO 639-1 code or ``None``.
        brands: brand names the creator worked with.
    """

    platform: str
    user_id: str
    username: str
    full_name: str | None
    profile_picture: str | None
    followers_count: int
    engagement_rate: float
    account_category: str | None
    account_type: str | None
    gender: str | None
    age_group: str | None
    location_ids: tuple[int, ...]
    language: str | None
    has_email: bool
    brands: tuple[str, ...]
    updated_at: float = 0.0


@dataclass(frozen=True)
class CreatorColumns:
    """The m creators of one platform as columns; row i describes creator i.

    ``CreatorStore.snapshot`` orders the rows by ``user_id``.

    Attributes:
        user_ids: (m,) object, str.
        usernames: (m,) object, str, lower case.
        followers: (m,) int64.
        engagement_rate: (m,) float64, a fraction.
        account_type: (m,) object, ``creator`` / ``brand`` / None.
        gender: (m,) object, ``MALE`` / ``FEMALE`` / None.
        age_group: (m,) object, one of ``AGE_GROUPS`` / None.
        language: (m,) object, str / None.
        has_email: (m,) bool.
        location_ids: m frozensets of int (as imported, not expanded to parents).
        brands: m frozensets of str, lower case.
        last_post_at: (m,) float64, Unix seconds of the newest post; NaN without posts.
    """

    user_ids: np.ndarray
    usernames: np.ndarray
    followers: np.ndarray
    engagement_rate: np.ndarray
    account_type: np.ndarray
    gender: np.ndarray
    age_group: np.ndarray
    language: np.ndarray
    has_email: np.ndarray
    location_ids: list[frozenset[int]] = field(default_factory=list)
    brands: list[frozenset[str]] = field(default_factory=list)
    last_post_at: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.user_ids)


@dataclass(frozen=True)
class PostColumns:
    """The n posts of one platform as columns; row j describes post j.

    ``CreatorStore.snapshot`` groups the rows by creator (``creator_row`` non-decreasing),
    newest first within a creator, ties by ``post_id``.

    Attributes:
        post_ids: (n,) object, str.
        creator_row: (n,) int64, the row of the post's creator in ``CreatorColumns``.
        created_at: (n,) float64, Unix seconds.
        is_video: (n,) bool.
        vectors: (n, d) float32, L2-normalised ``visual`` embeddings.
    """

    post_ids: np.ndarray
    creator_row: np.ndarray
    created_at: np.ndarray
    is_video: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.post_ids)


@dataclass(frozen=True)
class CreatorSnapshot:
    """A consistent read-only view of one platform: what one search ranks over.

    Attributes:
        version: changes whenever the platform's creators or posts change.
        model_id: the model that embedded the posts (None while there are none).
    """

    platform: str
    version: int
    model_id: str | None
    creators: CreatorColumns
    posts: PostColumns
