"""Search a library by an image or by a text."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from ..config import Settings
from ..errors import InvalidParameter, ModeNotSupported
from ..filters import parse_filter
from ..imaging import decode_base64, decode_image
from ..scoring import to_score
from ..store import Hit, Store
from .libraries import LibraryService
from .validation import check_library_name, check_top_k

MAX_QUERY_TEXT_CHARS = 1000


@dataclass(frozen=True)
class SearchResult:
    """One ranked image. ``score`` in 0..1 (see ``lookalike.scoring``); ``image_base64``
    is set only when asked for."""

    image_id: str
    image_uri: str | None
    score: float
    tags: dict[str, object]
    image_base64: str | None = None


class SearchService:
    """Image and text queries over libraries.

    Args:
        libraries: resolves libraries and their models.
        store: the vector store.
        settings: query size limits.
    """

    def __init__(self, libraries: LibraryService, store: Store, settings: Settings) -> None:
        self._libraries = libraries
        self._store = store
        self._settings = settings

    def by_image(
        self,
        library_name: str,
        image_base64: str,
        top_k: int = 10,
        tag_filter: object = None,
        return_image_base64: bool = False,
    ) -> list[SearchResult]:
        """Images most similar to a query image.

        Args:
            image_base64: encoded JPEG / PNG / WebP / GIF, at most ``max_query_bytes`` bytes.
            top_k: 1..100 results.
            tag_filter: the filter language of ``lookalike.filters`` (raw JSON).

        Raises:
            InvalidParameter / InvalidImage / InvalidFilter (400), LibraryNotFound (404),
            ModelMismatch, ModelUnavailable.
        """
        check_library_name(library_name)
        top_k = check_top_k(top_k)
        node = parse_filter(tag_filter)
        library = self._libraries.get(library_name, count=False)
        data = decode_base64(image_base64, field="image_base64", max_bytes=self._settings.max_query_bytes)
        image = decode_image(data, field="image_base64", max_pixels=self._settings.max_image_pixels)
        model = self._libraries.model_for(library)
        query = model.embed_images([image]).visual[0]
        hits = self._store.search(library_name, "visual", query, top_k, node)
        return self._results(library_name, hits, model.info.image_calibration, return_image_base64)

    def by_text(
        self,
        library_name: str,
        query_text: str,
        top_k: int = 10,
        tag_filter: object = None,
        return_image_base64: bool = False,
    ) -> list[SearchResult]:
        """Images that match a text description (``general_search`` libraries only).

        Raises:
            ModeNotSupported: the library is in ``item_search`` mode, or its model has no
                text tower. Otherwise as ``by_image``.
        """
        check_library_name(library_name)
        top_k = check_top_k(top_k)
        if not isinstance(query_text, str) or not query_text.strip():
            raise InvalidParameter("query_text: must be a non-empty string")
        if len(query_text) > MAX_QUERY_TEXT_CHARS:
            raise InvalidParameter(f"query_text: at most {MAX_QUERY_TEXT_CHARS} characters")
        node = parse_filter(tag_filter)
        library = self._libraries.get(library_name, count=False)
        if library.mode != "general_search":
            raise ModeNotSupported(
                f"Image library '{library_name}' is in {library.mode} mode and does not support text-to-image search."
            )
        model = self._libraries.model_for(library)
        if model.info.text_dim is None or model.info.text_calibration is None:
            raise ModeNotSupported(f"Model '{library.model_id}' of library '{library_name}' has no text search.")
        query = model.embed_texts([query_text.strip()])[0]
        field = "visual" if model.info.shared_space else "semantic"
        hits = self._store.search(library_name, field, query, top_k, node)
        return self._results(library_name, hits, model.info.text_calibration, return_image_base64)

    def _results(self, library: str, hits: list[Hit], calibration, with_bytes: bool) -> list[SearchResult]:
        scores = to_score(np.array([h.similarity for h in hits], dtype=np.float32), calibration)
        blobs = self._store.image_bytes(library, [h.image.image_id for h in hits]) if with_bytes and hits else {}
        return [
            SearchResult(
                image_id=h.image.image_id,
                image_uri=h.image.image_uri,
                score=round(float(s), 6),
                tags=h.image.tags,
                image_base64=base64.b64encode(blobs[h.image.image_id]).decode() if h.image.image_id in blobs else None,
            )
            for h, s in zip(hits, scores)
        ]
