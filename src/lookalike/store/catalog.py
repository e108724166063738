"""Durable rows in SQLite: libraries, images, their embeddings and encoded bytes.

SQLite in WAL mode with ``synchronous=FULL``: a committed transaction survives a crash or
power loss (https://www.sqlite.org/wal.html). Each library has a change counter ``seq``;
every write stamps the rows it touches with the new ``seq`` (deletions go to a tombstone
table), so an in-memory index can catch up with writes made by another process (the CLI
importing while the server runs) by reading only what changed.

Every statement binds its values as parameters: no request data is ever spliced into SQL.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import Conflict, ImageNotFound, LibraryNotFound
from .base import FIELDS, ImageRecord, ImportReport, LibraryRecord, NewImage
from .sqlite import SQLiteStore, chunks

SCHEMA = """
CREATE TABLE IF NOT EXISTS libraries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    mode TEXT NOT NULL,
    model_id TEXT NOT NULL,
    dims TEXT NOT NULL,
    created_at REAL NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS images (
    row_id INTEGER PRIMARY KEY AUTOINCREMENT,
    library_id INTEGER NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    image_id TEXT NOT NULL,
    image_uri TEXT,
    tags TEXT NOT NULL,
    created_at REAL NOT NULL,
    seq INTEGER NOT NULL,
    visual BLOB,
    semantic BLOB,
    UNIQUE (library_id, image_id)
);
CREATE INDEX IF NOT EXISTS images_seq ON images(library_id, seq);
-- Covers the image records (not the embeddings) in row order, so opening a library with a saved
-- index reads ~100 bytes a row instead of walking table pages laid out around 5 KB vectors
-- (measured at 1M rows: 27 s of page reads by the table scan).
CREATE INDEX IF NOT EXISTS images_records ON images(library_id, row_id, seq, image_id, image_uri, tags, created_at);
CREATE TABLE IF NOT EXISTS image_bytes (
    row_id INTEGER PRIMARY KEY REFERENCES images(row_id) ON DELETE CASCADE,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS deletions (
    library_id INTEGER NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    row_id INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deletions_seq ON deletions(library_id, seq);
-- A library's fitted ranking adaptation per embedding field (service/adaptation.py), ~1 MB.
CREATE TABLE IF NOT EXISTS adaptations (
    library_id INTEGER NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    field TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (library_id, field)
);
"""


# The columns of an ImageRecord (no embeddings, no bytes).
_RECORD_COLUMNS = "image_id, image_uri, tags, created_at"


@dataclass(frozen=True)
class LibraryRow:
    id: int
    record: LibraryRecord
    seq: int


@dataclass
class ChangedRows:
    """Rows written since a given ``seq``.

    Attributes:
        seq: the library's ``seq`` at read time.
        row_ids: (n,) int64 changed (added or re-tagged) rows.
        images: the n image records, aligned with ``row_ids``.
        vectors: field -> (n, dim) float32 (rows without that field are absent: CLIP has no
            ``semantic``).
        deleted: (m,) int64 rows deleted since.
    """

    seq: int
    row_ids: np.ndarray
    images: list[ImageRecord]
    vectors: dict[str, np.ndarray]
    deleted: np.ndarray


def _record(row: sqlite3.Row, count: int | None = None) -> LibraryRecord:
    return LibraryRecord(
        name=row["name"],
        mode=row["mode"],
        model_id=row["model_id"],
        dims=json.loads(row["dims"]),
        created_at=row["created_at"],
        image_count=count,
    )


def _image(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(
        image_id=row["image_id"], image_uri=row["image_uri"], tags=json.loads(row["tags"]), created_at=row["created_at"]
    )


class Catalog(SQLiteStore):
    """SQLite-backed durable rows. Thread-safe: one connection guarded by a lock.

    Args:
        path: database file; parent folders are created.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, SCHEMA)

    # -- libraries ---------------------------------------------------------------------

    def create_library(self, name: str, mode: str, model_id: str, dims: dict[str, int]) -> LibraryRecord:
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM libraries WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"Image library '{name}' already exists.")
            conn.execute(
                "INSERT INTO libraries (name, mode, model_id, dims, created_at) VALUES (?, ?, ?, ?, ?)",
                (name, mode, model_id, json.dumps(dims), time.time()),
            )
            row = conn.execute("SELECT * FROM libraries WHERE name = ?", (name,)).fetchone()
        return _record(row, 0)  # just created: no images

    def library(self, name: str, *, count: bool = True) -> LibraryRow:
        """The library's row; ``count=False`` skips counting its images (a scan of its rows),
        leaving ``image_count`` None. Raises ``LibraryNotFound``."""
        with self._read() as conn:
            row = conn.execute("SELECT * FROM libraries WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise LibraryNotFound(name)
            n = conn.execute("SELECT COUNT(*) FROM images WHERE library_id = ?", (row["id"],)).fetchone()[0] \
                if count else None
        return LibraryRow(id=row["id"], record=_record(row, n), seq=row["seq"])

    def library_seq(self, name: str) -> tuple[int, int]:
        """(library id, seq): a cheap check for changes. Raises ``LibraryNotFound``."""
        with self._lock:
            row = self._conn.execute("SELECT id, seq FROM libraries WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise LibraryNotFound(name)
        return row["id"], row["seq"]

    def list_libraries(self) -> list[LibraryRecord]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT l.*, (SELECT COUNT(*) FROM images i WHERE i.library_id = l.id) AS n"
                " FROM libraries l ORDER BY l.name"
            ).fetchall()
        return [_record(r, r["n"]) for r in rows]

    def delete_library(self, name: str) -> int:
        """Delete a library and everything in it; returns its id. Raises ``LibraryNotFound``."""
        with self._write() as conn:
            row = conn.execute("SELECT id FROM libraries WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise LibraryNotFound(name)
            conn.execute("DELETE FROM libraries WHERE id = ?", (row["id"],))
        return row["id"]

    # -- images ------------------------------------------------------------------------

    def _library_row(self, conn: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM libraries WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise LibraryNotFound(name)
        return row

    def _library_id(self, conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT id FROM libraries WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise LibraryNotFound(name)
        return row["id"]

    def _image_row(self, conn: sqlite3.Connection, library: str, image_id: str) -> tuple[int, int]:
        """(library id, row id) of an image. Raises ``LibraryNotFound`` or ``ImageNotFound``."""
        library_id = self._library_id(conn, library)
        row = conn.execute(
            "SELECT row_id FROM images WHERE library_id = ? AND image_id = ?", (library_id, image_id)
        ).fetchone()
        if row is None:
            raise ImageNotFound(library, image_id)
        return library_id, row["row_id"]

    def _next_seq(self, conn: sqlite3.Connection, library_id: int) -> int:
        return conn.execute(
            "UPDATE libraries SET seq = seq + 1 WHERE id = ? RETURNING seq", (library_id,)
        ).fetchone()[0]

    def add_images(self, library: str, images: Sequence[NewImage], *, skip_existing: bool = False) -> ImportReport:
        report = ImportReport()
        with self._write() as conn:
            library_id = self._library_id(conn, library)
            seq = self._next_seq(conn, library_id)
            seen: set[str] = set()
            now = time.time()
            for image in images:
                exists = image.image_id in seen or conn.execute(
                    "SELECT 1 FROM images WHERE library_id = ? AND image_id = ?", (library_id, image.image_id)
                ).fetchone()
                if exists:
                    if not skip_existing:
                        raise Conflict(f"image_id '{image.image_id}' already exists in library '{library}'.")
                    report.skipped.append(image.image_id)
                    continue
                seen.add(image.image_id)
                blobs = {f: _blob(image.vectors[f]) if f in image.vectors else None for f in FIELDS}
                cur = conn.execute(
                    "INSERT INTO images (library_id, image_id, image_uri, tags, created_at, seq, visual, semantic)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        library_id,
                        image.image_id,
                        image.image_uri,
                        json.dumps(image.tags, ensure_ascii=False),
                        now,
                        seq,
                        blobs["visual"],
                        blobs["semantic"],
                    ),
                )
                if image.image_bytes is not None:
                    conn.execute("INSERT INTO image_bytes (row_id, data) VALUES (?, ?)", (cur.lastrowid, image.image_bytes))
                report.added.append(image.image_id)
        return report

    def existing_ids(self, library: str, image_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self._read() as conn:
            library_id = self._library_id(conn, library)
            for chunk in chunks(list(image_ids)):
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT image_id FROM images WHERE library_id = ? AND image_id IN ({marks})",
                    (library_id, *chunk),
                ).fetchall()
                found.update(r["image_id"] for r in rows)
        return found

    def get_image(self, library: str, image_id: str) -> ImageRecord:
        with self._read() as conn:
            _, row_id = self._image_row(conn, library, image_id)
            row = conn.execute(f"SELECT {_RECORD_COLUMNS} FROM images WHERE row_id = ?", (row_id,)).fetchone()
        return _image(row)

    def list_images(self, library: str, *, offset: int = 0, limit: int = 100) -> list[ImageRecord]:
        with self._read() as conn:
            library_id = self._library_id(conn, library)
            rows = conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM images WHERE library_id = ? ORDER BY row_id LIMIT ? OFFSET ?",
                (library_id, limit, offset),
            ).fetchall()
        return [_image(r) for r in rows]

    def update_tags(self, library: str, image_id: str, tags: dict[str, object]) -> ImageRecord:
        with self._write() as conn:
            library_id, row_id = self._image_row(conn, library, image_id)
            seq = self._next_seq(conn, library_id)
            conn.execute(
                "UPDATE images SET tags = ?, seq = ? WHERE row_id = ?",
                (json.dumps(tags, ensure_ascii=False), seq, row_id),
            )
            updated = conn.execute(f"SELECT {_RECORD_COLUMNS} FROM images WHERE row_id = ?", (row_id,)).fetchone()
        return _image(updated)

    def delete_image(self, library: str, image_id: str) -> None:
        with self._write() as conn:
            library_id, row_id = self._image_row(conn, library, image_id)
            seq = self._next_seq(conn, library_id)
            conn.execute("DELETE FROM images WHERE row_id = ?", (row_id,))
            conn.execute("INSERT INTO deletions (library_id, row_id, seq) VALUES (?, ?, ?)", (library_id, row_id, seq))

    def image_bytes(self, library: str, image_ids: Sequence[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        with self._read() as conn:
            library_id = self._library_id(conn, library)
            for image_id in image_ids:
                row = conn.execute(
                    "SELECT b.data FROM images i JOIN image_bytes b ON b.row_id = i.row_id"
                    " WHERE i.library_id = ? AND i.image_id = ?",
                    (library_id, image_id),
                ).fetchone()
                if row is not None:
                    out[image_id] = row["data"]
        return out

    def vectors(self, library: str, field: str, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored ``field`` embeddings ((dim,) float32) of the given images that exist."""
        if field not in FIELDS:
            raise ValueError(f"unknown field {field!r}")
        out: dict[str, np.ndarray] = {}
        ids = list(dict.fromkeys(image_ids))
        with self._read() as conn:
            library_id = self._library_id(conn, library)
            # One statement per IN_LIST_MAX ids (a search re-ranks ~200 candidates): a statement
            # per id cost ~2 ms more at 200.
            for chunk in chunks(ids):
                marks = ",".join("?" * len(chunk))
                # field is one of FIELDS (checked above), never request text
                rows = conn.execute(
                    f"SELECT image_id, {field} FROM images WHERE library_id = ? AND image_id IN ({marks})",
                    (library_id, *chunk),
                ).fetchall()
                for row in rows:
                    if row[1] is not None:
                        out[row[0]] = np.frombuffer(row[1], dtype=np.float32).copy()
        return {i: out[i] for i in ids if i in out}

    def sample_vectors(self, library: str, field: str, limit: int) -> np.ndarray:
        """Up to ``limit`` ``field`` embeddings, every k-th image in row order: (m, dim) float32.

        The row ids come from the covering ``images_records`` index (~100 bytes a row), then
        only the chosen rows' vectors are read, so a 1M-image library reads 20k vectors, not 1M.
        """
        if field not in FIELDS:
            raise ValueError(f"unknown field {field!r}")
        with self._read() as conn:
            row = self._library_row(conn, library)
            dim = json.loads(row["dims"]).get(field)
            if dim is None:
                return np.zeros((0, 0), dtype=np.float32)
            ids = [r[0] for r in conn.execute(
                "SELECT row_id FROM images INDEXED BY images_records WHERE library_id = ? ORDER BY row_id",
                (row["id"],),
            )]
            step = max(1, -(-len(ids) // max(1, limit)))
            chosen = ids[::step][:limit]
            blobs: list[bytes] = []
            for start in range(0, len(chosen), 500):
                chunk = chosen[start : start + 500]
                marks = ",".join("?" * len(chunk))
                blobs += [r[0] for r in conn.execute(
                    f"SELECT {field} FROM images WHERE row_id IN ({marks}) ORDER BY row_id", chunk
                ) if r[0] is not None]
        return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim).copy()

    def adaptation(self, library: str, field: str) -> bytes | None:
        with self._read() as conn:
            library_id = self._library_id(conn, library)
            row = conn.execute(
                "SELECT data FROM adaptations WHERE library_id = ? AND field = ?", (library_id, field)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def save_adaptation(self, library: str, field: str, data: bytes | None) -> None:
        with self._write() as conn:
            library_id = self._library_id(conn, library)
            conn.execute("DELETE FROM adaptations WHERE library_id = ? AND field = ?", (library_id, field))
            if data is not None:
                conn.execute(
                    "INSERT INTO adaptations (library_id, field, data) VALUES (?, ?, ?)", (library_id, field, data)
                )

    def iter_changes(
        self, library_id: int, seq: int, dims: dict[str, int], *, with_vectors: bool = True, batch: int = 8192
    ) -> Iterator[ChangedRows]:
        """Rows written after ``seq`` (all live rows for ``seq=0``), in chunks of at most ``batch``
        rows, so memory stays bounded. With ``with_vectors=False`` only the image records are read
        (``vectors`` is empty).

        Rows are those written after ``seq`` up to the library's ``seq`` when the call starts
        (the first chunk's ``seq``; later writes are left for the next catch-up), read in
        ``row_id`` order; the first chunk also carries every deletion in that range. Each chunk
        is its own read transaction: a row changed meanwhile moves past the range and is read
        by the next catch-up, a row deleted meanwhile is simply not read.
        """
        with self._read() as conn:
            row = conn.execute("SELECT seq FROM libraries WHERE id = ?", (library_id,)).fetchone()
            now_seq = row["seq"] if row else seq
            count = conn.execute(
                "SELECT COUNT(*) FROM images WHERE library_id = ? AND seq > ? AND seq <= ?", (library_id, seq, now_seq)
            ).fetchone()[0]
            deleted = conn.execute(
                "SELECT row_id FROM deletions WHERE library_id = ? AND seq > ? AND seq <= ?", (library_id, seq, now_seq)
            ).fetchall()
        gone = np.fromiter((r["row_id"] for r in deleted), dtype=np.int64, count=len(deleted))
        columns = "visual, semantic" if with_vectors else "NULL AS visual, NULL AS semantic"
        # Few changed rows: one read through the (library_id, seq) index. Many (opening a
        # library): page in row_id order, through the covering images_records index when no
        # vectors are wanted, else through the table (NOT INDEXED makes SQLite walk the rowid
        # b-tree from the cursor instead of sorting the whole seq index per page).
        paged = count > batch
        source = "images NOT INDEXED" if with_vectors else "images INDEXED BY images_records"
        cursor = -1
        while True:
            with self._read() as conn:
                if paged:
                    rows = conn.execute(
                        f"SELECT row_id, image_id, image_uri, tags, created_at, {columns} FROM {source}"
                        " WHERE library_id = ? AND row_id > ? AND seq > ? AND seq <= ? ORDER BY row_id LIMIT ?",
                        (library_id, cursor, seq, now_seq, batch),
                    ).fetchall()
                else:
                    rows = conn.execute(
                        f"SELECT row_id, image_id, image_uri, tags, created_at, {columns} FROM images"
                        " WHERE library_id = ? AND seq > ? AND seq <= ? ORDER BY row_id",
                        (library_id, seq, now_seq),
                    ).fetchall()
            yield _changed(rows, dims, now_seq, gone)
            gone = np.zeros(0, dtype=np.int64)
            if not paged or len(rows) < batch:
                return
            cursor = rows[-1]["row_id"]


def _changed(rows: list[sqlite3.Row], dims: dict[str, int], seq: int, deleted: np.ndarray) -> ChangedRows:
    row_ids = np.fromiter((r["row_id"] for r in rows), dtype=np.int64, count=len(rows))
    vectors: dict[str, np.ndarray] = {}
    for f, dim in dims.items():
        if rows and rows[0][f] is not None:
            buf = b"".join(r[f] for r in rows)
            vectors[f] = np.frombuffer(buf, dtype=np.float32).reshape(len(rows), dim)
    # One JSON parse per chunk instead of one per row: opening a 1M library parses every tag set.
    tags = json.loads("[" + ",".join(r["tags"] for r in rows) + "]")
    images = [
        ImageRecord(image_id=r["image_id"], image_uri=r["image_uri"], tags=t, created_at=r["created_at"])
        for r, t in zip(rows, tags, strict=True)
    ]
    return ChangedRows(seq=seq, row_ids=row_ids, images=images, vectors=vectors, deleted=deleted)


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()
