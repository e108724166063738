"""The embedded default store: durable rows in SQLite, vectors searched in memory.

Why this design (measured facts in ``docs/research.md#vector-engines``): on this class
of machine exact search over a pre-gathered filtered subset costs well under a millisecond
at 1% of 200k vectors and has recall 1.0, while HNSW alone loses recall under selective
filters (faiss HNSW: 0.30 at 1%). So SQLite holds the truth (ACID, WAL, no server) and a
``VectorIndex`` per library and field plans each query: exact over the rows that pass a
selective filter, HNSW (hnswlib) with over-fetch otherwise. The index is a cache: it is
saved with the change counter it reflects and caught up from SQLite on open.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InvalidParameter
from ..filters import Node, TagColumns, evaluate
from ..index import VectorIndex
from .base import Hit, ImageRecord, ImportReport, LibraryRecord, NewImage
from .catalog import Catalog, ChangedRows

log = logging.getLogger(__name__)


@dataclass
class _LibraryState:
    """In-memory view of one library, current up to ``seq``."""

    library_id: int
    dims: dict[str, int]
    seq: int = 0
    saved_seq: int = -1
    images: dict[int, ImageRecord] = field(default_factory=dict)
    indexes: dict[str, VectorIndex] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _columns: tuple[np.ndarray, TagColumns] | None = None

    def apply(self, changes: ChangedRows) -> None:
        if changes.deleted.size:
            for key in changes.deleted.tolist():
                self.images.pop(key, None)
            for index in self.indexes.values():
                index.remove(changes.deleted)
        for key, image in zip(changes.row_ids.tolist(), changes.images):
            self.images[key] = image
        for name, vectors in changes.vectors.items():
            self.indexes[name].add(changes.row_ids, vectors)
        if changes.row_ids.size or changes.deleted.size:
            self._columns = None
        self.seq = max(self.seq, changes.seq)

    def columns(self) -> tuple[np.ndarray, TagColumns]:
        """(row keys (n,) int64, their tags as columns), rebuilt after any change."""
        if self._columns is None:
            keys = np.fromiter(self.images.keys(), dtype=np.int64, count=len(self.images))
            self._columns = (keys, TagColumns([self.images[k].tags for k in keys.tolist()]))
        return self._columns


class EmbeddedStore:
    """``Store`` over SQLite + in-memory ``VectorIndex`` (see module docstring).

    Args:
        db_path: SQLite database file.
        index_dir: where saved vector indexes live (``<library id>/<field>.idx``).
    """

    def __init__(self, db_path: Path, index_dir: Path) -> None:
        self._catalog = Catalog(db_path)
        self._index_dir = index_dir
        self._states: dict[str, _LibraryState] = {}
        self._opening: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    # -- state ---------------------------------------------------------------------------

    def _state(self, name: str) -> _LibraryState:
        """The library's in-memory state, caught up with every committed write."""
        library_id, seq = self._catalog.library_seq(name)
        with self._lock:
            state = self._states.get(name)
            opening = self._opening.setdefault(name, threading.Lock())
        if state is None or state.library_id != library_id:
            # Opening a large library builds its HNSW graph (tens of seconds): hold only this
            # library's lock meanwhile, so searches of other libraries go on.
            with opening:
                with self._lock:
                    state = self._states.get(name)
                if state is None or state.library_id != library_id:
                    state = self._open_state(name)
                    with self._lock:
                        self._states[name] = state
        if state.seq < seq:
            with state.lock:
                if state.seq < seq:
                    state.apply(self._catalog.changes_since(state.library_id, state.seq, state.dims))
        return state

    def _open_state(self, name: str) -> _LibraryState:
        row = self._catalog.library(name, count=False)
        state = _LibraryState(library_id=row.id, dims=dict(row.record.dims))
        saved = {f: self._load_index(row.id, f) for f in state.dims}
        watermark = min((ix.watermark for ix in saved.values() if ix is not None), default=0)
        if all(ix is not None for ix in saved.values()) and watermark > 0:
            # Saved graphs: read all records, but vectors only for rows changed since.
            state.indexes = {f: ix for f, ix in saved.items() if ix is not None}
            state.apply(self._catalog.changes_since(row.id, 0, state.dims, with_vectors=False))
            state.seq = watermark
            state.apply(self._catalog.changes_since(row.id, watermark, state.dims))
            state.saved_seq = watermark
            live = set(state.images)
            if all(set(ix.keys().tolist()) == live for ix in state.indexes.values()):
                return state
            log.warning("saved index of library %s is inconsistent; rebuilding", name)
            state = _LibraryState(library_id=row.id, dims=dict(row.record.dims))
        state.indexes = {f: VectorIndex(dim) for f, dim in state.dims.items()}
        state.apply(self._catalog.changes_since(row.id, 0, state.dims))
        return state

    def _index_path(self, library_id: int, name: str) -> Path:
        return self._index_dir / str(library_id) / f"{name}.idx"

    def _load_index(self, library_id: int, name: str) -> VectorIndex | None:
        path = self._index_path(library_id, name)
        if not path.exists():
            return None
        try:
            return VectorIndex.load(path)
        except Exception:  # a cache: any damage means rebuild from SQLite
            log.warning("cannot read saved index %s; rebuilding", path, exc_info=True)
            return None

    def warm(self, library: str) -> None:
        """Load a library's rows and vectors (and build its HNSW graph if it is large), so the
        first search does not pay for it. Raises ``LibraryNotFound``."""
        self._state(library)

    def save_indexes(self) -> None:
        """Save every open library's vector indexes, so a restart skips rebuilding them."""
        with self._lock:
            states = list(self._states.values())
        for state in states:
            with state.lock:
                # Only graphs are worth saving: below hnsw_min_size a rebuild is one matrix copy.
                if state.seq == state.saved_seq or not any(ix.has_graph for ix in state.indexes.values()):
                    continue
                for name, index in state.indexes.items():
                    path = self._index_path(state.library_id, name)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    index.watermark = state.seq
                    index.save(path)
                state.saved_seq = state.seq

    # -- Store ---------------------------------------------------------------------------

    def create_library(self, name: str, mode: str, model_id: str, dims: dict[str, int]) -> LibraryRecord:
        return self._catalog.create_library(name, mode, model_id, dims)

    def get_library(self, name: str, *, count: bool = True) -> LibraryRecord:
        return self._catalog.library(name, count=count).record

    def list_libraries(self) -> list[LibraryRecord]:
        return self._catalog.list_libraries()

    def delete_library(self, name: str) -> None:
        library_id = self._catalog.delete_library(name)
        with self._lock:
            self._states.pop(name, None)
        shutil.rmtree(self._index_dir / str(library_id), ignore_errors=True)

    def add_images(self, library: str, images: Sequence[NewImage], *, skip_existing: bool = False) -> ImportReport:
        dims = self._catalog.library(library, count=False).record.dims
        for image in images:
            for name, dim in dims.items():
                vector = image.vectors.get(name)
                if vector is None or vector.shape != (dim,):
                    raise InvalidParameter(
                        f"image '{image.image_id}': embedding '{name}' must have shape ({dim},)"
                    )
        return self._catalog.add_images(library, images, skip_existing=skip_existing)

    def existing_ids(self, library: str, image_ids: Sequence[str]) -> set[str]:
        return self._catalog.existing_ids(library, image_ids)

    def get_image(self, library: str, image_id: str) -> ImageRecord:
        return self._catalog.get_image(library, image_id)

    def list_images(self, library: str, *, offset: int = 0, limit: int = 100) -> list[ImageRecord]:
        return self._catalog.list_images(library, offset=offset, limit=limit)

    def update_tags(self, library: str, image_id: str, tags: dict[str, object]) -> ImageRecord:
        return self._catalog.update_tags(library, image_id, tags)

    def delete_image(self, library: str, image_id: str) -> None:
        self._catalog.delete_image(library, image_id)

    def image_bytes(self, library: str, image_ids: Sequence[str]) -> dict[str, bytes]:
        return self._catalog.image_bytes(library, image_ids)

    def vectors(self, library: str, field: str, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        return self._catalog.vectors(library, field, image_ids)

    def search(
        self, library: str, field: str, query: np.ndarray, top_k: int, tag_filter: Node | None = None
    ) -> list[Hit]:
        state = self._state(library)
        index = state.indexes.get(field)
        if index is None:
            raise InvalidParameter(f"library '{library}' has no '{field}' embeddings")
        allowed = None
        if tag_filter is not None:
            with state.lock:
                keys, columns = state.columns()
                allowed = keys[evaluate(tag_filter, columns)]
        found, sims = index.search(np.asarray(query, dtype=np.float32), top_k, allowed)
        hits = []
        for key, sim in zip(found.tolist(), sims.tolist()):
            image = state.images.get(key)
            if image is not None:  # deleted by a concurrent writer since the search
                hits.append(Hit(image=image, similarity=float(sim)))
        return hits

    def close(self) -> None:
        self.save_indexes()
        self._catalog.close()
