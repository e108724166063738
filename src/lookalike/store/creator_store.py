"""Durable creators and posts in their own SQLite file, and the columnar snapshot searches use.

SQLite in WAL mode with ``synchronous=FULL`` like ``catalog.py``: a committed transaction
survives a crash or power loss (https://www.sqlite.org/wal.html). Every write to a creator
is one transaction that also bumps its platform's ``version``; ``snapshot()`` compares that
counter (one indexed ``SELECT``) with the cached snapshot's, so a running server sees a CLI
import made by another process before its next search, without a restart.

Post embeddings are stored as float32 BLOBs together with the SHA-256 of the image bytes
they were computed from, so a refresh re-embeds only posts whose image changed.
Every statement binds its values as parameters: no input is ever spliced into SQL.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import Conflict, CreatorNotFound, InvalidParameter, ModelMismatch
from .creator_types import (
    PLATFORMS,
    CreatorColumns,
    CreatorRecord,
    CreatorSnapshot,
    PostColumns,
    PostRecord,
)
from .sqlite import SQLiteStore, chunks

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    platform TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS creators (
    platform TEXT NOT NULL,
    user_id TEXT NOT NULL,
    username TEXT NOT NULL,
    full_name TEXT,
    profile_picture TEXT,
    followers_count INTEGER NOT NULL,
    engagement_rate REAL NOT NULL,
    account_category TEXT,
    account_type TEXT,
    gender TEXT,
    age_group TEXT,
    location_ids TEXT NOT NULL,
    language TEXT,
    has_email INTEGER NOT NULL,
    brands TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (platform, user_id)
);
CREATE TABLE IF NOT EXISTS posts (
    platform TEXT NOT NULL,
    post_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    url TEXT,
    thumbnail TEXT,
    created_at REAL NOT NULL,
    content_type TEXT NOT NULL,
    stats TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    embedding BLOB NOT NULL,
    PRIMARY KEY (platform, post_id),
    FOREIGN KEY (platform, user_id) REFERENCES creators (platform, user_id) ON DELETE CASCADE
);
-- Matches the snapshot's and recent_posts' order, so neither needs a sort.
CREATE INDEX IF NOT EXISTS posts_by_creator ON posts (platform, user_id, created_at DESC, post_id);
"""

_CREATOR_COLUMNS = (
    "platform, user_id, username, full_name, profile_picture, followers_count, engagement_rate, account_category,"
    " account_type, gender, age_group, location_ids, language, has_email, brands, updated_at"
)
_POST_COLUMNS = "post_id, user_id, url, thumbnail, created_at, content_type, stats"

PostUpsert = tuple[PostRecord, str, "np.ndarray | None"]
"""One listed post for ``upsert_creator``: (record, SHA-256 hex of its image bytes, embedding
(d,) float32 or None to keep the stored one)."""


@dataclass(frozen=True)
class UpsertReport:
    """What ``upsert_creator`` did to the creator's posts.

    Attributes:
        added: posts not stored before.
        updated: stored posts whose image changed (re-embedded).
        removed: stored posts no longer listed (deleted).
        kept: stored posts with the same image (embedding kept; url, stats etc. refreshed).
    """

    added: int
    updated: int
    removed: int
    kept: int


def _creator(row: sqlite3.Row) -> CreatorRecord:
    return CreatorRecord(
        platform=row["platform"],
        user_id=row["user_id"],
        username=row["username"],
        full_name=row["full_name"],
        profile_picture=row["profile_picture"],
        followers_count=row["followers_count"],
        engagement_rate=row["engagement_rate"],
        account_category=row["account_category"],
        account_type=row["account_type"],
        gender=row["gender"],
        age_group=row["age_group"],
        location_ids=tuple(json.loads(row["location_ids"])),
        language=row["language"],
        has_email=bool(row["has_email"]),
        brands=tuple(json.loads(row["brands"])),
        updated_at=row["updated_at"],
    )


def _post(row: sqlite3.Row) -> PostRecord:
    return PostRecord(
        post_id=row["post_id"],
        user_id=row["user_id"],
        url=row["url"],
        thumbnail=row["thumbnail"],
        created_at=row["created_at"],
        content_type=row["content_type"],
        stats=json.loads(row["stats"]),
    )


class CreatorStore(SQLiteStore):
    """Creators and their posts in SQLite (see module docstring). Thread-safe: one
    connection guarded by a lock, as ``Catalog``.

    Args:
        db_path: database file (the runtime passes ``<data_dir>/creators.db``); parent
            folders are created.
    """

    def __init__(self, db_path: Path) -> None:
        super().__init__(db_path, SCHEMA)
        self._snapshots: dict[str, CreatorSnapshot] = {}

    # -- model ------------------------------------------------------------------------

    def model_id(self) -> str | None:
        """The model that embedded the stored posts, recorded by the first import; None before."""
        return self._meta("model_id")

    def embedding_dim(self) -> int | None:
        """Size d of the stored post embeddings; None before the first embedded post."""
        value = self._meta("dim")
        return int(value) if value is not None else None

    def _meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def _check_model(self, conn: sqlite3.Connection, model_id: str, vectors: list[np.ndarray]) -> None:
        """Record the model (and embedding size) on first use; refuse another one later.

        A different model is accepted only while no post is stored at all, so that a store
        never mixes embedding spaces.
        """
        meta = {r["key"]: r["value"] for r in conn.execute("SELECT key, value FROM meta")}
        dims = {int(v.shape[0]) for v in vectors}
        if len(dims) > 1:
            raise ModelMismatch(f"embeddings of one import differ in size: {sorted(dims)}")
        empty = conn.execute("SELECT 1 FROM posts LIMIT 1").fetchone() is None
        stored_model, stored_dim = meta.get("model_id"), meta.get("dim")
        if stored_model is not None and stored_model != model_id and not empty:
            raise ModelMismatch(
                f"the creator store was built with model '{stored_model}', not '{model_id}'; "
                "import with that model or start a new data dir"
            )
        if stored_dim is not None and dims and int(stored_dim) not in dims and not empty:
            raise ModelMismatch(
                f"the creator store holds {stored_dim}-dimensional embeddings, not {dims.pop()}-dimensional ones"
            )
        if stored_model != model_id:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('model_id', ?)", (model_id,))
        if dims and (stored_dim is None or empty):
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('dim', ?)", (str(dims.pop()),))

    # -- writes -----------------------------------------------------------------------

    def _bump(self, conn: sqlite3.Connection, platform: str) -> int:
        return conn.execute(
            "INSERT INTO versions (platform, version) VALUES (?, 1)"
            " ON CONFLICT (platform) DO UPDATE SET version = version + 1 RETURNING version",
            (platform,),
        ).fetchone()[0]

    def upsert_creator(
        self, creator: CreatorRecord, posts: Sequence[PostUpsert], content_hash: str, model_id: str
    ) -> UpsertReport:
        """Insert or refresh a creator and its full list of posts, in one transaction.

        The profile is replaced; listed posts not stored are added (embedding required);
        stored posts whose image hash changed are re-embedded (embedding required); stored
        posts with the same hash keep their embedding (None allowed) while url, thumbnail,
        created_at, type and stats are refreshed; stored posts not listed are deleted.

        Args:
            creator: the profile (``updated_at`` is set to now, Unix seconds).
            posts: (record, SHA-256 hex of the image bytes, (d,) float32 L2-normalised
                embedding or None); post ids unique.
            content_hash: hash of the imported line, returned by ``content_hash()`` later.
            model_id: the model that computed the embeddings.

        Raises:
            InvalidParameter: unknown platform, a duplicate post id, a post of another user,
                or a missing / malformed embedding.
            Conflict: a post id that belongs to another creator of the platform.
            ModelMismatch: another model or embedding size than the stored posts'.
        """
        return self.upsert_creators([(creator, posts, content_hash)], model_id)[0]

    def upsert_creators(
        self, items: Sequence[tuple[CreatorRecord, Sequence[PostUpsert], str]], model_id: str
    ) -> list[UpsertReport]:
        """:meth:`upsert_creator` for several creators in one transaction (bulk loads: one
        commit, so one fsync, per batch instead of per creator). All or none are written.

        Args:
            items: (creator, posts, content_hash) as for :meth:`upsert_creator`.
            model_id: the model that computed the embeddings.

        Raises:
            As :meth:`upsert_creator`, for the first item that fails (nothing is written).
        """
        checked = []
        for creator, posts, content_hash in items:
            platform, user_id = creator.platform, creator.user_id
            if platform not in PLATFORMS:
                raise InvalidParameter(f"platform: must be one of {', '.join(PLATFORMS)}")
            vectors = [self._check_post(creator, record, vector) for record, _, vector in posts]
            listed = [record.post_id for record, _, _ in posts]
            if len(set(listed)) != len(listed):
                raise InvalidParameter(f"creator '{user_id}': post ids must be unique")
            checked.append((creator, posts, content_hash, vectors, listed))
        reports = []
        with self._write() as conn:
            self._check_model(conn, model_id, [v for c in checked for v in c[3] if v is not None])
            for creator, posts, content_hash, vectors, listed in checked:
                reports.append(self._upsert(conn, creator, posts, content_hash, vectors, listed))
            for platform in sorted({c[0].platform for c in checked}):
                self._bump(conn, platform)
        return reports

    def _upsert(
        self, conn: sqlite3.Connection, creator: CreatorRecord, posts: Sequence[PostUpsert], content_hash: str,
        vectors: list[np.ndarray | None], listed: list[str],
    ) -> UpsertReport:
        """One creator's writes inside an open transaction (see :meth:`upsert_creator`)."""
        platform, user_id = creator.platform, creator.user_id
        self._check_owners(conn, platform, user_id, listed)
        self._write_profile(conn, creator, content_hash)
        stored = self._hashes(conn, platform, user_id)
        counts = {"added": 0, "updated": 0, "kept": 0}
        for (record, sha, _), vector in zip(posts, vectors, strict=True):
            old = stored.get(record.post_id)
            kind = "added" if old is None else "kept" if old == sha else "updated"
            if vector is None and kind != "kept":
                raise InvalidParameter(
                    f"post '{record.post_id}': an embedding is required for a new or changed image"
                )
            self._write_post(conn, platform, record, sha, vector)
            counts[kind] += 1
        keep = set(listed)
        gone = [p for p in stored if p not in keep]
        for chunk in chunks(gone):
            conn.execute(
                f"DELETE FROM posts WHERE platform = ? AND post_id IN ({','.join('?' * len(chunk))})",
                (platform, *chunk),
            )
        return UpsertReport(added=counts["added"], updated=counts["updated"], removed=len(gone), kept=counts["kept"])

    @staticmethod
    def _check_post(creator: CreatorRecord, record: PostRecord, vector: np.ndarray | None) -> np.ndarray | None:
        if record.user_id != creator.user_id:
            raise InvalidParameter(f"post '{record.post_id}': belongs to '{record.user_id}', not '{creator.user_id}'")
        if vector is None:
            return None
        v = np.asarray(vector, dtype=np.float32)
        if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
            raise InvalidParameter(f"post '{record.post_id}': the embedding must be a finite (d,) vector")
        return v

    def _check_owners(self, conn: sqlite3.Connection, platform: str, user_id: str, post_ids: list[str]) -> None:
        for chunk in chunks(post_ids):
            row = conn.execute(
                f"SELECT post_id, user_id FROM posts WHERE platform = ? AND user_id != ?"
                f" AND post_id IN ({','.join('?' * len(chunk))}) LIMIT 1",
                (platform, user_id, *chunk),
            ).fetchone()
            if row is not None:
                raise Conflict(f"post '{row['post_id']}' already belongs to creator '{row['user_id']}' on {platform}")

    @staticmethod
    def _write_profile(conn: sqlite3.Connection, c: CreatorRecord, content_hash: str) -> None:
        conn.execute(
            f"INSERT INTO creators ({_CREATOR_COLUMNS}, content_hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (platform, user_id) DO UPDATE SET username = excluded.username,"
            " full_name = excluded.full_name, profile_picture = excluded.profile_picture,"
            " followers_count = excluded.followers_count, engagement_rate = excluded.engagement_rate,"
            " account_category = excluded.account_category, account_type = excluded.account_type,"
            " gender = excluded.gender, age_group = excluded.age_group, location_ids = excluded.location_ids,"
            " language = excluded.language, has_email = excluded.has_email, brands = excluded.brands,"
            " updated_at = excluded.updated_at, content_hash = excluded.content_hash",
            (
                c.platform, c.user_id, c.username, c.full_name, c.profile_picture, int(c.followers_count),
                float(c.engagement_rate), c.account_category, c.account_type, c.gender, c.age_group,
                json.dumps(list(c.location_ids)), c.language, int(bool(c.has_email)),
                json.dumps(list(c.brands), ensure_ascii=False), time.time(), content_hash,
            ),
        )

    @staticmethod
    def _write_post(
        conn: sqlite3.Connection, platform: str, p: PostRecord, sha: str, vector: np.ndarray | None
    ) -> None:
        values = (p.url, p.thumbnail, float(p.created_at), p.content_type, json.dumps(p.stats), sha)
        if vector is None:  # same image: keep the stored embedding
            conn.execute(
                "UPDATE posts SET url = ?, thumbnail = ?, created_at = ?, content_type = ?, stats = ?,"
                " image_sha256 = ? WHERE platform = ? AND post_id = ?",
                (*values, platform, p.post_id),
            )
            return
        conn.execute(
            "INSERT OR REPLACE INTO posts (url, thumbnail, created_at, content_type, stats, image_sha256,"
            " embedding, platform, post_id, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, np.ascontiguousarray(vector, dtype=np.float32).tobytes(), platform, p.post_id, p.user_id),
        )

    def delete_creator(self, platform: str, user_id: str) -> None:
        """Delete a creator and its posts. Raises ``CreatorNotFound``."""
        with self._write() as conn:
            cur = conn.execute("DELETE FROM creators WHERE platform = ? AND user_id = ?", (platform, user_id))
            if cur.rowcount == 0:
                raise CreatorNotFound(platform, user_id)
            # ON DELETE CASCADE removes the posts; say so explicitly in case foreign keys are off.
            conn.execute("DELETE FROM posts WHERE platform = ? AND user_id = ?", (platform, user_id))
            self._bump(conn, platform)

    # -- reads for imports ------------------------------------------------------------

    @staticmethod
    def _hashes(conn: sqlite3.Connection, platform: str, user_id: str) -> dict[str, str]:
        rows = conn.execute(
            "SELECT post_id, image_sha256 FROM posts WHERE platform = ? AND user_id = ?", (platform, user_id)
        ).fetchall()
        return {r["post_id"]: r["image_sha256"] for r in rows}

    def post_hashes(self, platform: str, user_id: str) -> dict[str, str]:
        """post_id -> SHA-256 hex of the image bytes its stored embedding was computed from."""
        with self._read() as conn:
            return self._hashes(conn, platform, user_id)

    def content_hash(self, platform: str, user_id: str) -> str | None:
        """The ``content_hash`` the creator was last written with; None if not stored."""
        with self._lock:
            row = self._conn.execute(
                "SELECT content_hash FROM creators WHERE platform = ? AND user_id = ?", (platform, user_id)
            ).fetchone()
        return row["content_hash"] if row else None

    # -- reads for searches -----------------------------------------------------------

    def version(self, platform: str) -> int:
        """The platform's change counter (0 before its first write)."""
        with self._lock:
            row = self._conn.execute("SELECT version FROM versions WHERE platform = ?", (platform,)).fetchone()
        return row["version"] if row else 0

    def snapshot(self, platform: str) -> CreatorSnapshot:
        """The platform's creators and posts as columns (see ``CreatorSnapshot``).

        Cached; rebuilt from SQLite only when the platform's version changed (also by another
        process). Creators are ordered by ``user_id``; posts are grouped by creator
        (``creator_row`` non-decreasing), newest first within a creator, ties by ``post_id``.
        A rebuild takes about 0.2 s for 500 creators x 40 posts of 1280-d embeddings
        (2-core machine, warm page cache).

        Raises:
            InvalidParameter: unknown platform.
        """
        if platform not in PLATFORMS:
            raise InvalidParameter(f"platform: must be one of {', '.join(PLATFORMS)}")
        with self._lock:
            cached = self._snapshots.get(platform)
            if cached is not None and cached.version == self.version(platform):
                return cached
            snap = self._build(platform)
            self._snapshots[platform] = snap
            return snap

    def _build(self, platform: str) -> CreatorSnapshot:
        with self._read() as conn:
            row = conn.execute("SELECT version FROM versions WHERE platform = ?", (platform,)).fetchone()
            version = row["version"] if row else 0
            model_id = self._meta("model_id")
            creators = conn.execute(
                f"SELECT {_CREATOR_COLUMNS} FROM creators WHERE platform = ? ORDER BY user_id", (platform,)
            ).fetchall()
            posts = conn.execute(
                "SELECT post_id, user_id, created_at, content_type, embedding FROM posts WHERE platform = ?"
                " ORDER BY user_id, created_at DESC, post_id",
                (platform,),
            ).fetchall()
        records = [_creator(r) for r in creators]
        post_columns = _post_columns(posts, {c.user_id: i for i, c in enumerate(records)})
        return CreatorSnapshot(
            platform=platform,
            version=version,
            model_id=model_id if len(post_columns) else None,
            creators=_creator_columns(records, post_columns),
            posts=post_columns,
        )

    def profiles(self, platform: str, user_ids: Iterable[str]) -> dict[str, CreatorRecord]:
        """user_id -> profile, for the given ids that are stored."""
        ids = list(dict.fromkeys(user_ids))
        out: dict[str, CreatorRecord] = {}
        with self._read() as conn:
            for chunk in chunks(ids):
                rows = conn.execute(
                    f"SELECT {_CREATOR_COLUMNS} FROM creators WHERE platform = ?"
                    f" AND user_id IN ({','.join('?' * len(chunk))})",
                    (platform, *chunk),
                ).fetchall()
                out.update((r["user_id"], _creator(r)) for r in rows)
        return out

    def posts(self, platform: str, post_ids: Iterable[str]) -> dict[str, PostRecord]:
        """post_id -> post, for the given ids that are stored."""
        ids = list(dict.fromkeys(post_ids))
        out: dict[str, PostRecord] = {}
        with self._read() as conn:
            for chunk in chunks(ids):
                rows = conn.execute(
                    f"SELECT {_POST_COLUMNS} FROM posts WHERE platform = ?"
                    f" AND post_id IN ({','.join('?' * len(chunk))})",
                    (platform, *chunk),
                ).fetchall()
                out.update((r["post_id"], _post(r)) for r in rows)
        return out

    def recent_posts(self, platform: str, user_ids: Iterable[str], limit: int = 5) -> dict[str, list[PostRecord]]:
        """user_id -> its ``limit`` newest posts (``created_at`` descending, ties by post_id);
        every given id is a key (an empty list for creators without posts or not stored)."""
        ids = list(dict.fromkeys(user_ids))
        out: dict[str, list[PostRecord]] = {u: [] for u in ids}
        with self._read() as conn:
            for chunk in chunks(ids):
                rows = conn.execute(
                    f"SELECT {_POST_COLUMNS} FROM (SELECT {_POST_COLUMNS}, ROW_NUMBER() OVER"
                    " (PARTITION BY user_id ORDER BY created_at DESC, post_id) AS rank FROM posts"
                    f" WHERE platform = ? AND user_id IN ({','.join('?' * len(chunk))}))"
                    " WHERE rank <= ? ORDER BY user_id, rank",
                    (platform, *chunk, int(limit)),
                ).fetchall()
                for r in rows:
                    out[r["user_id"]].append(_post(r))
        return out

    def brands(self, platform: str) -> list[str]:
        """Distinct brand names of the platform's creators, sorted case-insensitively.

        Names that differ only in case count as one, spelled as most creators spell it
        (ties: the first in code-point order).
        """
        with self._read() as conn:
            rows = conn.execute(
                "SELECT j.value AS name, COUNT(*) AS n FROM creators, json_each(creators.brands) AS j"
                " WHERE creators.platform = ? GROUP BY j.value",
                (platform,),
            ).fetchall()
        best: dict[str, tuple[int, str]] = {}
        for r in sorted(rows, key=lambda r: r["name"]):
            key = r["name"].casefold()
            if key not in best or r["n"] > best[key][0]:
                best[key] = (r["n"], r["name"])
        return [name for _, (_, name) in sorted(best.items())]

    def count(self, platform: str) -> int:
        """Number of creators stored for the platform."""
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM creators WHERE platform = ?", (platform,)).fetchone()[0]


def _post_columns(rows: list[sqlite3.Row], creator_rows: dict[str, int]) -> PostColumns:
    n = len(rows)
    dim = len(rows[0]["embedding"]) // 4 if n else 0
    # Filled row by row so the (n, d) matrix is the only large allocation.
    vectors = np.empty((n, dim), dtype=np.float32)
    for j, r in enumerate(rows):
        vectors[j] = np.frombuffer(r["embedding"], dtype=np.float32)
    return PostColumns(
        post_ids=np.array([r["post_id"] for r in rows], dtype=object),
        creator_row=np.fromiter((creator_rows[r["user_id"]] for r in rows), dtype=np.int64, count=n),
        created_at=np.fromiter((r["created_at"] for r in rows), dtype=np.float64, count=n),
        is_video=np.fromiter((r["content_type"] == "video" for r in rows), dtype=bool, count=n),
        vectors=vectors,
    )


def _creator_columns(records: list[CreatorRecord], posts: PostColumns) -> CreatorColumns:
    m = len(records)
    last = np.full(m, -math.inf)
    np.maximum.at(last, posts.creator_row, posts.created_at)
    last[np.isneginf(last)] = np.nan

    def column(values: Iterable[object]) -> np.ndarray:
        out = np.empty(m, dtype=object)
        out[:] = list(values)
        return out

    return CreatorColumns(
        user_ids=column(c.user_id for c in records),
        usernames=column(c.username.lower() for c in records),
        followers=np.fromiter((c.followers_count for c in records), dtype=np.int64, count=m),
        engagement_rate=np.fromiter((c.engagement_rate for c in records), dtype=np.float64, count=m),
        account_type=column(c.account_type for c in records),
        gender=column(c.gender for c in records),
        age_group=column(c.age_group for c in records),
        language=column(c.language for c in records),
        has_email=np.fromiter((c.has_email for c in records), dtype=bool, count=m),
        location_ids=[frozenset(c.location_ids) for c in records],
        brands=[frozenset(b.lower() for b in c.brands) for c in records],
        last_post_at=last,
    )
