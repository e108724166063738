"""The storage contract: libraries, images and their embeddings, and filtered vector search.

The service talks to this interface only, so a distributed engine (e.g. Milvus) can be
added beside the embedded default (``EmbeddedStore``: SQLite rows + in-memory index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..filters import Node

#: Embedding fields a library may hold: ``visual`` for image queries, ``semantic`` for text.
FIELDS = ("visual", "semantic")


@dataclass(frozen=True)
class LibraryRecord:
    """A library's settings and counts.

    Attributes:
        dims: embedding size per field, e.g. ``{"visual": 1280, "semantic": 384}``.
        created_at: Unix time, seconds.
        image_count: number of images; None when not counted (``get_library(count=False)``).
    """

    name: str
    mode: str
    model_id: str
    dims: dict[str, int]
    created_at: float
    image_count: int | None = None


@dataclass(frozen=True)
class ImageRecord:
    """One stored image, without its embeddings. ``created_at``: Unix time, seconds."""

    image_id: str
    image_uri: str | None
    tags: dict[str, object]
    created_at: float


@dataclass
class NewImage:
    """An image to add: ``vectors`` maps field -> (dim,) float32, L2-normalised."""

    image_id: str
    image_uri: str | None
    tags: dict[str, object]
    vectors: dict[str, np.ndarray]
    image_bytes: bytes | None = None


@dataclass(frozen=True)
class Hit:
    """A search result: the image and its cosine similarity to the query, in [-1, 1]."""

    image: ImageRecord
    similarity: float


@dataclass(frozen=True)
class ImportReport:
    """What an ``add_images`` call did: ids stored, and ids skipped as already present."""

    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Store(Protocol):
    """Durable libraries of images with filtered nearest-neighbour search.

    Every write is atomic and durable when the call returns: a crash loses nothing
    acknowledged and leaves no half-written image.
    """

    def create_library(self, name: str, mode: str, model_id: str, dims: dict[str, int]) -> LibraryRecord:
        """Raises ``Conflict`` if the name is taken."""
        ...

    def get_library(self, name: str, *, count: bool = True) -> LibraryRecord:
        """Raises ``LibraryNotFound``. ``count=False`` skips counting the images (hot paths)."""
        ...

    def list_libraries(self) -> list[LibraryRecord]: ...

    def delete_library(self, name: str) -> None:
        """Raises ``LibraryNotFound``."""
        ...

    def add_images(self, library: str, images: Sequence[NewImage], *, skip_existing: bool = False) -> ImportReport:
        """Add a batch in one transaction.

        Raises:
            Conflict: an ``image_id`` exists (or repeats in the batch) and not ``skip_existing``;
                nothing of the batch is stored then.
        """
        ...

    def existing_ids(self, library: str, image_ids: Sequence[str]) -> set[str]: ...

    def get_image(self, library: str, image_id: str) -> ImageRecord:
        """Raises ``ImageNotFound``."""
        ...

    def list_images(self, library: str, *, offset: int = 0, limit: int = 100) -> list[ImageRecord]: ...

    def update_tags(self, library: str, image_id: str, tags: dict[str, object]) -> ImageRecord:
        """Replace an image's tags. Raises ``ImageNotFound``."""
        ...

    def delete_image(self, library: str, image_id: str) -> None:
        """Raises ``ImageNotFound``."""
        ...

    def image_bytes(self, library: str, image_ids: Sequence[str]) -> dict[str, bytes]:
        """Stored encoded bytes of the images that have them."""
        ...

    def vectors(self, library: str, field: str, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored embeddings: image_id -> (dim,) float32, for the ids that exist and hold ``field``."""
        ...

    def sample_vectors(self, library: str, field: str, limit: int) -> np.ndarray:
        """Up to ``limit`` stored ``field`` embeddings spread evenly over the library's images
        (every k-th in import order, so the same rows each call while nothing changes).

        Returns:
            (m, dim) float32, L2-normalised, m <= ``limit``; (0, dim) for a store that cannot
            sample (then the service ranks by plain cosine).

        Raises:
            LibraryNotFound: no such library.
        """
        ...

    def adaptation(self, library: str, field: str) -> bytes | None:
        """The library's saved ranking adaptation of ``field`` (``service.adaptation``'s bytes),
        or ``None``. Raises ``LibraryNotFound``."""
        ...

    def save_adaptation(self, library: str, field: str, data: bytes | None) -> None:
        """Replace (``None``: remove) the library's ranking adaptation of ``field``; it is
        deleted with the library. Raises ``LibraryNotFound``."""
        ...

    def search(
        self, library: str, field: str, query: np.ndarray, top_k: int, tag_filter: Node | None = None
    ) -> list[Hit]:
        """Nearest images by cosine similarity among those passing ``tag_filter``.

        Args:
            field: ``visual`` or ``semantic``.
            query: (dim,) float32, L2-normalised.
            top_k: maximum number of hits.

        Returns:
            Up to ``top_k`` hits, similarity descending (ties: older image first).
            Recall does not depend on the filter's selectivity: selective filters are
            searched exactly.
        """
        ...

    def compact(self, library: str) -> int:
        """Reclaim the space of deleted (or replaced) images in the library's vector storage now,
        instead of waiting for the store to do it in the background; searches keep working
        meanwhile. Returns the number of vector rows reclaimed (0 when nothing was to do, or for
        an engine that compacts on its own).

        Raises:
            LibraryNotFound: no such library.
            Conflict: the storage is held by another process and cannot be compacted from here.
        """
        ...

    def warm(self, library: str) -> None:
        """Prepare a library for fast searches (load caches); optional work, never required."""
        ...

    def close(self) -> None: ...
