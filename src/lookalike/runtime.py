"""Composition root: wires settings, store, models and services for the server and the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

from .config import Settings
from .service.detection import DetectorProvider, default_detector
from .service.importer import Importer
from .service.libraries import LibraryService, ModelProvider
from .service.search import SearchService
from .store import EmbeddedStore, Store
from .service.access import AccessService
from .service.creator_import import CreatorImporter
from .service.creator_search import CreatorSearchService
from .service.dictionaries import Languages, Locations
from .store.creator_store import CreatorStore
from .store.post_index import GraphPostIndex
from .store.creator_types import PLATFORMS
from .store.index_keys import KEYS_DB_NAME, IndexKeyStore
from .store.token_store import TokenStore

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The services over one data dir. ``close()`` saves indexes and closes the database."""

    settings: Settings
    store: Store
    libraries: LibraryService
    importer: Importer
    search: SearchService
    detector: DetectorProvider = default_detector
    models: ModelProvider | None = None

    @classmethod
    def open(
        cls, settings: Settings, models: ModelProvider | None = None, detector: DetectorProvider | None = None
    ) -> "Runtime":
        """Open (creating if needed) the data dir ``settings.data_dir``.

        Args:
            models: model id -> model; defaults to ``lookalike.models.load_model`` with the
                ONNX cache under the data dir.
            detector: the item detector, called (and so loaded) only by work that needs it
                (``item_search`` libraries, segmented queries); defaults to
                ``lookalike.models.load_detector``.
        """
        detector = detector or default_detector
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
            importer=Importer(libraries, store, settings, detector=detector),
            search=SearchService(libraries, store, settings, detector=detector),
            detector=detector,
            models=models,
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
        # Creator search: its model and each platform's post snapshot, only where creators exist
        # (a data dir without creators never creates creators.db here).
        if not (self.settings.data_dir / "creators.db").exists():
            return
        try:
            platforms = [p for p in PLATFORMS if self.creators.count(p)]
            if platforms:
                self.creator_search  # noqa: B018 - loads the model
            for platform in platforms:
                self.post_index.warm(self.creators.snapshot(platform))
        except Exception:  # noqa: BLE001 - warming is best effort by design
            log.warning("could not warm creator search", exc_info=True)

    @cached_property
    def keys(self) -> IndexKeyStore:
        """Index keys of the Constructor-compatible API (``<data_dir>/keys.db``), opened on first use."""
        return IndexKeyStore(self.settings.data_dir / KEYS_DB_NAME)

    @cached_property
    def creators(self) -> CreatorStore:
        """Creators and their posts (``<data_dir>/creators.db``), opened on first use."""
        return CreatorStore(self.settings.data_dir / "creators.db")

    @cached_property
    def tokens(self) -> TokenStore:
        """Access tokens, their credits and rate-limit slots (``<data_dir>/access.db``)."""
        return TokenStore(self.settings.data_dir / "access.db")

    @cached_property
    def access(self) -> AccessService:
        """Authentication, rate limits and credits of the creator-search API."""
        return AccessService(self.tokens)

    @cached_property
    def locations(self) -> Locations:
        return Locations.load()

    @cached_property
    def languages(self) -> Languages:
        return Languages.load()

    @cached_property
    def creator_importer(self) -> CreatorImporter:
        return CreatorImporter(self.creators, self.models, self.settings)

    @cached_property
    def creator_search(self) -> CreatorSearchService:
        """Creator search over ``creators``, embedding queries with the model the posts were embedded with."""
        model = self.models(self.creators.model_id() or self.settings.default_model)
        return CreatorSearchService(
            self.creators,
            lambda image: model.embed_images([image]).visual[0],
            self.locations.expand,
            calibration=model.info.image_calibration,
            post_index=self.post_index,
        )

    @cached_property
    def post_index(self) -> GraphPostIndex:
        """Candidate stage of creator search on large platforms (built in the background)."""
        return GraphPostIndex()

    def close(self) -> None:
        for name in ("keys", "creators", "tokens"):  # opened by cached_property, if at all
            if name in self.__dict__:
                self.__dict__[name].close()
        self.store.close()
