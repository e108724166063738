"""Libraries and their images: create, inspect, re-tag, delete; and each library's model."""

from __future__ import annotations

import builtins
from collections.abc import Callable

from ..errors import InvalidParameter, ModelMismatch
from ..models.base import Embedder
from ..store import ImageRecord, LibraryRecord, Store
from .validation import check_image_id, check_library_name, check_mode, check_tags

__all__ = ["ImageRecord", "LibraryRecord", "LibraryService", "ModelProvider"]  # the records are what faces format

ModelProvider = Callable[[str], Embedder]
"""Returns the loaded model for a model id; raises ``ModelUnavailable``."""


def model_dims(model: Embedder) -> dict[str, int]:
    """Embedding fields a library built with ``model`` stores, and their sizes."""
    dims = {"visual": model.info.image_dim}
    if model.info.text_dim is not None and not model.info.shared_space:
        dims["semantic"] = model.info.text_dim
    return dims


class LibraryService:
    """Library and image management over a ``Store``.

    Args:
        store: where libraries live.
        models: model id -> loaded model.
        default_model: model id for libraries created without one.
    """

    def __init__(self, store: Store, models: ModelProvider, default_model: str) -> None:
        self._store = store
        self._models = models
        self._default_model = default_model

    def create(self, name: str, mode: str = "general_search", model_id: str | None = None) -> LibraryRecord:
        """Create an empty library.

        Raises:
            InvalidParameter: bad name or mode. ModelUnavailable: unknown model id.
            Conflict: the name is taken.
        """
        check_library_name(name)
        check_mode(mode)
        model_id = model_id or self._default_model
        if not isinstance(model_id, str):
            raise InvalidParameter("model: must be a string model id")
        model = self._models(model_id)
        return self._store.create_library(name, mode, model.info.model_id, model_dims(model))

    def get(self, name: str, *, count: bool = True) -> LibraryRecord:
        """Raises ``LibraryNotFound``. ``count=False`` skips counting the images, which costs a
        scan of the library's rows (3.5 ms at 100k): searches and imports do not need it."""
        return self._store.get_library(name, count=count)

    def list(self) -> list[LibraryRecord]:
        return self._store.list_libraries()

    def delete(self, name: str) -> None:
        """Delete the library and all its images. Raises ``LibraryNotFound``."""
        self._store.delete_library(name)

    def compact(self, name: str) -> int:
        """Reclaim the vector storage of deleted images now; returns the rows reclaimed.

        Raises:
            LibraryNotFound: no such library.
            Conflict: a running server holds the library's index (it compacts in the background).
        """
        return self._store.compact(name)

    def model_for(self, library: LibraryRecord) -> Embedder:
        """The model the library was built with.

        Raises:
            ModelUnavailable: its weights are not installed here.
            ModelMismatch: the model now yields other embedding sizes than the library holds.
        """
        model = self._models(library.model_id)
        dims = model_dims(model)
        if dims != library.dims:
            raise ModelMismatch(
                f"Image library '{library.name}' was built with model '{library.model_id}' and embedding sizes "
                f"{library.dims}, but that model now gives {dims}; re-create the library to use it."
            )
        return model

    # -- images --------------------------------------------------------------------------

    def get_image(self, library: str, image_id: str) -> ImageRecord:
        """Raises ``LibraryNotFound`` or ``ImageNotFound``."""
        return self._store.get_image(library, check_image_id(image_id))

    def list_images(self, library: str, offset: int = 0, limit: int = 100) -> builtins.list[ImageRecord]:
        """A page of images in import order. Raises ``InvalidParameter`` for a bad page."""
        if offset < 0:
            raise InvalidParameter("offset: must be >= 0")
        if not 1 <= limit <= 1000:
            raise InvalidParameter("limit: must be from 1 to 1000")
        return self._store.list_images(library, offset=offset, limit=limit)

    def update_tags(self, library: str, image_id: str, tags: object) -> ImageRecord:
        """Replace the tags of an image. Raises ``InvalidParameter``, ``ImageNotFound``."""
        return self._store.update_tags(library, check_image_id(image_id), check_tags(tags))

    def delete_image(self, library: str, image_id: str) -> None:
        """Raises ``LibraryNotFound`` or ``ImageNotFound``."""
        self._store.delete_image(library, check_image_id(image_id))
