"""The embedded default store: durable rows in SQLite, vectors in memory-mapped index files.

Why this design (measured facts in ``docs/research.md#vector-engines``): on this class
of machine exact search over a pre-gathered filtered subset costs well under a millisecond
at 1% of 200k vectors and has recall 1.0, while HNSW alone loses recall under selective
filters (faiss HNSW: 0.30 at 1%). So SQLite holds the truth (ACID, WAL, no server) and a
``VectorIndex`` per library and field plans each query: exact over the rows that pass a
selective filter, an inverted file of 8-bit codes (FAISS IVF-SQ8) with an exact re-rank
otherwise. The index is a cache of SQLite: its rows live in append-only memory-mapped files under
``index_dir/<library id>/<field>/`` (``lookalike.index.persist``), saved with the change counter
they reflect, so opening a library maps them, loads the saved IVF and reads from SQLite only the
records plus the vectors changed since. One process owns a library's index files at a time (a
lock file); another process that opens the library (a CLI search while the server runs) keeps
its changes in its own memory.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Conflict, InvalidParameter
from ..filters import Node, TagColumns, evaluate
from ..index import VectorIndex
from .base import Hit, ImageRecord, ImportReport, LibraryRecord, NewImage
from .catalog import Catalog, ChangedRows

log = logging.getLogger(__name__)

#: Compact an index in the background once this share of its rows are tombstones (and it has at
#: least _COMPACT_MIN_SLOTS rows): scans and the file then shrink by a third or more.
COMPACT_DEAD_SHARE = 0.3
_COMPACT_MIN_SLOTS = 4096


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

    def apply_all(self, chunks: Iterable[ChangedRows]) -> None:
        """Apply streamed chunks (``Catalog.iter_changes``); ``seq`` moves only at the end, so an
        interrupted catch-up is redone from the start."""
        seq = self.seq
        for changes in chunks:
            seq = max(seq, changes.seq)
            self._apply(changes)
        self.seq = seq

    def _apply(self, changes: ChangedRows) -> None:
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

    def columns(self) -> tuple[np.ndarray, TagColumns]:
        """(row keys (n,) int64, their tags as columns), rebuilt after any change."""
        if self._columns is None:
            keys = np.fromiter(self.images.keys(), dtype=np.int64, count=len(self.images))
            self._columns = (keys, TagColumns([self.images[k].tags for k in keys.tolist()]))
        return self._columns


class EmbeddedStore:
    """``Store`` over SQLite + memory-mapped ``VectorIndex`` files (see module docstring).

    Args:
        db_path: SQLite database file.
        index_dir: where vector indexes live (``<library id>/<field>/``, one directory each).
        index_options: keyword arguments for new ``VectorIndex`` objects (``ann_min_size``,
            ``probe_share``): tests and benchmarks shrink them; the defaults suit serving.
    """

    def __init__(self, db_path: Path, index_dir: Path, *, index_options: dict[str, Any] | None = None) -> None:
        self._catalog = Catalog(db_path)
        self._index_dir = index_dir
        self._index_options = dict(index_options or {})
        self._states: dict[str, _LibraryState] = {}
        self._opening: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._compactor: threading.Thread | None = None

    # -- state ---------------------------------------------------------------------------

    def _state(self, name: str) -> _LibraryState:
        """The library's in-memory state, caught up with every committed write."""
        library_id, seq = self._catalog.library_seq(name)
        with self._lock:
            state = self._states.get(name)
            opening = self._opening.setdefault(name, threading.Lock())
        if state is None or state.library_id != library_id:
            # Opening a large library builds its IVF (tens of seconds): hold only this
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
                    state.apply_all(self._catalog.iter_changes(state.library_id, state.seq, state.dims))
                    self._maybe_compact(state)
        return state

    def _open_state(self, name: str) -> _LibraryState:
        row = self._catalog.library(name, count=False)
        state = _LibraryState(library_id=row.id, dims=dict(row.record.dims))
        saved = {f: self._load_index(row.id, f) for f in state.dims}
        watermark = min((ix.watermark for ix in saved.values() if ix is not None), default=0)
        if all(ix is not None for ix in saved.values()) and watermark > 0:
            # Saved indexes: read all records, but vectors only for rows changed since.
            state.indexes = {f: ix for f, ix in saved.items() if ix is not None}
            state.apply_all(self._catalog.iter_changes(row.id, 0, state.dims, with_vectors=False))
            state.seq = watermark
            state.apply_all(self._catalog.iter_changes(row.id, watermark, state.dims))
            state.saved_seq = watermark
            live = np.sort(np.fromiter(state.images.keys(), dtype=np.int64, count=len(state.images)))
            if all(np.array_equal(np.sort(ix.keys()), live) for ix in state.indexes.values()):
                return state
            log.warning("saved index of library %s is inconsistent; rebuilding", name)
            for ix in state.indexes.values():
                ix.close()
            state = _LibraryState(library_id=row.id, dims=dict(row.record.dims))
        else:
            for unused in saved.values():
                if unused is not None:
                    unused.close()
        state.indexes = {f: self._new_index(row.id, f, dim) for f, dim in state.dims.items()}
        state.apply_all(self._catalog.iter_changes(row.id, 0, state.dims))
        return state

    def _index_path(self, library_id: int, name: str) -> Path:
        return self._index_dir / str(library_id) / name

    def _new_index(self, library_id: int, name: str, dim: int) -> VectorIndex:
        """A fresh index in the library's directory, or in RAM if another process owns it."""
        try:
            return VectorIndex(dim, directory=self._index_path(library_id, name), **self._index_options)
        except RuntimeError:
            log.info("index of library %s field %s is owned by another process; indexing in memory", library_id, name)
            return VectorIndex(dim, **self._index_options)

    def _load_index(self, library_id: int, name: str) -> VectorIndex | None:
        path = self._index_path(library_id, name)
        if not (path / "meta.json").exists():
            return None
        try:
            return VectorIndex.load(path)
        except Exception:  # a cache: any damage means rebuild from SQLite
            log.warning("cannot read saved index %s; rebuilding", path, exc_info=True)
            return None

    def _maybe_compact(self, state: _LibraryState) -> None:
        """Start a background compaction when tombstones pile up (one at a time per store)."""
        due = [
            ix for ix in state.indexes.values()
            if not ix.read_only and ix.slots >= _COMPACT_MIN_SLOTS and ix.slots - len(ix) > COMPACT_DEAD_SHARE * ix.slots
        ]
        if not due:
            return
        with self._lock:
            if self._compactor is not None and self._compactor.is_alive():
                return

            def run() -> None:
                for ix in due:
                    try:
                        ix.compact()
                    except Exception:  # noqa: BLE001 - a cache: searches stay correct without it
                        log.warning("background compaction failed", exc_info=True)

            self._compactor = threading.Thread(target=run, name="lookalike-compact", daemon=True)
            self._compactor.start()

    def index_stats(self, library: str) -> dict[str, dict[str, object]]:
        """Per field: ``live`` and ``slots`` (rows incl. tombstones), ``ann`` (IVF built or loaded),
        ``ann_loaded`` (read from disk, not built), ``owner`` (this process owns
        the index files; False when another process does and changes stay in memory). Opens the
        library if needed. Raises ``LibraryNotFound``."""
        state = self._state(library)
        return {
            f: {
                "live": len(ix), "slots": ix.slots, "ann": ix.has_ann, "ann_loaded": ix.ann_loaded,
                "owner": not (ix.read_only or ix.directory is None),
            }
            for f, ix in state.indexes.items()
        }

    def compact(self, library: str) -> int:
        """Rewrite the library's vector files without deleted rows, now; returns the rows
        reclaimed (summed over its fields).

        Raises:
            LibraryNotFound: no such library.
            Conflict: another process (a running server) owns the library's index files; it
                compacts them itself once a third of the rows are deleted.
        """
        state = self._state(library)
        if any(ix.read_only or ix.directory is None for ix in state.indexes.values()):
            raise Conflict(
                f"Image library '{library}' is open in another process (a running server); "
                "it compacts its index itself, or stop it and retry."
            )
        with state.lock:
            return sum(ix.compact() for ix in state.indexes.values())

    def warm(self, library: str) -> None:
        """Load a library's rows and vectors (and build its IVF if it is large), so the
        first search does not pay for it. Raises ``LibraryNotFound``."""
        self._state(library)

    def save_indexes(self) -> None:
        """Save every open library's vector indexes, so a restart skips rebuilding them."""
        with self._lock:
            states = list(self._states.values())
        for state in states:
            with state.lock:
                if state.seq == state.saved_seq:
                    continue
                for index in state.indexes.values():
                    if index.directory is not None and not index.read_only:
                        index.watermark = state.seq
                        index.save()
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
            state = self._states.pop(name, None)
        if state is not None:
            for index in state.indexes.values():
                index.close()
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

    def sample_vectors(self, library: str, field: str, limit: int) -> np.ndarray:
        return self._catalog.sample_vectors(library, field, limit)

    def adaptation(self, library: str, field: str) -> bytes | None:
        return self._catalog.adaptation(library, field)

    def save_adaptation(self, library: str, field: str, data: bytes | None) -> None:
        self._catalog.save_adaptation(library, field, data)

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
        compactor = self._compactor
        if compactor is not None:
            compactor.join()
        self.save_indexes()
        with self._lock:
            states = list(self._states.values())
        for state in states:
            for index in state.indexes.values():
                with contextlib.suppress(OSError):
                    index.close()
        self._catalog.close()
