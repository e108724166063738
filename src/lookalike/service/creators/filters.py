"""Validation of a creator-search request (Modash image-search shape) into a typed query.

``parse_filters(platform, filters)`` turns the request's ``filters`` object into a
``CreatorQuery``; ``check_page`` / ``check_page_size`` validate paging. Every rule broken
raises ``InvalidParameter`` whose message starts with the field path, e.g.
``filters.age.min: must be one of 13, 18, 25, 35, 45, 65``.

Filter keys use Modash's spelling. A key whose value is JSON ``null`` counts as absent, and so
does an empty ``locations`` / ``brands`` list (clients send empty form fields that way).

Numbers are JSON "number" in Modash's documents: where a value must be an integer, an integral
float (``1000.0``) is accepted as that integer and a non-integral one (``1.5``) is refused. The
age bounds are typed as strings there (``"18"``; the TikTok document's example sends
``"age": {"min": "18"}``), so ``age.min`` / ``age.max`` take those strings and numbers alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidParameter
from ...store.creator_types import ACCOUNT_TYPES, AGE_GROUPS, CONTENT_TYPES
from .platforms import RULES, TIKTOK_FOLLOWER_STEPS, rules

AGE_MINS = (13, 18, 25, 35, 45, 65)
AGE_MAXES = (18, 25, 35, 45, 65)
#: Each age group as [lo, hi) in years; a group is selected when it lies inside [age.min, age.max).
AGE_GROUP_BOUNDS = {
    "13-17": (13, 18), "18-24": (18, 25), "25-34": (25, 35),
    "35-44": (35, 45), "45-64": (45, 65), "65+": (65, math.inf),
}  # fmt: skip
GENDER_FILTERS = ("MALE", "FEMALE", "KNOWN", "UNKNOWN")
MAX_POST_AGE_MONTHS = (3, 6, 9, 12)
MAX_LIST_ITEMS = 1000
# Upper bounds keep huge JSON integers out of int64 columns and float time arithmetic.
MAX_FOLLOWERS = 10**12
MAX_ID = 2**63 - 1
MAX_DAYS = 36500
MAX_STRING_CHARS = 256
#: The deepest profile a client may page to: ``page * page_size`` (the offset) at most this.
MAX_OFFSET = 10000

COMMON_FILTERS = (
    "followersCount", "locations", "gender", "lastPostedInDays", "accountType", "language",
    "age", "engagementRate", "hasEmail", "brands",
)  # fmt: skip
#: Filters some platform accepts beyond ``COMMON_FILTERS`` (``Platform.extra_filters``).
EXTRA_FILTERS = tuple(dict.fromkeys(f for p in RULES.values() for f in p.extra_filters))
_LANGUAGE = re.compile(r"^[a-z]{2}$")


@dataclass(frozen=True)
class CreatorQuery:
    """Validated creator-search filters; ``None`` (or empty) means "no restriction".

    Attributes:
        followers_min, followers_max: inclusive bounds on followersCount (TikTok: snapped).
        locations: location ids as requested (not yet expanded to cities: the service does that).
        gender: ``MALE`` / ``FEMALE`` / ``KNOWN`` (either) / ``UNKNOWN`` (not recorded).
        last_posted_in_days: the creator's newest post is at most this many days old.
        account_types: subset of ``creator`` / ``brand``.
        language: ISO 639-1 code, lower case.
        age_min, age_max: age bounds in years, [min, max); see ``age_groups``.
        engagement_rate_min: a fraction in 0..1, inclusive.
        has_email: True: only creators with an email; False: only creators without one.
        brands: brand names, lower case; a creator matches with any of them.
        username: TikTok only, lower case, no leading ``@``; exact match.
        max_post_age_months: TikTok only; only posts at most this old count as matches
            (a month = 30.44 days).
        content_type: TikTok only, ``image`` / ``video``; only posts of that type count.
    """

    followers_min: int | None = None
    followers_max: int | None = None
    locations: frozenset[int] = frozenset()
    gender: str | None = None
    last_posted_in_days: int | None = None
    account_types: frozenset[str] = frozenset()
    language: str | None = None
    age_min: int | None = None
    age_max: int | None = None
    engagement_rate_min: float | None = None
    has_email: bool | None = None
    brands: frozenset[str] = frozenset()
    username: str | None = None
    max_post_age_months: int | None = None
    content_type: str | None = None

    def age_groups(self) -> frozenset[str] | None:
        """The ``AGE_GROUPS`` inside [age_min, age_max) (either bound may be open); ``None`` when
        no age filter is set. Creators of unknown age never pass an age filter."""
        if self.age_min is None and self.age_max is None:
            return None
        lo = self.age_min if self.age_min is not None else -math.inf
        hi = self.age_max if self.age_max is not None else math.inf
        return frozenset(g for g in AGE_GROUPS if AGE_GROUP_BOUNDS[g][0] >= lo and AGE_GROUP_BOUNDS[g][1] <= hi)


def parse_filters(platform: str, filters: object) -> CreatorQuery:
    """Validate a request's ``filters`` object for ``platform``.

    Args:
        platform: ``instagram`` or ``tiktok``.
        filters: the decoded JSON value (``None`` = no filters).

    Raises:
        InvalidParameter: naming ``filters.<name>`` (or ``filters.<name>.<key>``) and the rule:
            an unknown key, a TikTok-only filter on Instagram, a wrong type or value.
    """
    own = rules(platform)
    if filters is None:
        return CreatorQuery()
    if not isinstance(filters, dict):
        raise InvalidParameter("filters: must be an object")
    allowed = COMMON_FILTERS + own.extra_filters
    fields: dict[str, Any] = {}
    for key, value in filters.items():
        where = f"filters.{key}"
        if key in EXTRA_FILTERS and key not in own.extra_filters:
            having = ", ".join(p.name for p in RULES.values() if key in p.extra_filters)
            raise InvalidParameter(f"{where}: only available on {having}")
        if key not in allowed:
            raise InvalidParameter(f"{where}: unknown filter; allowed: {', '.join(allowed)}")
        if value is not None:
            fields.update(_PARSERS[key](value, where, platform))
    return CreatorQuery(**fields)


def check_page_size(platform: str, page_size: object) -> int:
    """The page size of ``platform`` (``Platform.page_size`` / ``page_size_max``): Instagram 6
    (fixed, ``pageSize`` must be absent), TikTok ``pageSize`` 1..50, default 10.

    Raises:
        InvalidParameter: ``pageSize`` broken, or given where pages are fixed.
    """
    own = rules(platform)
    if own.page_size_max is None:
        if page_size is not None:
            raise InvalidParameter(f"pageSize: not supported on {own.name} (pages hold {own.page_size} profiles)")
        return own.page_size
    if page_size is None:
        return own.page_size
    size = as_int(page_size)
    if size is None or not 1 <= size <= own.page_size_max:
        raise InvalidParameter(f"pageSize: must be an integer from 1 to {own.page_size_max}{_integral(page_size)}")
    return size


def check_page(page: object, page_size: int) -> int:
    """The 0-based page number: an integer >= 0 (``None`` = 0) with ``page * page_size`` <= 10000.

    Raises:
        InvalidParameter: naming ``page``.
    """
    if page is None:
        return 0
    number = as_int(page)
    if number is None or number < 0:
        raise InvalidParameter(f"page: must be an integer >= 0{_integral(page)}")
    if number * page_size > MAX_OFFSET:
        raise InvalidParameter(f"page: page * page size must be at most {MAX_OFFSET} (got {number} * {page_size})")
    return number


def snap_followers(
    lo: int | None, hi: int | None, steps: tuple[int, ...] = TIKTOK_FOLLOWER_STEPS
) -> tuple[int | None, int | None]:
    """Bucket snapping: ``lo`` down and ``hi`` up to ``steps`` (``Platform.follower_steps``; see
    ``platforms.TIKTOK_FOLLOWER_STEPS`` for values outside the range). ``None`` stays ``None``."""
    if lo is not None:
        below = [s for s in steps if s <= lo]
        lo = below[-1] if below else None
    if hi is not None:
        above = [s for s in steps if s >= hi]
        hi = above[0] if above else None
    return lo, hi


# --- one parser per filter: (value, field path, platform) -> CreatorQuery fields ----------------


def as_int(value: object) -> int | None:
    """``value`` as an integer if it is a JSON integer or an integral float (``1000.0``); else
    ``None`` (booleans, strings, ``1.5``, NaN and infinities included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _integral(value: object) -> str:
    """A hint for a number that is not integral, appended to a rule's message."""
    return f" (got {value!r}, not an integer)" if isinstance(value, float) and not isinstance(value, bool) else ""


def _object(value: object, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidParameter(f"{where}: must be an object with {' and/or '.join(keys)}")
    for key in value:
        if key not in keys:
            raise InvalidParameter(f"{where}.{key}: unknown key; allowed: {', '.join(keys)}")
    return {k: v for k, v in value.items() if v is not None}


def _choice(value: object, where: str, choices: tuple[Any, ...], fold: Callable[[str], str] | None = None) -> Any:
    if fold is not None and isinstance(value, str):
        value = fold(value)
    if isinstance(value, bool) or value not in choices:
        raise InvalidParameter(f"{where}: must be one of {', '.join(map(str, choices))}")
    return choices[choices.index(value)]  # the canonical member: 18, not 18.0


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_STRING_CHARS:
        raise InvalidParameter(f"{where}: must be a non-empty string of at most {MAX_STRING_CHARS} characters")
    return value.strip()


def _list(value: object, where: str, item: Callable[[object, str], Any]) -> frozenset[Any]:
    if not isinstance(value, list) or len(value) > MAX_LIST_ITEMS:
        raise InvalidParameter(f"{where}: must be a list of at most {MAX_LIST_ITEMS} items")
    return frozenset(item(v, f"{where}[{i}]") for i, v in enumerate(value))


def _followers(value: object, where: str, platform: str) -> dict[str, Any]:
    bounds = _object(value, where, ("min", "max"))
    for key, bound in bounds.items():
        number = as_int(bound)
        if number is None or not 0 <= number <= MAX_FOLLOWERS:
            raise InvalidParameter(f"{where}.{key}: must be an integer from 0 to {MAX_FOLLOWERS}{_integral(bound)}")
        bounds[key] = number
    lo, hi = bounds.get("min"), bounds.get("max")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidParameter(f"{where}: min must be <= max")
    if rules(platform).follower_steps:
        lo, hi = snap_followers(lo, hi, rules(platform).follower_steps)
    return {"followers_min": lo, "followers_max": hi}


def _location_id(value: object, where: str) -> int:
    number = as_int(value)
    if number is None or not 0 <= number <= MAX_ID:
        raise InvalidParameter(f"{where}: must be a location id (an integer from 0 to {MAX_ID}){_integral(value)}")
    return number


def _locations(value: object, where: str, platform: str) -> dict[str, Any]:
    return {"locations": _list(value, where, _location_id)}


def _gender(value: object, where: str, platform: str) -> dict[str, Any]:
    return {"gender": _choice(value, where, GENDER_FILTERS, str.upper)}


def _last_posted(value: object, where: str, platform: str) -> dict[str, Any]:
    days = as_int(value)
    if days is None or not 1 <= days <= MAX_DAYS:
        raise InvalidParameter(f"{where}: must be an integer from 1 to {MAX_DAYS} (days){_integral(value)}")
    return {"last_posted_in_days": days}


def _account_type(value: object, where: str, platform: str) -> dict[str, Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise InvalidParameter(f"{where}: must be one of {', '.join(ACCOUNT_TYPES)} or a non-empty list of them")
    names = [_choice(v, f"{where}[{i}]" if isinstance(value, list) else where, ACCOUNT_TYPES, str.lower)
             for i, v in enumerate(items)]  # fmt: skip
    return {"account_types": frozenset(names)}


def _language(value: object, where: str, platform: str) -> dict[str, Any]:
    code = value.lower() if isinstance(value, str) else None
    if code is None or not _LANGUAGE.match(code):
        raise InvalidParameter(f"{where}: must be an ISO 639-1 code (two letters, e.g. 'en')")
    return {"language": code}


def _age(value: object, where: str, platform: str) -> dict[str, Any]:
    bounds = _object(value, where, ("min", "max"))
    lo = _choice(_age_number(bounds["min"]), f"{where}.min", AGE_MINS) if "min" in bounds else None
    hi = _choice(_age_number(bounds["max"]), f"{where}.max", AGE_MAXES) if "max" in bounds else None
    if lo is not None and hi is not None and lo >= hi:
        raise InvalidParameter(f"{where}: min must be less than max")
    return {"age_min": lo, "age_max": hi}


def _age_number(value: object) -> object:
    """Modash types the age bounds as strings ("18"): a string of digits counts as its number."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def _engagement(value: object, where: str, platform: str) -> dict[str, Any]:
    bounds = _object(value, where, ("min",))
    lo = bounds.get("min")
    if lo is None:
        return {}
    if isinstance(lo, bool) or not isinstance(lo, (int, float)) or not 0.0 <= lo <= 1.0:
        raise InvalidParameter(f"{where}.min: must be a number from 0 to 1 (a fraction: 0.01 = 1%)")
    return {"engagement_rate_min": float(lo)}


def _has_email(value: object, where: str, platform: str) -> dict[str, Any]:
    if not isinstance(value, bool):
        raise InvalidParameter(f"{where}: must be true or false")
    return {"has_email": value}


def _brands(value: object, where: str, platform: str) -> dict[str, Any]:
    return {"brands": frozenset(b.lower() for b in _list(value, where, _string))}


def _username(value: object, where: str, platform: str) -> dict[str, Any]:
    name = _string(value, where).lstrip("@").lower()
    if not name:
        raise InvalidParameter(f"{where}: must name a user (more than '@')")
    return {"username": name}


def _max_post_age(value: object, where: str, platform: str) -> dict[str, Any]:
    return {"max_post_age_months": _choice(value, where, MAX_POST_AGE_MONTHS)}


def _content_type(value: object, where: str, platform: str) -> dict[str, Any]:
    return {"content_type": _choice(value, where, CONTENT_TYPES, str.lower)}


_PARSERS: dict[str, Callable[[object, str, str], dict[str, Any]]] = {
    "followersCount": _followers,
    "locations": _locations,
    "gender": _gender,
    "lastPostedInDays": _last_posted,
    "accountType": _account_type,
    "language": _language,
    "age": _age,
    "engagementRate": _engagement,
    "hasEmail": _has_email,
    "brands": _brands,
    "username": _username,
    "maxPostAgeMonths": _max_post_age,
    "contentType": _content_type,
}
