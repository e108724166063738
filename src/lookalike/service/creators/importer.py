"""Importing and refreshing creators: one JSON object per creator, with its posts.

A line is validated as a whole (``parse_creator``) before anything is read or written; then
only the images of new posts and of posts whose image bytes changed (SHA-256) are decoded
and embedded, and the creator is written in one transaction (``CreatorStore.upsert_creator``).
A bad line is reported with its line number and nothing of it is written; a crash leaves
every creator either as before or fully refreshed. A line whose content hash equals the
stored one is skipped without reading any image, so re-running an import resumes it.

Field names follow Modash's creator profile (https://docs.modash.io). A line (* required):

- ``platform`` (``instagram`` | ``tiktok``; else the caller's default), ``userId``*,
  ``username``*, ``fullName``, ``profilePicture``, ``followersCount``* (int >= 0),
  ``engagementRate`` (fraction 0..1, default 0), ``accountCategory``, ``accountType``
  (``creator`` | ``brand`` | null), ``gender`` (``MALE`` | ``FEMALE`` | ``UNKNOWN`` | null),
  ``ageGroup`` (one of ``AGE_GROUPS`` | null), ``locations`` (int ids), ``language``
  (ISO 639-1 | null), ``hasEmail`` (bool, default false), ``brands`` (strings),
  ``posts``* (a list of at most 1000, may be empty: the creator's complete post list).
- a post: ``id``* (unique within the line; an int is read as its decimal string), ``url``,
  ``thumbnail``, ``created_at``* (ISO 8601, UTC when no offset, or Unix seconds), ``type``
  (``image`` | ``video``, default image), ``stats`` (``likesCount``, ``commentsCount`` with
  -1 = hidden; TikTok also ``sharesCount``, ``playsCount``, ``collectsCount``; ints >= 0;
  keys missing stay missing, keys of the other platform are dropped), and exactly one of
  ``image_base64``, ``image_path`` (relative to the JSONL file's folder) or ``image_url`` (a
  local path or ``file://`` URI: the server never fetches remote URLs).

Other keys are ignored, since exports carry many more fields.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import InvalidParameter, LookalikeError, ModelMismatch
from ..imaging import decode_base64, decode_image
from ..models.base import Embedder
from ..store.creator_store import CreatorStore, PostUpsert
from ..store.creator_types import (
    ACCOUNT_TYPES,
    AGE_GROUPS,
    CONTENT_TYPES,
    GENDERS,
    PLATFORMS,
    CreatorRecord,
    PostRecord,
)
from .importer import BATCH_SIZE, local_uri_path, read_local_file

MAX_POSTS = 1000
MAX_ID_CHARS = 256
MAX_TEXT_CHARS = 2048
MAX_LIST_ITEMS = 1000
#: Post stats per platform (Modash): commentsCount is -1 when the creator hides comments.
STATS = {
    "instagram": ("likesCount", "commentsCount"),
    "tiktok": ("likesCount", "commentsCount", "sharesCount", "playsCount", "collectsCount"),
}
IMAGE_FIELDS = ("image_base64", "image_path", "image_url")

#: Image reads + decodes submitted ahead of the model, across creators: enough that the
#: worker threads never wait for the model or the store (at most 128 x (3, 224, 224) float32
#: inputs = 77 MB for efficientnet-lite0).
LOOKAHEAD_IMAGES = 4 * BATCH_SIZE
#: Lines admitted ahead at most, so a run of empty or unchanged lines is not parsed far ahead.
LOOKAHEAD_LINES = 4 * BATCH_SIZE


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


@dataclass
class CreatorImportOutcome:
    """What an import did.

    Attributes:
        imported: user ids written (new or refreshed), in input order.
        unchanged: user ids whose line equals the stored one (nothing read or written).
        failed: (where, message) of the lines skipped; the message starts with ``where``.
        posts_added, posts_removed: posts added to / dropped from the store.
        posts_embedded: images decoded and embedded (new posts and changed images).
    """

    imported: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    posts_added: int = 0
    posts_removed: int = 0
    posts_embedded: int = 0


# -- validation ------------------------------------------------------------------------


class _Line:
    """Typed access to one JSON object, raising ``InvalidParameter`` that names the path."""

    def __init__(self, obj: dict[str, Any], where: str, prefix: str = "") -> None:
        self.obj, self.where, self.prefix = obj, where, prefix

    def error(self, key: str, rule: str) -> InvalidParameter:
        return InvalidParameter(f"{self.where}: {self.prefix}{key}: {rule}")

    def text(self, key: str, *, required: bool = False, max_chars: int = MAX_TEXT_CHARS) -> str | None:
        value = self.obj.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value or len(value) > max_chars:
            raise self.error(key, f"{_required(value)}must be a non-empty string of at most {max_chars} characters")
        return value

    def integer(self, key: str, *, minimum: int, required: bool = False, default: int | None = None) -> int | None:
        value = self.obj.get(key)
        if value is None and not required:
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"{_required(value)}must be an integer >= {minimum}")
        return value

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
    return ParsedCreator(record=record, posts=posts, content_hash=_content_hash(obj, platform, posts))


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
        return float(value)
    if not isinstance(value, str):
        raise line.error("created_at", rule)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise line.error("created_at", f"'{value}' is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:  # no offset given: read as UTC, as Modash's timestamps are
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _stats(raw: object, where: str, path: str, platform: str) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidParameter(f"{where}: {path}: must be an object")
    line = _Line(raw, where, f"{path}.")
    stats: dict[str, int] = {}
    for key in STATS[platform]:
        value = line.integer(key, minimum=-1 if key == "commentsCount" else 0)
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


# -- importing -------------------------------------------------------------------------


@dataclass(frozen=True)
class _BadJson:
    message: str


@dataclass(frozen=True)
class _Loaded:
    sha256: str
    pixels: np.ndarray | None  # (3, S, S) float32 model input; None: image unchanged


class CreatorImporter:
    """Imports and refreshes creators (see the module docstring).

    Args:
        store: where creators go.
        models: model id -> loaded model (``ModelUnavailable`` if missing).
        settings: byte and pixel limits, import roots, the default model.
        workers: threads that read, hash and decode images while the model embeds.
    """

    def __init__(
        self, store: CreatorStore, models: Callable[[str], Embedder], settings: Settings, workers: int = 2
    ) -> None:
        self._store = store
        self._models = models
        self._settings = settings
        self._workers = workers

    def import_jsonl(
        self, path: Path, *, default_platform: str | None = None, progress: Callable[[int], None] | None = None
    ) -> CreatorImportOutcome:
        """Import a JSONL file, one creator a line (blank lines skipped); lines are named
        ``line N`` (1-based) and a line that is not JSON is reported in ``failed``.

        Raises:
            OSError: the file cannot be opened. Otherwise as ``import_creators``.
        """
        return self.import_creators(
            _jsonl(path), base_dir=path.resolve().parent, default_platform=default_platform, progress=progress
        )

    def import_creators(
        self,
        items: Iterable[tuple[str, object]],
        *,
        base_dir: Path | None = None,
        default_platform: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> CreatorImportOutcome:
        """Import (where, decoded JSON line) pairs, one creator each, in order.

        Each creator is written in its own transaction; a bad one is reported in ``failed``
        and nothing of it is written. Images are embedded with ``store.model_id()`` (else
        ``settings.default_model``), loaded only when some line needs an embedding.

        Lines are pipelined (see ``_Pipeline``): the images of the next creators are read
        and decoded on the worker threads while the model embeds the current one, at most
        ``LOOKAHEAD_IMAGES`` ahead; creators are still checked, written and reported in
        input order, and a line waits for an earlier line of the same creator to be written.

        Args:
            base_dir: folder relative image paths are resolved against.
            default_platform: platform for lines without ``platform``.
            progress: called with 1 after each item, in input order.

        Raises:
            InvalidParameter: ``default_platform`` is not a platform.
            ModelUnavailable, ModelMismatch: the model cannot be loaded or differs from the
                stored embeddings'. Errors of the model itself propagate: creators written
                before stay written, the current one is untouched.
        """
        if default_platform is not None and default_platform not in PLATFORMS:
            raise InvalidParameter(f"platform: must be one of {', '.join(PLATFORMS)}")
        outcome = CreatorImportOutcome()
        with ThreadPoolExecutor(self._workers) as pool:
            _Pipeline(self, items, base_dir, default_platform, pool, outcome).run(progress)
        return outcome

    def _parse(self, where: str, obj: object, base_dir: Path | None, default_platform: str | None) -> ParsedCreator:
        if isinstance(obj, _BadJson):
            raise InvalidParameter(f"{where}: {obj.message}")
        return parse_creator(obj, where, default_platform, base_dir)

    def _load_model(self) -> Embedder:
        stored = self._store.model_id()
        model = self._models(stored or self._settings.default_model)
        dim = self._store.embedding_dim()
        if (stored is not None and model.info.model_id != stored) or (dim is not None and model.info.image_dim != dim):
            raise ModelMismatch(
                f"the creator store holds {dim}-dimensional embeddings of model '{stored}', but that model now "
                f"gives {model.info.image_dim}-dimensional ones ('{model.info.model_id}')"
            )
        return model

    def _load(self, post: ParsedPost, stored_sha: str | None, model: Embedder) -> _Loaded:
        """Read and hash the image; decode and preprocess it only if it is new or changed."""
        where = f"{post.where}.{post.image_field}"
        limit = self._settings.max_import_bytes
        if post.image_base64 is not None:
            data = decode_base64(post.image_base64, field=where, max_bytes=limit)
        else:
            data = read_local_file(post.image_file, where, limit, self._settings.import_roots)
        sha = hashlib.sha256(data).hexdigest()
        if sha == stored_sha:
            return _Loaded(sha, None)
        image = decode_image(data, field=where, max_pixels=self._settings.max_image_pixels)
        return _Loaded(sha, model.preprocess(image))


@dataclass(eq=False)
class _Entry:
    """A line between admission and its report. ``parsed`` None: failed at parse (``error``)."""

    where: str
    parsed: ParsedCreator | None = None
    error: str | None = None
    unchanged: bool = False
    stored: dict[str, str] = field(default_factory=dict)  # post_id -> stored image SHA-256
    submitted: int = 0  # posts whose load is submitted
    consumed: int = 0  # posts whose load was taken off the queue

    @property
    def writes(self) -> bool:
        return self.parsed is not None and not self.unchanged

    @property
    def key(self) -> tuple[str, str]:
        return self.parsed.record.platform, self.parsed.record.user_id


class _Pipeline:
    """One ``import_creators`` run.

    The main thread admits lines in order (parse, unchanged check, stored image hashes) and
    submits their image loads to the pool while fewer than ``LOOKAHEAD_IMAGES`` are
    unconsumed, so reading and decoding the next creators overlaps embedding and writing the
    current one. Loads are consumed in submission order; the front line is embedded in
    batches of at most ``BATCH_SIZE`` and written as soon as its last post is embedded.
    Batches never span creators, so a model error leaves every earlier creator written and
    no later one touched. A line of a creator that an admitted line will write waits until
    that line is done: it must compare with what that line wrote.
    """

    def __init__(
        self, importer: CreatorImporter, items: Iterable[tuple[str, object]], base_dir: Path | None,
        default_platform: str | None, pool: ThreadPoolExecutor, outcome: CreatorImportOutcome,
    ) -> None:
        self._imp, self._items, self._pool, self._outcome = importer, iter(items), pool, outcome
        self._base_dir, self._default_platform = base_dir, default_platform
        self._lines: deque[_Entry] = deque()  # admitted, not yet reported, in input order
        self._loads: deque[Future[_Loaded]] = deque()  # submitted, not yet consumed, in order
        self._writing: set[tuple[str, str]] = set()  # keys of admitted lines that write
        self._held: _Entry | None = None  # parsed, waiting for an earlier line of its creator
        self._model: Embedder | None = None

    def run(self, progress: Callable[[int], None] | None) -> None:
        try:
            self._fill()
            while self._lines:
                entry = self._lines[0]
                if entry.writes and entry.error is None:
                    self._import(entry)
                self._lines.popleft()
                if entry.writes:
                    self._writing.discard(entry.key)
                self._report(entry)
                if progress is not None:
                    progress(1)
                self._fill()
        finally:
            for future in self._loads:
                future.cancel()

    # -- admission ----------------------------------------------------------------------

    def _fill(self) -> None:
        """Submit loads, admitting lines as needed, until ``LOOKAHEAD_IMAGES`` are pending."""
        while len(self._loads) < LOOKAHEAD_IMAGES:
            tail = self._lines[-1] if self._lines else None
            if tail is not None and tail.writes and tail.error is None and tail.submitted < len(tail.parsed.posts):
                post = tail.parsed.posts[tail.submitted]
                self._loads.append(self._pool.submit(
                    self._imp._load, post, tail.stored.get(post.record.post_id), self._model))
                tail.submitted += 1
            elif len(self._lines) >= LOOKAHEAD_LINES or not self._admit():
                return

    def _admit(self) -> bool:
        """Admit the next line; False at the end, or while it waits for its creator."""
        if self._held is None:
            item = next(self._items, None)
            if item is None:
                return False
            where, obj = item
            try:
                self._held = _Entry(where, self._imp._parse(where, obj, self._base_dir, self._default_platform))
            except LookalikeError as exc:
                self._lines.append(_Entry(where, error=_located(where, exc)))
                return True
        entry = self._held
        if entry.key in self._writing:
            return False
        self._held = None
        store = self._imp._store
        if store.content_hash(*entry.key) == entry.parsed.content_hash:
            entry.unchanged = True
        else:
            if self._model is None:
                self._model = self._imp._load_model()
            entry.stored = store.post_hashes(*entry.key)
            self._writing.add(entry.key)
        self._lines.append(entry)
        return True

    # -- the front line -----------------------------------------------------------------

    def _import(self, entry: _Entry) -> None:
        """Embed the front line's new and changed images and write it; on a bad image or a
        refused write, set ``error`` and drop its remaining loads."""
        try:
            posts, embedded = self._embed(entry)
            report = self._imp._store.upsert_creator(
                entry.parsed.record, posts, entry.parsed.content_hash, self._model.info.model_id)
        except LookalikeError as exc:
            entry.error = _located(entry.where, exc)  # stops _fill submitting more of its posts
            for _ in range(entry.submitted - entry.consumed):
                self._loads.popleft().cancel()
            return
        self._outcome.posts_added += report.added
        self._outcome.posts_removed += report.removed
        self._outcome.posts_embedded += embedded

    def _embed(self, entry: _Entry) -> tuple[list[PostUpsert], int]:
        """Every post's (record, image SHA-256, embedding or None when unchanged) and the
        number of images embedded. Raises the first bad image's error."""
        posts = entry.parsed.posts
        shas: list[str] = []
        vectors: list[np.ndarray | None] = [None] * len(posts)
        batch: list[tuple[int, np.ndarray]] = []
        for i in range(len(posts)):
            # The front line's loads lead the queue: earlier lines' are consumed or dropped,
            # and _fill submits the rest of a partly submitted line before admitting another.
            future = self._loads.popleft()
            entry.consumed += 1
            self._fill()
            loaded = future.result()
            shas.append(loaded.sha256)
            if loaded.pixels is not None:
                batch.append((i, loaded.pixels))
            if batch and (len(batch) == BATCH_SIZE or i == len(posts) - 1):
                self._flush(batch, vectors)
        embedded = sum(v is not None for v in vectors)
        return [(p.record, sha, v) for p, sha, v in zip(posts, shas, vectors, strict=True)], embedded

    def _flush(self, batch: list[tuple[int, np.ndarray]], vectors: list[np.ndarray | None]) -> None:
        visual = self._model.embed_pixels(np.stack([pixels for _, pixels in batch])).visual
        for (i, _), vector in zip(batch, visual, strict=True):
            vectors[i] = vector
        batch.clear()

    def _report(self, entry: _Entry) -> None:
        if entry.error is not None:
            self._outcome.failed.append((entry.where, entry.error))
        elif entry.unchanged:
            self._outcome.unchanged.append(entry.parsed.record.user_id)
        else:
            self._outcome.imported.append(entry.parsed.record.user_id)


def _located(where: str, exc: LookalikeError) -> str:
    return exc.message if exc.message.startswith(where) else f"{where}: {exc.message}"


def _jsonl(path: Path) -> Iterator[tuple[str, object]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield f"line {number}", json.loads(raw)
            except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
                yield f"line {number}", _BadJson(f"not valid JSON ({getattr(exc, 'msg', exc)})")


def count_lines(path: Path) -> int:
    """Number of non-blank lines of a JSONL file: the items ``import_jsonl`` reports on."""
    with path.open("rb") as fh:
        return sum(1 for raw in fh if raw.strip())
