"""Each creator platform's rules, in one registry: a new platform is one entry here.

The names themselves are ``store.creator_types.PLATFORMS`` (the store keys its tables by
them). Everything else that differs between platforms lives in a ``Platform``: the
Modash-compatible endpoints, page sizes, prices, post stats, filters and follower buckets.
Sources: Modash's API reference (https://docs.modash.io) and issue 3 (prices, rate limit).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import InvalidParameter
from ...store.creator_types import INSTAGRAM, PLATFORMS, TIKTOK

__all__ = ["INSTAGRAM", "PLATFORMS", "RULES", "TIKTOK", "Platform", "check_platform", "rules"]

#: Post stats every platform has (Modash): commentsCount is -1 when the creator hides comments.
COMMON_STATS = ("likesCount", "commentsCount")
#: TikTok followers buckets (Modash): ``followersCount.min`` snaps down and ``.max`` snaps up to one
#: of them. Outside the range: a min below 1,000 becomes no lower bound and a max above 3,000,000
#: no upper bound (snapping must only ever widen what the client asked for); a min above
#: 3,000,000 becomes 3,000,000 and a max below 1,000 becomes 1,000.
TIKTOK_FOLLOWER_STEPS = (
    1000, 3000, 5000, 10000, 15000, 20000, 25000, 35000, 50000, 75000, 100000, 125000, 150000,
    175000, 200000, 250000, 300000, 350000, 500000, 1000000, 2000000, 3000000,
)  # fmt: skip


@dataclass(frozen=True)
class Platform:
    """One platform's rules.

    Attributes:
        name: as in ``PLATFORMS`` (``instagram``).
        search_path: the Modash image-search path under ``/v1`` (``/ai/image-search``); without
            the leading ``/`` it also names the endpoint for the rate limit.
        brands_path: the Modash brands dictionary path under ``/v1``.
        stats: the post stats kept and returned, in order.
        page_size: profiles per page by default.
        page_size_max: the largest ``pageSize`` a client may ask for; ``None``: pages are fixed at
            ``page_size`` and ``pageSize`` is refused.
        search_milli: price of every successful search, milli-credits (1 credit = 1000).
        profile_milli: price of each returned profile, milli-credits.
        extra_filters: filters only this platform accepts (beyond ``filters.COMMON_FILTERS``).
        follower_steps: buckets ``followersCount`` bounds snap to; ``()``: exact bounds.
    """

    name: str
    search_path: str
    brands_path: str
    stats: tuple[str, ...]
    page_size: int
    page_size_max: int | None
    search_milli: int
    profile_milli: int
    extra_filters: tuple[str, ...] = ()
    follower_steps: tuple[int, ...] = ()

    @property
    def endpoint(self) -> str:
        """The rate-limit endpoint name: ``search_path`` without its leading ``/``."""
        return self.search_path.lstrip("/")

    def min_cost_milli(self) -> int:
        """The least a search can cost (one profile), milli-credits: what is required before searching."""
        return self.search_milli + self.profile_milli

    def cost_milli(self, profiles: int) -> int:
        """The price of a successful search that returned ``profiles`` profiles, milli-credits."""
        return self.search_milli + self.profile_milli * profiles


#: Every platform's rules, in ``PLATFORMS`` order. Instagram: 0.15 credit a search, pages of 6
#: profiles (Modash); TikTok: 0.025 credit a returned profile, ``pageSize`` 1..50, default 10 (small,
#: since each profile is billed; 50 bounds one request's hydration work).
RULES: dict[str, Platform] = {
    INSTAGRAM: Platform(
        name=INSTAGRAM, search_path="/ai/image-search", brands_path="/ai/brands", stats=COMMON_STATS,
        page_size=6, page_size_max=None, search_milli=150, profile_milli=0,
    ),
    TIKTOK: Platform(
        name=TIKTOK, search_path=f"/ai/{TIKTOK}/image-search", brands_path=f"/ai/{TIKTOK}/brands",
        stats=COMMON_STATS + ("sharesCount", "playsCount", "collectsCount"),
        page_size=10, page_size_max=50, search_milli=0, profile_milli=25,
        extra_filters=("username", "maxPostAgeMonths", "contentType"), follower_steps=TIKTOK_FOLLOWER_STEPS,
    ),
}
assert tuple(RULES) == PLATFORMS, "every platform of the store needs its rules"


def check_platform(platform: object) -> str:
    """``platform`` if it is one of ``PLATFORMS``. Raises InvalidParameter naming ``platform``."""
    if platform not in RULES:
        raise InvalidParameter(f"platform: must be one of {', '.join(PLATFORMS)}")
    return platform  # type: ignore[return-value]


def rules(platform: object) -> Platform:
    """The rules of ``platform``. Raises InvalidParameter naming ``platform``."""
    return RULES[check_platform(platform)]
