"""Access tokens, their credits and their rate-limit slots, in their own SQLite file.

The runtime opens ``<data_dir>/access.db``; it is apart from ``lookalike.db`` so that a
charge never waits behind a long import transaction. WAL mode with ``synchronous=FULL``: a
committed charge or top-up survives a crash or power loss (https://www.sqlite.org/wal.html).

Only the SHA-256 of a token's secret is stored. A plain (unsalted, fast) hash is enough
because secrets are 192 random bits from ``secrets``, not passwords: there is nothing to
brute-force, so a slow KDF would only slow every request (the scheme GitHub uses for its
tokens).

Credits are INTEGER milli-credits (0.15 credit = 150), so sums never drift. Every change of
a balance or a rate-limit slot is one conditional UPDATE inside ``BEGIN IMMEDIATE``: SQLite
serialises writers across threads *and* processes, so two concurrent requests can never
both spend the last credits or both take the same slot.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import Conflict, InvalidParameter, NotFound
from .sqlite import SQLiteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL UNIQUE,
    label TEXT,
    credits_milli INTEGER NOT NULL CHECK (credits_milli >= 0),
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS rate_slots (
    token_id TEXT NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    endpoint TEXT NOT NULL,
    last_request_at REAL NOT NULL,
    PRIMARY KEY (token_id, endpoint)
);
"""

#: A secret is ``lk_`` + 32 URL-safe base64 characters (24 random bytes = 192 bits).
SECRET_PREFIX = "lk_"
SECRET_BYTES = 24
SECRET_PATTERN = re.compile(r"lk_[A-Za-z0-9_-]{32}")
#: Largest balance a create or top-up may set, in milli-credits (one billion credits); keeps
#: every sum far inside SQLite's signed 64-bit INTEGER.
MAX_CREDITS_MILLI = 10**12

_COLUMNS = "id, label, credits_milli, created_at, revoked_at"


@dataclass(frozen=True)
class TokenRecord:
    """A token as stored, without its secret.

    Attributes:
        id: short public id, 8 hex characters (shown by ``tokens list``, used by top-up/revoke).
        label: free text given at creation, or None.
        credits_milli: balance in milli-credits (1 credit = 1000), never negative.
        created_at, revoked_at: Unix seconds; ``revoked_at`` is None while the token is live.
    """

    id: str
    label: str | None
    credits_milli: int
    created_at: float
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of a secret's UTF-8 bytes: the only form a secret is stored in."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A fresh secret, ``lk_`` + 32 URL-safe characters from ``secrets.token_urlsafe``."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def _record(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(row["id"], row["label"], row["credits_milli"], row["created_at"], row["revoked_at"])


def _check_milli(milli: int, *, positive: bool) -> None:
    if isinstance(milli, bool) or not isinstance(milli, int):
        raise InvalidParameter(f"credits: must be an integer number of milli-credits, got {milli!r}")
    if milli < (1 if positive else 0) or milli > MAX_CREDITS_MILLI:
        low = "greater than 0" if positive else "at least 0"
        raise InvalidParameter(f"credits: must be {low} and at most {MAX_CREDITS_MILLI // 1000} credits")


class TokenStore(SQLiteStore):
    """SQLite-backed tokens. Thread-safe (one connection behind a lock) and process-safe
    (every write is one ``BEGIN IMMEDIATE`` transaction).

    Args:
        db_path: database file, e.g. ``<data_dir>/access.db``; parent folders are created.
    """

    def __init__(self, db_path: Path) -> None:
        super().__init__(db_path, SCHEMA)

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_one(self, sql: str, args: tuple) -> sqlite3.Row | None:
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def _require(self, conn: sqlite3.Connection, token_id: str) -> TokenRecord:
        row = conn.execute(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (token_id,)).fetchone()
        if row is None:
            raise NotFound(f"token '{token_id}' not found", status="TOKEN_NOT_FOUND")
        return _record(row)

    # -- tokens -----------------------------------------------------------------------

    def create(self, credits_milli: int, label: str | None = None) -> tuple[TokenRecord, str]:
        """Create a token with ``credits_milli`` (0..MAX_CREDITS_MILLI) milli-credits.

        Returns:
            the record and the secret. The secret is returned this once and never stored.

        Raises:
            InvalidParameter: ``credits_milli`` negative, too large or not an int.
        """
        _check_milli(credits_milli, positive=False)
        secret = new_secret()
        with self._write() as conn:
            while True:  # 8 hex ids collide with odds ~n/2**32; draw again if one does
                token_id = secrets.token_hex(4)
                if conn.execute("SELECT 1 FROM tokens WHERE id = ?", (token_id,)).fetchone() is None:
                    break
            conn.execute(
                "INSERT INTO tokens (id, secret_sha256, label, credits_milli, created_at) VALUES (?, ?, ?, ?, ?)",
                (token_id, hash_secret(secret), label, credits_milli, time.time()),
            )
            return self._require(conn, token_id), secret

    def get(self, token_id: str) -> TokenRecord | None:
        """The token with this public id, revoked or not; None when unknown."""
        row = self._read_one(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (token_id,))
        return None if row is None else _record(row)

    def get_by_secret(self, secret: str) -> TokenRecord | None:
        """The token whose secret this is (revoked ones too), else None.

        The lookup is by ``hash_secret(secret)`` through the unique index. No constant-time
        compare is needed: any timing difference can only tell how a *hash* of the guess
        compares with stored hashes, and SHA-256 preimage resistance makes that useless for
        building a secret, which has 192 random bits.
        """
        row = self._read_one(f"SELECT {_COLUMNS} FROM tokens WHERE secret_sha256 = ?", (hash_secret(secret),))
        return None if row is None else _record(row)

    def list(self) -> list[TokenRecord]:
        """Every token, oldest first (ties by id)."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM tokens ORDER BY created_at, id").fetchall()
        return [_record(r) for r in rows]

    def top_up(self, token_id: str, milli: int) -> TokenRecord:
        """Add ``milli`` (> 0) milli-credits to a live token; returns the updated record.

        Raises:
            InvalidParameter: ``milli`` not positive, or the balance would pass MAX_CREDITS_MILLI.
            NotFound: unknown id (status ``TOKEN_NOT_FOUND``).
            Conflict: the token is revoked (status ``TOKEN_REVOKED``): credits on it could never be spent.
        """
        _check_milli(milli, positive=True)
        with self._write() as conn:
            token = self._require(conn, token_id)
            if token.revoked:
                raise Conflict(f"token '{token_id}' is revoked", status="TOKEN_REVOKED")
            if token.credits_milli + milli > MAX_CREDITS_MILLI:
                raise InvalidParameter(f"credits: the balance would pass {MAX_CREDITS_MILLI // 1000} credits")
            conn.execute("UPDATE tokens SET credits_milli = credits_milli + ? WHERE id = ?", (milli, token_id))
            return self._require(conn, token_id)

    def revoke(self, token_id: str) -> TokenRecord:
        """Revoke a token for good (idempotent: a second revoke keeps the first time).

        Raises:
            NotFound: unknown id (status ``TOKEN_NOT_FOUND``).
        """
        with self._write() as conn:
            self._require(conn, token_id)
            conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                         (time.time(), token_id))
            return self._require(conn, token_id)

    # -- credits ----------------------------------------------------------------------

    def balance(self, token_id: str) -> int:
        """The balance in milli-credits.

        Raises:
            NotFound: unknown id.
        """
        row = self._read_one("SELECT credits_milli FROM tokens WHERE id = ?", (token_id,))
        if row is None:
            raise NotFound(f"token '{token_id}' not found", status="TOKEN_NOT_FOUND")
        return row["credits_milli"]

    def charge(self, token_id: str, milli: int) -> int | None:
        """Take ``milli`` (>= 0) milli-credits from a live token, all or nothing.

        One ``UPDATE ... WHERE credits_milli >= ? AND revoked_at IS NULL``: the check and the
        debit are one atomic statement, so concurrent charges never overdraw.

        Returns:
            the balance left, in milli-credits; None when the balance is short, the token is
            revoked or unknown (then nothing was taken).
        """
        _check_milli(milli, positive=False)
        with self._write() as conn:
            row = conn.execute(
                "UPDATE tokens SET credits_milli = credits_milli - ? "
                "WHERE id = ? AND credits_milli >= ? AND revoked_at IS NULL RETURNING credits_milli",
                (milli, token_id, milli),
            ).fetchone()
        return None if row is None else row["credits_milli"]

    # -- rate limit -------------------------------------------------------------------

    def try_acquire_slot(self, token_id: str, endpoint: str, now: float, interval_s: float = 1.0) -> float | None:
        """Take the (token, endpoint) slot if its last request is at least ``interval_s`` old.

        The check and the write are one upsert whose UPDATE is conditional
        (``WHERE last_request_at <= now - interval``), so of several concurrent requests
        exactly one gets a free slot. A refused request leaves the slot as it was.

        Args:
            now: the request time, Unix seconds.

        Returns:
            None when allowed (and ``now`` recorded); else the seconds until the slot frees
            (> 0).

        Raises:
            NotFound: unknown token id.
        """
        with self._write() as conn:
            try:
                cur = conn.execute(
                    "INSERT INTO rate_slots (token_id, endpoint, last_request_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (token_id, endpoint) DO UPDATE SET last_request_at = excluded.last_request_at "
                    "WHERE rate_slots.last_request_at <= excluded.last_request_at - ?",
                    (token_id, endpoint, now, interval_s),
                )
            except sqlite3.IntegrityError:  # the foreign key: no such token
                raise NotFound(f"token '{token_id}' not found", status="TOKEN_NOT_FOUND") from None
            if cur.rowcount == 1:
                return None
            last = conn.execute(
                "SELECT last_request_at FROM rate_slots WHERE token_id = ? AND endpoint = ?", (token_id, endpoint)
            ).fetchone()["last_request_at"]
        # A slot stamped in the future (another process's clock ahead) still frees after it.
        return max(last + interval_s - now, 1e-6)
