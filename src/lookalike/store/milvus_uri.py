"""Parse ``LOOKALIKE_STORE`` values that name a Milvus server.

Form (Milvus's own URI plus its usual connection options as query parameters)::

    milvus://[USER:PASSWORD@]HOST[:PORT][/DB_NAME][?secure=true&timeout=10&prefix=lookalike_]

``https://...`` is ``milvus://`` with ``secure=true``; ``http://...`` is ``milvus://``.
PORT defaults to 19530 (Milvus's). ``timeout``: seconds any one Milvus call may take before
the request fails with 503 ``STORE_UNAVAILABLE`` (default 10). ``prefix``: names of the
collections Lookalike creates start with it (default ``lookalike_``), so several Lookalike
deployments can share one Milvus database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["MilvusTarget", "parse_milvus_uri"]

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_DB = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_OPTIONS = {"secure", "timeout", "prefix", "db_name"}


@dataclass(frozen=True)
class MilvusTarget:
    """Where and how to reach Milvus. ``timeout``: seconds per call."""

    host: str
    port: int = 19530
    user: str | None = None
    password: str | None = None
    db_name: str = "default"
    secure: bool = False
    timeout: float = 10.0
    prefix: str = "lookalike_"

    def display(self) -> str:
        """The URI without the password, for listings and logs."""
        auth = f"{self.user}:***@" if self.user else ""
        db = "" if self.db_name == "default" else f"/{self.db_name}"
        return f"milvus://{auth}{self.host}:{self.port}{db}"


def parse_milvus_uri(uri: str) -> MilvusTarget:
    """Parse a Milvus URI (see module docstring).

    Raises:
        ValueError: naming the part that is wrong.
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("milvus", "http", "https"):
        raise ValueError(f"LOOKALIKE_STORE: expected 'embedded' or milvus://HOST:PORT; got {uri!r}")
    if not parts.hostname:
        raise ValueError(f"LOOKALIKE_STORE: {uri!r} names no host")
    try:
        port = parts.port or 19530
    except ValueError:
        raise ValueError(f"LOOKALIKE_STORE: {uri!r} has an invalid port") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(query) - _OPTIONS)
    if unknown:
        raise ValueError(f"LOOKALIKE_STORE: unknown option {unknown[0]!r}; expected one of {', '.join(sorted(_OPTIONS))}")
    db_name = parts.path.strip("/") or query.get("db_name") or "default"
    if not _DB.fullmatch(db_name):
        raise ValueError(f"LOOKALIKE_STORE: database name {db_name!r} must be letters, digits and underscores")
    prefix = query.get("prefix", "lookalike_")
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"LOOKALIKE_STORE: prefix {prefix!r} must be letters, digits and underscores")
    secure = parts.scheme == "https" or query.get("secure", "false").lower() in ("1", "true", "yes")
    try:
        timeout = float(query.get("timeout", "10"))
    except ValueError:
        raise ValueError("LOOKALIKE_STORE: timeout must be a number of seconds") from None
    if not 0 < timeout <= 600:
        raise ValueError("LOOKALIKE_STORE: timeout must be in (0, 600] seconds")
    return MilvusTarget(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        db_name=db_name,
        secure=secure,
        timeout=timeout,
        prefix=prefix,
    )
