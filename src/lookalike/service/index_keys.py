"""Index keys of the Constructor-compatible API: which library each section of a key searches.

The faces (``api/constructor.py``, ``cli/keys.py``) use this service; the SQLite file behind it
is ``store/index_keys.py``.
"""

from __future__ import annotations

from ..errors import KeyNotFound, KeyRejected, NotFound, SectionNotFound
from ..store.index_keys import KEY_PATTERN, IndexKey, IndexKeyStore, check_section

__all__ = ["KEY_PATTERN", "MAX_KEY_CHARS", "IndexKey", "IndexKeyService", "check_section"]

#: Longest key echoed back in errors and logs; real keys are 20 characters.
MAX_KEY_CHARS = 64


class IndexKeyService:
    """Resolve, create and change index keys.

    Args:
        store: the key database (``Settings.keys_db_path``).
    """

    def __init__(self, store: IndexKeyStore) -> None:
        self.store = store

    def sections(self, key: str | None) -> dict[str, str]:
        """The sections (section name -> library name) of the key a request sent.

        Raises:
            KeyRejected (401): ``key`` missing, longer than ``MAX_KEY_CHARS`` or unknown.
        """
        if not key:
            raise KeyRejected("key: missing; every request needs its index key, e.g. ?key=key_K2pX7vBnU0bgA5xp")
        try:
            if len(key) > MAX_KEY_CHARS:
                raise KeyNotFound(key[:MAX_KEY_CHARS])
            return self.store.get(key)
        except KeyNotFound:
            raise KeyRejected(f"key: unknown index key '{key[:MAX_KEY_CHARS]}'; an operator creates keys with"
                              " `lookalike keys create`") from None

    @staticmethod
    def library(sections: dict[str, str], section: str) -> str:
        """The library of ``section``. Raises NotFound (404, status ``SECTION_NOT_FOUND``) naming the key's sections."""
        if section not in sections:
            known = ", ".join(sorted(sections)) or "none"
            raise NotFound(f"section: this key has no section '{section}' (its sections: {known})",
                           status=SectionNotFound.status)
        return sections[section]

    def create(self, sections: dict[str, str]) -> str:
        """A new key with ``sections``; as ``IndexKeyStore.create``."""
        return self.store.create(sections)

    def get(self, key: str) -> dict[str, str]:
        """The key's sections. Raises KeyNotFound."""
        return self.store.get(key)

    def list(self) -> list[IndexKey]:
        """Every key with its sections."""
        return self.store.list()

    def set_section(self, key: str, section: str, library: str) -> None:
        """Point ``section`` of ``key`` at ``library``; as ``IndexKeyStore.set_section``."""
        self.store.set_section(key, section, library)

    def remove_section(self, key: str, section: str) -> None:
        """Remove one section. Raises KeyNotFound, SectionNotFound."""
        self.store.remove_section(key, section)

    def delete(self, key: str) -> None:
        """Delete the key. Raises KeyNotFound."""
        self.store.delete(key)

    def close(self) -> None:
        self.store.close()
