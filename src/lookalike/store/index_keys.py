"""Index keys of the Constructor-compatible image search, in their own SQLite file.

An index key (Constructor's ``key`` query parameter, e.g. ``key_K2pX7vBnU0bgA5xp``) names a
set of sections; each section (``Products``, ``Content``, ...) searches one library. The
runtime opens ``<data_dir>/keys.db``, apart from ``lookalike.db`` so that resolving a key
never waits behind a long import transaction. WAL mode with ``synchronous=FULL``: a created
or changed key survives a crash or power loss (https://www.sqlite.org/wal.html).

Keys are not secrets: like Constructor's, they travel in URLs from browsers. A key only
decides which libraries a request may search. Every statement binds its values as
parameters; no key, section or library name is ever spliced into SQL.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidParameter, KeyNotFound, SectionNotFound
from .sqlite import SQLiteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS index_keys (
    key TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS key_sections (
    key TEXT NOT NULL REFERENCES index_keys(key) ON DELETE CASCADE,
    section TEXT NOT NULL,
    library TEXT NOT NULL,
    PRIMARY KEY (key, section)
);
"""

#: A key is ``key_`` + 16 URL-safe base64 characters (12 random bytes), the shape of
#: Constructor's keys (``key_K2pX7vBnU0bgA5xp``).
KEY_PREFIX = "key_"
KEY_RANDOM_BYTES = 12
KEY_PATTERN = re.compile(r"key_[A-Za-z0-9_-]{16}")
#: A section is a name (Constructor: 1..100 characters): any characters but control characters,
#: which would corrupt log lines. It is only ever a value in SQLite and JSON, never a path.
MAX_SECTION_CHARS = 100
SECTION_PATTERN = re.compile(rf"[^\x00-\x1f\x7f]{{1,{MAX_SECTION_CHARS}}}")
MAX_LIBRARY_NAME_CHARS = 128
#: Sections one key may hold; a guard against runaway scripts, far above real use.
MAX_SECTIONS = 100


@dataclass(frozen=True)
class IndexKey:
    """A key and its sections.

    Attributes:
        key: ``key_`` + 16 URL-safe characters.
        sections: section name -> library name.
        created_at: Unix seconds.
    """

    key: str
    sections: dict[str, str]
    created_at: float


def check_section(section: object, field: str = "section") -> str:
    """Raises ``InvalidParameter`` unless ``section`` is 1..100 characters, none of them a control
    character, and not only spaces."""
    if not isinstance(section, str) or not SECTION_PATTERN.fullmatch(section) or not section.strip():
        raise InvalidParameter(f"{field}: must be 1-{MAX_SECTION_CHARS} characters, not all spaces,"
                               " without control characters")
    return section


def _check_library(library: object, field: str) -> str:
    # Only the shape: whether the library exists is the caller's check (the CLI asks the
    # library service), since a store must not call up into services.
    if not isinstance(library, str) or not library or len(library) > MAX_LIBRARY_NAME_CHARS:
        raise InvalidParameter(f"{field}: must be a library name of 1-{MAX_LIBRARY_NAME_CHARS} characters")
    return library


class IndexKeyStore(SQLiteStore):
    """Index keys -> sections -> libraries, durable in SQLite. Thread-safe (one connection
    guarded by a lock); several processes may share the file (SQLite serialises writers).

    Args:
        db_path: database file, normally ``<data_dir>/keys.db``; parent folders are created.
    """

    def __init__(self, db_path: Path) -> None:
        super().__init__(db_path, SCHEMA)

    def create(self, sections: dict[str, str]) -> str:
        """Create a key with 1..100 sections (section name -> library name); returns the key.

        Raises:
            InvalidParameter: no section, a bad section or library name.
        """
        if not isinstance(sections, dict) or not sections:
            raise InvalidParameter("sections: a key needs at least one section")
        if len(sections) > MAX_SECTIONS:
            raise InvalidParameter(f"sections: at most {MAX_SECTIONS} per key")
        rows = [(check_section(s, f"sections[{s!r}]"), _check_library(lib, f"sections[{s!r}]"))
                for s, lib in sections.items()]
        with self._write() as conn:
            while True:  # a collision of 96 random bits will not happen, but costs nothing to rule out
                key = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
                if conn.execute("SELECT 1 FROM index_keys WHERE key = ?", (key,)).fetchone() is None:
                    break
            conn.execute("INSERT INTO index_keys (key, created_at) VALUES (?, ?)", (key, time.time()))
            conn.executemany("INSERT INTO key_sections (key, section, library) VALUES (?, ?, ?)",
                             [(key, s, lib) for s, lib in rows])
        return key

    def get(self, key: str) -> dict[str, str]:
        """The key's sections (section name -> library name). Raises ``KeyNotFound``."""
        with self._lock:
            self._require(self._conn, key)
            rows = self._conn.execute(
                "SELECT section, library FROM key_sections WHERE key = ? ORDER BY section", (key,)
            ).fetchall()
        return {r["section"]: r["library"] for r in rows}

    def list(self) -> list[IndexKey]:
        """Every key with its sections, oldest first."""
        with self._lock:
            keys = self._conn.execute("SELECT key, created_at FROM index_keys ORDER BY created_at, key").fetchall()
            rows = self._conn.execute("SELECT key, section, library FROM key_sections ORDER BY section").fetchall()
        sections: dict[str, dict[str, str]] = {}
        for r in rows:
            sections.setdefault(r["key"], {})[r["section"]] = r["library"]
        return [IndexKey(key=k["key"], sections=sections.get(k["key"], {}), created_at=k["created_at"]) for k in keys]

    def set_section(self, key: str, section: str, library: str) -> None:
        """Add the section, or point an existing one at another library.

        Raises:
            KeyNotFound; InvalidParameter: a bad section or library name, or the key would
                hold more than 100 sections.
        """
        check_section(section)
        _check_library(library, "library")
        with self._write() as conn:
            self._require(conn, key)
            exists = conn.execute("SELECT 1 FROM key_sections WHERE key = ? AND section = ?", (key, section)).fetchone()
            if not exists:
                n = conn.execute("SELECT COUNT(*) FROM key_sections WHERE key = ?", (key,)).fetchone()[0]
                if n >= MAX_SECTIONS:
                    raise InvalidParameter(f"section: a key holds at most {MAX_SECTIONS} sections")
            conn.execute(
                "INSERT INTO key_sections (key, section, library) VALUES (?, ?, ?)"
                " ON CONFLICT (key, section) DO UPDATE SET library = excluded.library",
                (key, section, library),
            )

    def remove_section(self, key: str, section: str) -> None:
        """Remove one section; the key stays, possibly with none. Raises ``KeyNotFound``,
        ``SectionNotFound``."""
        with self._write() as conn:
            self._require(conn, key)
            if conn.execute("DELETE FROM key_sections WHERE key = ? AND section = ?", (key, section)).rowcount == 0:
                raise SectionNotFound(key, section)

    def delete(self, key: str) -> None:
        """Delete the key and its sections. Raises ``KeyNotFound``."""
        with self._write() as conn:
            self._require(conn, key)
            conn.execute("DELETE FROM index_keys WHERE key = ?", (key,))

    @staticmethod
    def _require(conn: sqlite3.Connection, key: str) -> None:
        found = isinstance(key, str) and conn.execute("SELECT 1 FROM index_keys WHERE key = ?", (key,)).fetchone()
        if not found:
            raise KeyNotFound(str(key))
