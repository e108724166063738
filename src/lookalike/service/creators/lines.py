"""The creator import's line format: one JSON object per creator, with its posts, parsed and validated.

The pipeline that reads images, embeds and writes them (and what a bad line or a crash
leaves) is ``importer.py``; a line is validated as a whole (``parse_creator``) before anything
is read or written.

Field names follow Modash's creator profile (https://docs.modash.io). A line (* required):

- ``platform`` (``instagram`` | ``tiktok``; else the caller's default), ``userId``*,
  ``username``*, ``fullName``, ``profilePicture``, ``followersCount``* (int >= 0),
  ``engagementRate`` (fraction 0..1; absent: computed from the posts, ``engagement_rate``),
  ``accountCategory``, ``accountType``
  (``creator`` | ``brand`` | null), ``gender`` (``MALE`` | ``FEMALE`` | ``UNKNOWN`` | null),
  ``ageGroup`` (one of ``AGE_GROUPS`` | null), ``locations`` (int ids), ``language``
  (ISO 639-1 | null), ``hasEmail`` (bool, default false), ``brands`` (strings),
  ``posts``* (a list of at most 1000, may be empty: the creator's complete post list).
- a post: ``id``* (unique within the line; an int is read as its decimal string), ``url``,
  ``thumbnail``, ``created_at``* (ISO 8601, UTC when no offset, or Unix seconds), ``type``
  (``image`` | ``video``, default image), ``stats`` (``likesCount``, ``commentsCount``; TikTok
  also ``sharesCount``, ``playsCount``, ``collectsCount``; integers >= 0, or ``HIDDEN`` (-1)
  where the creator hides the count, as Modash's documents have it; keys missing stay missing,
  keys of the other platform are dropped), and exactly one of
  ``image_base64``, ``image_path`` (relative to the JSONL file's folder) or ``image_url`` (a
  local path or ``file://`` URI: the server never fetches remote URLs).

Other keys are ignored, since exports carry many more fields.

``profilePicture``, ``accountCategory`` and a post's ``url`` and ``thumbnail`` are optional here
although Modash's responses require them: the API answers ``""`` (never ``null``) for one that
was not imported (``api/modash.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, overload

from ...errors import InvalidParameter
from ...store.creator_types import (
    ACCOUNT_TYPES,
    AGE_GROUPS,
    CONTENT_TYPES,
    GENDERS,
    PLATFORMS,
    CreatorRecord,
    PostRecord,
)
from ..importer import local_uri_path
from .filters import as_int
from .platforms import RULES

MAX_POSTS = 1000
MAX_ID_CHARS = 256
#: Largest count (followers, likes, ...): beyond any platform, far inside SQLite's 64-bit integers.
MAX_COUNT = 10**15
#: How far in the future a post's ``created_at`` may be (clock skew between systems), seconds.
FUTURE_SKEW_S = 86_400
MAX_TEXT_CHARS = 2048
MAX_LIST_ITEMS = 1000
IMAGE_FIELDS = ("image_base64", "image_path", "image_url")
#: A count the creator hides (Modash: likes and comments are -1 when hidden).
HIDDEN = -1
#: The interaction counts an engagement rate sums (Modash: likes + comments over followers).
ENGAGEMENT_STATS = ("likesCount", "commentsCount")

@dataclass(frozen=True)
class ParsedPost:
    """A validated post and where its image comes from.

    Attributes:
        where: names the post in errors, e.g. ``line 12: posts[3]``.
        image_field: the line's image key: ``image_base64``, ``image_path`` or ``image_url``.
        image_base64: the base64 text (``image_field == "image_base64"``).
        image_file: the local file, relative paths resolved against the JSONL file's folder.
    """

    record: PostRecord
    where: str
    image_field: str
    image_base64: str | None = None
    image_file: Path | None = None


@dataclass(frozen=True)
class ParsedCreator:
    """A validated line. ``content_hash``: SHA-256 hex of the canonical JSON of the line, its
    platform, and the size and mtime of every local image file it names (so replacing a file
    at the same path counts as a change)."""

    record: CreatorRecord
    posts: list[ParsedPost]
    content_hash: str


class _Line:
    """Typed access to one JSON object, raising ``InvalidParameter`` that names the path."""

    def __init__(self, obj: dict[str, Any], where: str, prefix: str = "") -> None:
        self.obj, self.where, self.prefix = obj, where, prefix

    def error(self, key: str, rule: str) -> InvalidParameter:
        return InvalidParameter(f"{self.where}: {self.prefix}{key}: {rule}")

    @overload
    def text(self, key: str, *, required: Literal[True], max_chars: int = MAX_TEXT_CHARS) -> str: ...
    @overload
    def text(self, key: str, *, required: bool = False, max_chars: int = MAX_TEXT_CHARS) -> str | None: ...

    def text(self, key: str, *, required: bool = False, max_chars: int = MAX_TEXT_CHARS) -> str | None:
        value = self.obj.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value or len(value) > max_chars:
            raise self.error(key, f"{_required(value)}must be a non-empty string of at most {max_chars} characters")
        return value

    @overload
    def integer(self, key: str, *, minimum: int, required: Literal[True]) -> int: ...
    @overload
    def integer(self, key: str, *, minimum: int, required: bool = False, default: int | None = None) -> int | None: ...

    def integer(self, key: str, *, minimum: int, required: bool = False, default: int | None = None) -> int | None:
        value = self.obj.get(key)
        if value is None and not required:
            return default
        number = as_int(value)
        if number is None or number < minimum:
            raise self.error(key, f"{_required(value)}must be an integer >= {minimum}")
        if number > MAX_COUNT:
            raise self.error(key, f"must be an integer >= {minimum} and at most {MAX_COUNT}")
        return number

    @overload
    def choice(self, key: str, options: tuple[str, ...], *, default: str) -> str: ...
    @overload
    def choice(self, key: str, options: tuple[str, ...], *, default: None = None) -> str | None: ...

    def choice(self, key: str, options: tuple[str, ...], *, default: str | None = None) -> str | None:
        value = self.obj.get(key)
        if value is None:
            return default
        if value not in options:
            raise self.error(key, f"must be one of {', '.join(options)} or null")
        return value

    def items(self, key: str, kind: type, rule: str) -> list:
        """A list (null: empty) of at most ``MAX_LIST_ITEMS`` items of ``kind``; ``rule``
        describes one item, e.g. ``an integer location id``."""
        value = self.obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > MAX_LIST_ITEMS:
            raise self.error(key, f"must be a list of at most {MAX_LIST_ITEMS} items, each {rule}")
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, kind) or (kind is str and not item):
                raise self.error(f"{key}[{i}]", f"must be {rule}")
        return value


def _required(value: object) -> str:
    return "is required and " if value is None else ""


def parse_creator(
    obj: object, where: str, default_platform: str | None = None, base_dir: Path | None = None
) -> ParsedCreator:
    """Validate one line: a creator with its posts (see the module docstring for the keys).

    Args:
        obj: the decoded JSON value of the line.
        where: names the line in errors, e.g. ``line 12``.
        default_platform: used when the line has no ``platform``.
        base_dir: folder relative ``image_path`` / ``image_url`` paths are resolved against
            (the JSONL file's); None: the working directory.

    Raises:
        InvalidParameter / InvalidImage: ``"{where}: {field path}: {rule}"``, e.g.
            ``line 12: posts[3].stats.likesCount: must be an integer >= 0``. Images are not
            read here; a remote ``image_url`` is refused here already.
    """
    if not isinstance(obj, dict):
        raise InvalidParameter(f"{where}: must be a JSON object (one creator per line)")
    line = _Line(obj, where)
    platform = obj.get("platform", default_platform)
    if platform not in PLATFORMS:
        raise line.error("platform", f"must be one of {', '.join(PLATFORMS)} (or give --platform)")
    record = _creator(line, platform)
    raw_posts = obj.get("posts")
    if not isinstance(raw_posts, list) or len(raw_posts) > MAX_POSTS:
        raise line.error("posts", f"is required: a list of at most {MAX_POSTS} posts (may be empty)")
    posts: list[ParsedPost] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_posts):
        post = _post(raw, where, i, record, base_dir)
        first = seen.setdefault(post.record.post_id, i)
        if first != i:
            raise InvalidParameter(f"{where}: posts[{i}].id: '{post.record.post_id}' repeats posts[{first}].id")
        posts.append(post)
    if obj.get("engagementRate") is None:
        rate = engagement_rate(record.followers_count, [p.record.stats for p in posts])
        record = replace(record, engagement_rate=rate)
    return ParsedCreator(record=record, posts=posts, content_hash=_content_hash(obj, platform, posts))


def engagement_rate(followers: int, stats: list[dict[str, int]]) -> float:
    """The engagement rate of a creator imported without one: the mean over its posts of
    (likes + comments) / followers, a fraction clipped to 0..1 (Modash's definition).

    A hidden count (``HIDDEN``, -1) is unknown, not zero: it is left out of its post's sum, and a
    post whose every count is hidden or missing is left out of the mean, so hiding likes never
    lowers (nor, at -1, inverts) the rate. 0.0 without followers or without a post to count.
    """
    per_post = []
    for post in stats:
        shown = [post[k] for k in ENGAGEMENT_STATS if post.get(k, HIDDEN) != HIDDEN]
        if shown:
            per_post.append(sum(shown))
    if followers <= 0 or not per_post:
        return 0.0
    return min(1.0, sum(per_post) / len(per_post) / followers)


def _creator(line: _Line, platform: str) -> CreatorRecord:
    rate = line.obj.get("engagementRate")
    if rate is None:
        rate = 0.0
    elif isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise line.error("engagementRate", "must be a fraction between 0 and 1 (0.01 = 1%)")
    gender = line.obj.get("gender")
    if isinstance(gender, str) and gender.upper() in (*GENDERS, "UNKNOWN"):
        gender = None if gender.upper() == "UNKNOWN" else gender.upper()
    elif gender is not None:
        raise line.error("gender", "must be MALE, FEMALE, UNKNOWN or null")
    language = line.obj.get("language")
    if language is not None and not (isinstance(language, str) and len(language) == 2 and language.isascii()
                                     and language.isalpha()):
        raise line.error("language", "must be a two-letter ISO 639-1 code or null")
    has_email = line.obj.get("hasEmail", False)
    if not isinstance(has_email, bool):
        raise line.error("hasEmail", "must be true or false")
    return CreatorRecord(
        platform=platform,
        user_id=line.text("userId", required=True, max_chars=MAX_ID_CHARS),
        username=line.text("username", required=True, max_chars=MAX_ID_CHARS),
        full_name=line.text("fullName"),
        profile_picture=line.text("profilePicture"),
        followers_count=line.integer("followersCount", minimum=0, required=True),
        engagement_rate=float(rate),
        account_category=line.text("accountCategory"),
        account_type=line.choice("accountType", ACCOUNT_TYPES),
        gender=gender,
        age_group=line.choice("ageGroup", AGE_GROUPS),
        location_ids=tuple(dict.fromkeys(line.items("locations", int, "an integer location id"))),
        language=language.lower() if language else None,
        has_email=has_email,
        brands=tuple(dict.fromkeys(line.items("brands", str, "a non-empty string"))),
    )


def _post(raw: object, where: str, i: int, creator: CreatorRecord, base_dir: Path | None) -> ParsedPost:
    prefix = f"posts[{i}]"
    if not isinstance(raw, dict):
        raise InvalidParameter(f"{where}: {prefix}: must be an object")
    line = _Line(raw, where, f"{prefix}.")
    post_id = raw.get("id")
    if isinstance(post_id, int) and not isinstance(post_id, bool):
        post_id = str(post_id)  # numeric ids in some exports; stored as text like the rest
    line.obj = {**raw, "id": post_id}
    record = PostRecord(
        post_id=line.text("id", required=True, max_chars=MAX_ID_CHARS),
        user_id=creator.user_id,
        url=line.text("url"),
        thumbnail=line.text("thumbnail"),
        created_at=_timestamp(line, raw.get("created_at")),
        content_type=line.choice("type", CONTENT_TYPES, default="image"),
        stats=_stats(raw.get("stats"), where, f"{prefix}.stats", creator.platform),
    )
    return _image_source(line, record, where, prefix, base_dir)


def _timestamp(line: _Line, value: object) -> float:
    rule = "is required: an ISO 8601 date-time string or Unix seconds >= 0"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise line.error("created_at", rule)
        return _not_future(line, float(value))
    if not isinstance(value, str):
        raise line.error("created_at", rule)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise line.error("created_at", f"'{value}' is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:  # no offset given: read as UTC, as Modash's timestamps are
        moment = moment.replace(tzinfo=UTC)
    return _not_future(line, moment.timestamp())


def _not_future(line: _Line, seconds: float) -> float:
    """``seconds`` unless later than now + ``FUTURE_SKEW_S`` (a post cannot be from the future;
    one that claims so would count as "recent" in ``lastPostedInDays`` for ever)."""
    limit = time.time() + FUTURE_SKEW_S
    if seconds > limit:
        when = datetime.fromtimestamp(limit, UTC).isoformat(timespec="seconds")
        raise line.error("created_at", f"is in the future (after {when}, now + {FUTURE_SKEW_S // 3600} h of clock skew)")
    return seconds


def _stats(raw: object, where: str, path: str, platform: str) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidParameter(f"{where}: {path}: must be an object")
    line = _Line(raw, where, f"{path}.")
    stats: dict[str, int] = {}
    for key in RULES[platform].stats:
        value = line.integer(key, minimum=HIDDEN)
        if value is not None:
            stats[key] = value
    return stats


def _image_source(line: _Line, record: PostRecord, where: str, prefix: str, base_dir: Path | None) -> ParsedPost:
    given = [k for k in IMAGE_FIELDS if line.obj.get(k) is not None]
    if len(given) != 1:
        raise InvalidParameter(f"{where}: {prefix}: needs exactly one of {', '.join(IMAGE_FIELDS)}"
                               + (f" (got {', '.join(given)})" if given else ""))
    key = given[0]
    value = line.text(key, required=True, max_chars=64 * 1024 * 1024 if key == "image_base64" else MAX_TEXT_CHARS)
    post_where = f"{where}: {prefix}"
    if key == "image_base64":
        return ParsedPost(record=record, where=post_where, image_field=key, image_base64=value)
    path = Path(value).expanduser() if key == "image_path" else local_uri_path(
        value, f"{post_where}.image_url", alternative="image_base64 or image_path")
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return ParsedPost(record=record, where=post_where, image_field=key, image_file=path)


def _content_hash(obj: dict, platform: str, posts: list[ParsedPost]) -> str:
    digest = hashlib.sha256(json.dumps([platform, obj], sort_keys=True, ensure_ascii=False).encode())
    for post in posts:
        if post.image_file is not None:
            try:
                st = post.image_file.stat()
                digest.update(f"\0{post.image_file}\0{st.st_size}\0{st.st_mtime_ns}".encode())
            except OSError:
                digest.update(f"\0{post.image_file}\0missing".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class BadJson:
    """A line that is not valid JSON; ``message`` says why."""

    message: str


def read_jsonl(path: Path) -> Iterator[tuple[str, object]]:
    """(``line N``, the parsed JSON value or a ``BadJson``) for each non-blank line of ``path``."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield f"line {number}", json.loads(raw)
            except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
                yield f"line {number}", BadJson(f"not valid JSON ({getattr(exc, 'msg', exc)})")


def count_lines(path: Path) -> int:
    """Number of non-blank lines of a JSONL file: the items ``import_jsonl`` reports on."""
    with path.open("rb") as fh:
        return sum(1 for raw in fh if raw.strip())
