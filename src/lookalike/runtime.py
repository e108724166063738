"""Composition root: wires settings, store, models and services for the server and the CLI."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .config import Settings
from .imaging import DECODE_BUDGET, return_freed_decodes_to_os
from .service.adapter import Adapter
from .service.admin_access import AdminAccess
from .service.creators.access import AccessService
from .service.creators.admin import CreatorAdmin
from .service.creators.brands import Brands
from .service.creators.dictionaries import Languages, Locations
from .service.creators.gateway import CreatorGateway
from .service.creators.importer import CreatorImporter, creator_model_id
from .service.creators.platforms import PLATFORMS
from .service.creators.search import CreatorSearchService
from .service.detection import DetectorProvider, default_detector
from .service.importer import Importer
from .service.index_keys import IndexKeyService
from .service.libraries import LibraryService, ModelProvider
from .service.metrics import timed_detector, timed_models
from .service.search import SearchService
from .service.thumbnails import ThumbnailService
from .store import Store
from .store.admin_tokens import AdminTokenStore
from .store.backends import describe_store, open_post_index, open_store
from .store.creator_store import CreatorStore
from .store.index_keys import IndexKeyStore
from .store.post_index import PostIndex
from .store.token_store import TokenStore

log = logging.getLogger(__name__)


def private_dir(path: Path) -> None:
    """Create the data dir as mode 0700, and tighten an existing one to it: it holds every
    database, imported image and token hash, readable by its owner only."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        os.chmod(path, 0o700)


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
    adapter: Adapter | None = None

    @classmethod
    def open(
        cls, settings: Settings, models: ModelProvider | None = None, detector: DetectorProvider | None = None
    ) -> Runtime:
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

        # Inference time goes to GET /metrics (service/metrics.py).
        models, detector = timed_models(models), timed_detector(detector)
        private_dir(settings.data_dir)
        DECODE_BUDGET.configure(settings.decode_budget_pixels)
        return_freed_decodes_to_os()
        store = open_store(
            settings.store, db_path=settings.db_path, index_dir=settings.index_dir, bytes_path=settings.milvus_bytes_path
        )
        libraries = LibraryService(store, models, settings.default_model)
        adapter = Adapter(store)
        return cls(
            settings=settings,
            store=store,
            libraries=libraries,
            importer=Importer(libraries, store, settings, detector=detector, adapter=adapter),
            search=SearchService(libraries, store, settings, detector=detector, adapter=adapter),
            detector=detector,
            models=models,
            adapter=adapter,
        )

    @property
    def backend(self) -> str:
        """Where this runtime's image libraries live: ``embedded`` or ``milvus://host:port``."""
        return describe_store(self.settings.store)

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
        if not self.settings.creators_db_path.exists():
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
    def keys(self) -> IndexKeyService:
        """Index keys of the Constructor-compatible API (``Settings.keys_db_path``), opened on first use."""
        return IndexKeyService(IndexKeyStore(self.settings.keys_db_path))

    @cached_property
    def creators(self) -> CreatorStore:
        """Creators and their posts (``<data_dir>/creators.db``), opened on first use."""
        return CreatorStore(self.settings.creators_db_path)

    @cached_property
    def tokens(self) -> TokenStore:
        """Access tokens, their credits and rate-limit slots (``Settings.tokens_db_path``)."""
        return TokenStore(self.settings.tokens_db_path)

    @cached_property
    def admin(self) -> AdminAccess:
        """Admin tokens (writes) and the optional search key (operator reads)."""
        return AdminAccess(AdminTokenStore(self.settings.tokens_db_path), self.settings.search_key)

    @cached_property
    def access(self) -> AccessService:
        """Authentication, rate limits and credits of the creator-search API."""
        return AccessService(self.tokens)

    @cached_property
    def brands(self) -> Brands:
        """Brand names and ids of the creators' filters."""
        return Brands(self.creators)

    @cached_property
    def creator_gateway(self) -> CreatorGateway:
        """The billed creator search of the Modash-compatible API (its model loads on the first search)."""
        return CreatorGateway(lambda: self.access, lambda: self.creator_search, self.brands, self.locations,
                              self.settings.max_query_pixels, self.settings.decode_wait_s)

    @cached_property
    def creator_admin(self) -> CreatorAdmin:
        """Import, delete and count creators (the operator's routes)."""
        return CreatorAdmin(self.creators, lambda: self.creator_importer)

    @cached_property
    def locations(self) -> Locations:
        """The location dictionary of the creator filters (package data)."""
        return Locations.load()

    @cached_property
    def languages(self) -> Languages:
        """The language dictionary of the creator filters (package data)."""
        return Languages.load()

    @cached_property
    def thumbnails(self) -> ThumbnailService:
        """Thumbnails of stored images for the web page, cached in memory."""
        return ThumbnailService(self.store, self.settings.max_image_pixels)

    @cached_property
    def creator_importer(self) -> CreatorImporter:
        """The creator import pipeline over ``creators``."""
        assert self.models is not None, "Runtime.open sets models"
        return CreatorImporter(self.creators, self.models, self.settings)

    @cached_property
    def creator_search(self) -> CreatorSearchService:
        """Creator search over ``creators``, embedding queries with the model the posts were embedded with."""
        assert self.models is not None, "Runtime.open sets models"
        model = self.models(creator_model_id(self.creators.model_id(), self.settings.default_model))
        return CreatorSearchService(
            self.creators,
            lambda image: model.embed_images([image]).visual[0],
            self.locations.expand,
            calibration=model.info.image_calibration,
            post_index=self.post_index,
        )

    @cached_property
    def post_index(self) -> PostIndex:
        """Candidate stage of creator search on large platforms (built in the background): in
        Milvus when ``LOOKALIKE_STORE`` names Milvus, else in-process IVFs."""
        return open_post_index(self.store)

    def close(self) -> None:
        """Close every database opened, and save the vector indexes."""
        if "admin" in self.__dict__:
            self.admin.store.close()
        for name in ("keys", "creators", "tokens"):  # opened by cached_property, if at all
            if name in self.__dict__:
                self.__dict__[name].close()
        if self.adapter is not None:
            self.adapter.close()  # background refits write to the store
        self.store.close()


def open_access(settings: Settings) -> AccessService:
    """Only the access service over ``Settings.tokens_db_path``: what token commands need, with no
    library store or model opened. Close it with ``.store.close()``."""
    return AccessService(TokenStore(settings.tokens_db_path))


def open_admin(settings: Settings) -> AdminAccess:
    """Only the admin tokens of ``Settings.tokens_db_path`` (no store or model opened), for the
    ``admin-token`` commands. Close it with ``.store.close()``."""
    private_dir(settings.data_dir)
    return AdminAccess(AdminTokenStore(settings.tokens_db_path), settings.search_key)
