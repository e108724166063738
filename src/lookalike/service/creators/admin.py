"""The operator's creator use cases: import or refresh creators, delete one, count them.

The operator face (``api/creator_routes.py``) and the CLI (``cli/creators.py``) call these; the
storage is ``store/creator_store.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ...store.creator_store import CreatorStore
from .importer import CreatorImporter, CreatorImportOutcome
from .lines import parse_creator
from .platforms import check_platform


class CreatorAdmin:
    """Creator data management.

    Args:
        store: the creators.
        importer: the import pipeline, built on first use (it may load a model).
    """

    def __init__(self, store: CreatorStore, importer: Callable[[], CreatorImporter]) -> None:
        self._store = store
        self._importer = importer

    def count(self, platform: str) -> int:
        """Creators stored for ``platform``. Raises InvalidParameter naming ``platform``."""
        return self._store.count(check_platform(platform))

    def delete(self, platform: str, user_id: str) -> None:
        """Delete a creator and its posts. Raises InvalidParameter (``platform``), CreatorNotFound (404)."""
        self._store.delete_creator(check_platform(platform), user_id)

    @staticmethod
    def check(items: Iterable[tuple[str, object]], platform: str | None = None) -> None:
        """Validate every ``(where, creator line)`` first, reading and writing nothing.

        Raises:
            InvalidParameter: ``platform`` is not a platform, or the first bad line, its message
                starting with its ``where``.
        """
        if platform is not None:
            check_platform(platform)
        for where, obj in items:
            parse_creator(obj, where, platform)

    def import_creators(self, items: Sequence[tuple[str, object]], platform: str | None = None) -> CreatorImportOutcome:
        """Import or refresh creators (``CreatorImporter.import_creators``), each atomically."""
        return self._importer().import_creators(items, default_platform=platform)
