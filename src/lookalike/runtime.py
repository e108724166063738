"""Composition root: wires settings, store, models and services for the server and the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .config import Settings
from .service.importer import Importer
from .service.libraries import LibraryService, ModelProvider
from .service.search import SearchService
from .store import EmbeddedStore, Store

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The services over one data dir. ``close()`` saves indexes and closes the database."""

    settings: Settings
    store: Store
    libraries: LibraryService
    importer: Importer
    search: SearchService

    @classmethod
    def open(cls, settings: Settings, models: ModelProvider | None = None) -> "Runtime":
        """Open (creating if needed) the data dir ``settings.data_dir``.

        Args:
            models: model id -> model; defaults to ``lookalike.models.load_model`` with the
                ONNX cache under the data dir.
        """
        if models is None:
            from .models import load_model

            cache_dir = settings.model_cache_dir

            def models(model_id: str):
                return load_model(model_id, cache_dir)

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = EmbeddedStore(settings.db_path, settings.index_dir)
        libraries = LibraryService(store, models, settings.default_model)
        return cls(
            settings=settings,
            store=store,
            libraries=libraries,
            importer=Importer(libraries, store, settings),
            search=SearchService(libraries, store, settings),
        )

    def warm(self) -> None:
        """Load every library's model and vector index now rather than on its first search.

        Errors are logged, not raised: a library whose model is missing still answers the
        clear error on its own requests, and the others warm up.
        """
        for library in self.libraries.list():
            try:
                self.libraries.model_for(library)
                self.store.warm(library.name)
            except Exception:  # noqa: BLE001 - warming is best effort by design
                log.warning("could not warm library %s", library.name, exc_info=True)

    def close(self) -> None:
        self.store.close()
