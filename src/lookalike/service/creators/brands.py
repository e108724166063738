"""Brands of the creator filters: the names creators mention, and their stable ids.

Modash's ``/ai/brands`` dictionary gives each brand an id that ``filters.brands`` may use instead
of the name; here the id is derived from the name (``brand_id``), so it needs no table.
"""

from __future__ import annotations

import zlib
from typing import Any, Protocol

from ...errors import InvalidParameter
from .dictionaries import search_names
from .platforms import check_platform


class BrandSource(Protocol):
    """Where brand names come from (``CreatorStore``)."""

    def brands(self, platform: str) -> list[str]: ...


def brand_id(name: str) -> int:
    """A stable positive id for a brand name (CRC-32 of its lower-case UTF-8 form)."""
    return zlib.crc32(name.strip().lower().encode())


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Brands:
    """The brands of one store's creators.

    Args:
        source: the creators (``CreatorStore.brands(platform)``: names, as stored).
    """

    def __init__(self, source: BrandSource) -> None:
        self._source = source

    def search(self, platform: str, query: str, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` (id, name) pairs whose name matches ``query`` by prefix (``search_names``)."""
        return [(brand_id(n), n) for n in search_names(self._source.brands(check_platform(platform)), query, limit)]

    def by_name(self, platform: str, filters: dict[str, Any] | None) -> dict[str, Any] | None:
        """``filters`` with ``brands`` given by id (``/ai/brands``) replaced by their names; the
        search matches names. Other values pass unchanged.

        Raises:
            InvalidParameter: naming ``filters.brands[i]``, an id no brand of ``platform`` has.
        """
        brands = filters.get("brands") if isinstance(filters, dict) else None
        if not isinstance(brands, list) or not any(_is_id(b) for b in brands):
            return filters
        assert filters is not None
        by_id = {brand_id(name): name for name in self._source.brands(platform)}
        names = []
        for i, b in enumerate(brands):
            if _is_id(b):
                if b not in by_id:
                    raise InvalidParameter(f"filters.brands[{i}]: unknown brand id {b} (see /ai/brands)")
                names.append(by_id[b])
            else:
                names.append(b)
        return {**filters, "brands": names}
