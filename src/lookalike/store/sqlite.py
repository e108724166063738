"""One SQLite file opened the way every Lookalike store needs it.

WAL journal (readers never block the writer, and the server sees a CLI's commits),
``synchronous=FULL`` (a commit that returned survives power loss; SQLite docs, "PRAGMA
synchronous"), foreign keys on, autocommit mode so transactions are explicit. One connection
per store, guarded by a re-entrant lock: the stores are small and their transactions short, and
a single connection keeps each store's reads consistent with its own writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

#: Seconds a writer waits for another process's write lock before SQLite gives up.
BUSY_TIMEOUT_S = 30.0


#: Most values bound in one ``IN (...)`` list: stays under SQLite's limit on bound parameters
#: per statement (``SQLITE_MAX_VARIABLE_NUMBER``, 999 before SQLite 3.32).
IN_LIST_MAX = 500


def chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    """``values`` in consecutive slices of at most ``IN_LIST_MAX``, one per ``IN (...)`` statement."""
    for start in range(0, len(values), IN_LIST_MAX):
        yield values[start : start + IN_LIST_MAX]


#: Owner-only: the databases hold tokens' hashes, index keys and every imported image.
FILE_MODE = 0o600


def private_file(path: Path) -> None:
    """Create ``path`` (if absent) and its existing ``-wal`` / ``-shm`` companions as mode 0600.

    SQLite gives the WAL and shared-memory files the mode of the database file itself, so a
    0600 database keeps them private too (SQLite's ``unix`` VFS, ``findCreateFileMode``).
    """
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE))
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p.exists() and p.stat().st_mode & 0o777 != FILE_MODE:
            os.chmod(p, FILE_MODE)


class SQLiteStore:
    """Base of the SQLite-backed stores: the connection, write/read transactions, ``close``.

    Args:
        path: database file; parent folders are created.
        schema: ``CREATE ... IF NOT EXISTS`` statements run at open.
    """

    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        private_file(path)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(schema)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so concurrent writers (the server and
        # a CLI, or several processes) queue on the busy timeout instead of failing on a
        # read->write lock upgrade.
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # One read transaction = one consistent WAL snapshot.
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
