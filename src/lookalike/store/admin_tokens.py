"""Admin tokens: the credential of write and management routes, in ``access.db`` beside the
creator-search tokens (``token_store.py``) and stored the same way: only the SHA-256 of the
secret, which is 192 random bits (see ``token_store`` for why a fast hash is enough).
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import NotFound
from .sqlite import SQLiteStore
from .token_store import SECRET_BYTES, hash_secret

SCHEMA = """
CREATE TABLE IF NOT EXISTS admin_tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL UNIQUE,
    label TEXT,
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""

#: An admin secret is ``lka_`` + 32 URL-safe base64 characters (24 random bytes); the prefix
#: tells it from a creator-search token (``lk_``) at a glance.
ADMIN_PREFIX = "lka_"
_COLUMNS = "id, label, created_at, revoked_at"


@dataclass(frozen=True)
class AdminTokenRecord:
    """An admin token as stored, without its secret.

    Attributes:
        id: 8 hex characters, shown by ``admin-token list`` and taken by ``revoke``.
        label: free text given at creation, or None.
        created_at, revoked_at: Unix seconds; ``revoked_at`` is None while the token is live.
    """

    id: str
    label: str | None
    created_at: float
    revoked_at: float | None


def _record(row: sqlite3.Row) -> AdminTokenRecord:
    return AdminTokenRecord(row["id"], row["label"], row["created_at"], row["revoked_at"])


class AdminTokenStore(SQLiteStore):
    """SQLite-backed admin tokens (thread- and process-safe like ``TokenStore``).

    Args:
        db_path: database file, ``Settings.tokens_db_path``.
    """

    def __init__(self, db_path: Path) -> None:
        super().__init__(db_path, SCHEMA)

    def create(self, label: str | None = None) -> tuple[AdminTokenRecord, str]:
        """A new live token and its secret (returned this once, never stored)."""
        secret = ADMIN_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
        with self._write() as conn:
            while True:  # 8 hex ids: draw again on the rare collision
                token_id = secrets.token_hex(4)
                if conn.execute("SELECT 1 FROM admin_tokens WHERE id = ?", (token_id,)).fetchone() is None:
                    break
            conn.execute("INSERT INTO admin_tokens (id, secret_sha256, label, created_at) VALUES (?, ?, ?, ?)",
                         (token_id, hash_secret(secret), label, time.time()))
            row = conn.execute(f"SELECT {_COLUMNS} FROM admin_tokens WHERE id = ?", (token_id,)).fetchone()
        return _record(row), secret

    def list(self) -> list[AdminTokenRecord]:
        """Every admin token, oldest first."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM admin_tokens ORDER BY created_at, id").fetchall()
        return [_record(r) for r in rows]

    def revoke(self, token_id: str) -> AdminTokenRecord:
        """Revoke for good (idempotent). Raises NotFound (``TOKEN_NOT_FOUND``) for an unknown id."""
        with self._write() as conn:
            conn.execute("UPDATE admin_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                         (time.time(), token_id))
            row = conn.execute(f"SELECT {_COLUMNS} FROM admin_tokens WHERE id = ?", (token_id,)).fetchone()
        if row is None:
            raise NotFound(f"admin token '{token_id}' not found", status="TOKEN_NOT_FOUND")
        return _record(row)

    def is_live(self, secret: str) -> bool:
        """Whether ``secret`` is a live (unrevoked) admin token; looked up by its hash."""
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM admin_tokens WHERE secret_sha256 = ? AND revoked_at IS NULL",
                                     (hash_secret(secret),)).fetchone()
        return row is not None
