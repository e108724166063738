"""Vector index of one embedding field of one library: memory-mapped rows, compact candidates.

A :class:`VectorIndex` holds the L2-normalised float32 embeddings of one field, keyed by the
store's int64 row ids, and answers top-k cosine-similarity queries, optionally restricted to an
``allowed`` set of keys (the rows that pass a metadata filter).

Search methods, chosen per query by a small planner (:meth:`VectorIndex.search_with_path`):

* exact: inner products with all live rows, or with the allowed rows gathered block by block,
  then ``np.argpartition``; recall 1.0, cost proportional to rows x dim. Used below
  ``hnsw_min_size`` rows and for filters passing at most ``EXACT_MAX_ROWS`` rows.
* compact scan: the same over the compact (PCA-projected, 256-d) rows, keeping the best
  ``RERANK_PER_K * k`` for an exact re-rank: for filters passing many rows of a large index.
* HNSW: a hierarchical navigable small-world graph (Malkov & Yashunin, "Efficient and robust
  approximate nearest neighbor search using Hierarchical Navigable Small World graphs",
  IEEE TPAMI 42(4), 2018), through hnswlib 0.8, space ``'ip'``. Built lazily once the index
  holds ``hnsw_min_size`` vectors, then kept in step with every add and remove. It indexes
  the compact rows; its candidates are re-ranked exactly.

The on-disk format (a directory of memory-mapped row files, the graph and a header) is in
:mod:`lookalike.index.persist`.

Why a planner (``docs/research.md``, "Vector engines", measured on this 2-core machine):
hnswlib at M=16, efConstruction=128 gives recall@10 0.987 in 0.87 ms over 200k 512-d vectors,
but graph search under a selective filter loses recall unless it falls back to an exact search,
and an exact search over a pre-gathered 1% subset costs 0.05 ms. So selective filters (and
small indexes) are scanned; broad filters use an over-fetching graph query whose survivors are
checked against the filter, redone exactly when fewer than k survive. The cut-offs below come
from ``benchmarks/filtered_recall.py``.

Every returned similarity is recomputed by one row-wise routine (:func:`_rescore`) whose value for
a row does not depend on which other rows are in the batch, so a key gets bit-identical scores
whichever path served it, and exact ties (duplicate images) are broken by key ascending.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import hnswlib
import numpy as np

from .persist import META_NAME, RowFile, read_meta, remove_unreferenced, write_meta

__all__ = ["SearchPath", "VectorIndex"]


class SearchPath:
    """Names of the ways :meth:`VectorIndex.search_with_path` can serve a query."""

    EMPTY: Final = "empty"  # nothing to search: empty index, k == 0 or no allowed key is live
    EXACT: Final = "exact"  # brute force over all live rows
    EXACT_FILTERED: Final = "exact-filtered"  # brute force over the allowed rows
    HNSW: Final = "hnsw"  # graph search, no filter
    HNSW_FILTERED: Final = "hnsw-filtered"  # over-fetching graph search, filtered afterwards
    HNSW_FALLBACK: Final = "hnsw-filtered>exact"  # too few survivors: redone by a scan
    COMPACT: Final = "compact"  # scan of the compact rows, re-ranked exactly
    COMPACT_FILTERED: Final = "compact-filtered"  # the same over the allowed rows


# Planner constants, set from measurements at n=100k, k=10, dim 256 and 1280, on clustered data
# with a realistic (decaying) and a hard (isotropic) variance spectrum, 2 cores, single-thread
# CPU time per query (benchmarks/filtered_recall.py; the numbers are in its report).
#
# Filtered graph queries ask for OVERFETCH * k / s candidates (s = allowed share of the rows),
# so about OVERFETCH * k of them are expected to pass. 2 (the first design: an expected 2k
# survivors) gave recall@10 0.92-0.98 at s = 0.05-0.2, since the allowed top-k lie deeper in the
# unfiltered ranking than the graph is accurate; 8 gives 0.995-0.999 at every s >= 0.02 on the
# realistic data and 0.98-0.998 at s >= 0.1 on the hard data.
OVERFETCH: Final = 8.0
# Below this selectivity a filtered query is always answered exactly, whatever the sizes: the
# graph query would need >= 1600 candidates for k=10 and, on the hard data, drops below 0.98
# recall (0.977-0.983 at s = 0.05), while the scan is exact.
HNSW_MIN_SELECTIVITY: Final = 0.1
# Above it, scan anyway when the allowed rows number at most this many times the candidates the
# graph query would fetch. Measured: one fetched graph candidate costs as much as scanning ~8
# (1280-d) to ~12 (256-d) gathered rows; 16 settles near-ties in favour of the exact answer (at
# n=100k, k=10: 10% filters are scanned, 20% and up go to the graph).
EXACT_ROWS_PER_FETCH: Final = 16
# When the allowed rows are more than this share of all rows, scanning the whole matrix
# (sequential reads) and picking their scores is cheaper than gathering their rows (random
# reads plus a copy: measured 0.17 vs 0.09 us per 256-d row).
GATHER_MAX_FRACTION: Final = 0.5
# A graph query asking for more than this share of the live rows costs more than a scan.
HNSW_MAX_FETCH_FRACTION: Final = 0.05

# Largest key span the dense key->slot table may cover, as a multiple of the live row count
# (with a floor); beyond it keys are mapped by a dict and a lazily sorted array.
_DENSE_SPAN_FACTOR: Final = 4
_DENSE_SPAN_FLOOR: Final = 1 << 20
# Rows x dim per block of an exact scan: below OpenBLAS's sgemv threading cut-off (measured:
# 100k elements ran on one thread, 256k on two) and within L2 (see VectorIndex._scan).
_BLOCK_FLOATS: Final = 98_304
_NORM_TOLERANCE: Final = 1e-3
_MIN_CAPACITY: Final = 1024
_GROWTH: Final = 1.5

# Compact vectors for the candidate stage: 256 principal directions. Measured at 100k x 1280-d
# clustered vectors (benchmarks/filtered_recall.make_clustered, 200 queries, recall@10 after an
# exact re-rank; README, Storage): a scan of 256-d projections re-ranking its best 100 / 200
# gave 0.990 / 0.994, 128-d only 0.962 / 0.975.
COMPACT_DIM: Final = 256
# Candidates re-ranked exactly: RERANK_PER_K per wanted result up to 10 results, then 2 more per
# result (a deep request, e.g. creator search's 512 candidates, needs a thinner margin), at least
# RERANK_MIN. Graph candidates at 256-d reached recall@10 0.974 with 200 and need ~400 for 0.98+.
RERANK_PER_K: Final = 40
RERANK_MIN: Final = 200
# A filter passing at most this many rows is always scanned exactly in full precision: a gather
# of 16k x 1280-d rows costs ~5-10 ms and makes small filtered searches exact (recall 1.0).
EXACT_MAX_ROWS: Final = 16_384
# Rows sampled to fit the projection (a 1280 x 1280 eigendecomposition, ~1 s).
_PROJECTION_SAMPLE: Final = 20_000
# Floats per block when writing compact rows and inserting into the graph (bounded memory).
_BUILD_BLOCK: Final = 1 << 24
_LOCK_NAME: Final = "lock"
_SUFFIX: Final = {"vectors": "f32", "keys": "i64", "compact": "f32"}


# --------------------------------------------------------------------------------------------
# helpers


class _RWLock:
    """Many readers or one writer; a waiting writer blocks new readers so adds are not starved.

    Not re-entrant: a thread holding the read side must not ask for it again while a writer may
    be waiting (it would deadlock), so locked methods never call other locked methods.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _KeyMap:
    """int64 key -> slot, with vectorised lookups.

    Store row ids are small dense non-negative integers, so the usual mode is a dense int64 table
    indexed by key (an O(m) gather for m keys, which the filtered planner needs for every query).
    Any other int64 key (negative, or far beyond the live count) switches the map for good to a
    dict plus a sorted array rebuilt lazily on the first lookup after a change.
    """

    def __init__(self) -> None:
        self._table: np.ndarray | None = np.full(0, -1, dtype=np.int64)
        self._dict: dict[int, int] = {}
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Slots (int64, -1 for unknown keys) of ``keys`` ((m,) int64)."""
        if self._table is not None:
            table = self._table
            out = np.full(keys.shape, -1, dtype=np.int64)
            inside = (keys >= 0) & (keys < table.shape[0])
            out[inside] = table[keys[inside]]
            return out
        if keys.shape[0] <= 32:
            d = self._dict
            return np.fromiter(
                (d.get(k, -1) for k in keys.tolist()), dtype=np.int64, count=keys.shape[0]
            )
        sorted_keys, sorted_slots = self._sorted_arrays()
        if sorted_keys.shape[0] == 0:
            return np.full(keys.shape, -1, dtype=np.int64)
        pos = np.searchsorted(sorted_keys, keys)
        pos[pos == sorted_keys.shape[0]] = 0
        return np.where(sorted_keys[pos] == keys, sorted_slots[pos], -1)

    def set(self, keys: np.ndarray, slots: np.ndarray, live_count: int) -> None:
        """Map ``keys`` to ``slots``; ``live_count`` (after the change) sizes the dense table."""
        if keys.shape[0] == 0:
            return
        if self._table is not None:
            lo, hi = int(keys.min()), int(keys.max())
            if lo >= 0 and hi < max(_DENSE_SPAN_FLOOR, _DENSE_SPAN_FACTOR * live_count):
                if hi >= self._table.shape[0]:
                    size = max(1024, self._table.shape[0])
                    while size <= hi:
                        size *= 2
                    grown = np.full(size, -1, dtype=np.int64)
                    grown[: self._table.shape[0]] = self._table
                    self._table = grown
                self._table[keys] = slots
                return
            self._to_sparse()
        self._dict.update(zip(keys.tolist(), slots.tolist(), strict=True))
        self._sorted = None

    def delete(self, keys: np.ndarray) -> None:
        if keys.shape[0] == 0:
            return
        if self._table is not None:
            inside = keys[(keys >= 0) & (keys < self._table.shape[0])]
            self._table[inside] = -1
            return
        for k in keys.tolist():
            self._dict.pop(k, None)
        self._sorted = None

    def _to_sparse(self) -> None:
        assert self._table is not None
        live = np.flatnonzero(self._table >= 0)
        self._dict = dict(zip(live.tolist(), self._table[live].tolist(), strict=True))
        self._table = None
        self._sorted = None

    def _sorted_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        # Rebuilt under the read lock; concurrent readers may both rebuild, which is harmless
        # because writers (who invalidate it) hold the write lock.
        cached = self._sorted
        if cached is None:
            keys = np.fromiter(self._dict.keys(), dtype=np.int64, count=len(self._dict))
            slots = np.fromiter(self._dict.values(), dtype=np.int64, count=len(self._dict))
            order = np.argsort(keys, kind="stable")
            cached = (keys[order], slots[order])
            self._sorted = cached
        return cached


def _rescore(vectors: np.ndarray, slots: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine similarities (float32) of the rows ``slots`` of ``vectors`` with ``query``.

    BLAS matrix-vector products may give a row a result one ulp different depending on where the
    row falls in the batch (measured: OpenBLAS sgemv over a gathered subset vs the full matrix).
    An elementwise product followed by numpy's per-row pairwise sum depends only on the row, so
    every path reports identical scores and duplicate vectors tie exactly.
    """
    return np.multiply(vectors[slots], query).sum(axis=1, dtype=np.float32)


def _order(keys: np.ndarray, sims: np.ndarray, k: int) -> np.ndarray:
    """Indices of the best ``k`` by similarity descending, ties by key ascending."""
    return np.lexsort((keys, -sims))[:k]


def _as_keys(keys: object, name: str) -> np.ndarray:
    arr = np.asarray(keys)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} must fit in int64")
    return np.ascontiguousarray(arr, dtype=np.int64)


# --------------------------------------------------------------------------------------------


class VectorIndex:
    """Embeddings of one field of one library, searchable by cosine similarity.

    Storage is append-only, by slot: a vector is written once at the next free slot of a
    ``(slots, dim)`` float32 matrix (:class:`~lookalike.index.persist.RowFile`, memory-mapped
    when the index has a ``directory``); replacing a key appends a new row and tombstones the
    old one, removing a key tombstones its row. Tombstoned rows cost disk and scan time until
    :meth:`compact` rewrites the files without them. Keys are int64 (the store's row ids).

    Candidate stage and exact re-rank: once ``hnsw_min_size`` vectors are live, an hnswlib
    graph (space ``'ip'``, labels = keys) is built over *compact* vectors: each row projected
    onto the top ``compact_dim`` principal directions of the library's own vectors (the
    eigenvectors of the uncentred second-moment matrix of a sample, so inner products are
    preserved as well as any rank-r map can; Eckart-Young), e.g. 1280-d -> 256-d, a fifth of the
    bytes. Fields of at most ``1.5 * compact_dim`` dims are not projected. Graph candidates,
    and candidates of a scan over the compact rows, are re-ranked with the full-precision rows,
    so every returned similarity is the exact one (:func:`_rescore`); recall, not score, is
    what the compact stage may cost (measured in README, Storage).

    Thread safety: any number of concurrent :meth:`search` calls against one writer at a time;
    :meth:`add`, :meth:`remove` and :meth:`compact` are atomic with respect to searches, and
    :meth:`compact` lets searches run while it copies.

    Args:
        dim: vector dimension (> 0).
        directory: where the index lives on disk (created; any index there is replaced), or
            None for an index in RAM only (it can still be written out with :meth:`save`).
        hnsw_min_size: number of live vectors at which the graph is first built.
        M: HNSW out-degree (hnswlib ``M``).
        ef_construction: HNSW build beam width.
        ef_search: HNSW query beam width (widened to the candidate count a query asks for).
        compact_dim: dimensions of the compact (projected) vectors.

    Raises:
        ValueError: a parameter out of range.

    Attributes:
        watermark: an int the owner sets to record how far the index reflects its durable rows
            (e.g. the last applied change id); saved and restored with the index, not used here.
        graph_loaded: True when the graph was read from disk by :meth:`load` (not built).
        read_only: True when another process owns the directory (see :meth:`load`): searches
            and changes work, in this process's memory only, and :meth:`save` is a no-op.
    """

    def __init__(
        self,
        dim: int,
        *,
        directory: Path | str | None = None,
        hnsw_min_size: int = 20_000,
        M: int = 16,
        ef_construction: int = 128,
        ef_search: int = 128,
        compact_dim: int = COMPACT_DIM,
    ) -> None:
        if int(dim) <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        if int(hnsw_min_size) < 1:
            raise ValueError(f"hnsw_min_size must be >= 1, got {hnsw_min_size}")
        if int(M) < 2 or int(ef_construction) < 1 or int(ef_search) < 1 or int(compact_dim) < 1:
            raise ValueError("M must be >= 2, ef_construction, ef_search and compact_dim >= 1")
        self.dim = int(dim)
        self.hnsw_min_size = int(hnsw_min_size)
        self.M = int(M)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.compact_dim = int(compact_dim)
        self.watermark: int = 0
        self.graph_loaded = False
        self.read_only = False

        self._lock = _RWLock()
        # Writers (add, remove, compact) queue here first, so compact can copy under the read
        # lock (searches go on) while no writer changes the rows it copies.
        self._write_gate = threading.Lock()
        self._dir = None if directory is None else Path(directory)
        self._lock_fd: int | None = None
        self._gen = 1
        self._files: dict[str, Any] = {}  # kind -> file name (None: absent), as in meta.json
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            if not self._take_ownership():
                raise RuntimeError(f"{self._dir}: vector index in use by another process")
            # A new index replaces whatever was there (a damaged or outdated cache).
            with contextlib.suppress(FileNotFoundError):
                (self._dir / META_NAME).unlink()
            remove_unreferenced(self._dir, {_LOCK_NAME})
        self._vecs = self._new_rows("vectors", self.dim, "<f4")
        self._keys = self._new_rows("keys", 1, "<i8")
        self._live = np.zeros(0, dtype=bool)
        self._n_live = 0
        self._proj: np.ndarray | None = None
        self._compact: RowFile | None = None
        self._map = _KeyMap()
        self._live_slots: np.ndarray | None = None
        self._graph: hnswlib.Index | None = None
        # Keys removed from the index whose points may still sit (marked deleted) in the graph;
        # re-adding one must unmark it first, because hnswlib refuses to update a deleted point
        # when replacement of deleted points is enabled.
        self._graph_dead: set[int] = set()

    @classmethod
    def over(cls, vectors: np.ndarray, **options: Any) -> VectorIndex:
        """An index in RAM whose keys are the row numbers of ``vectors`` ((n, dim) float32,
        L2-normalised rows, not checked), searching that array in place (no copy of the full
        vectors; the compact rows and the graph are built when n >= ``hnsw_min_size``).

        For a read-only matrix such as a creator-post snapshot; ``options`` as for the
        constructor (without ``directory``).
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = cls(int(vectors.shape[1]), **options)
        n = int(vectors.shape[0])
        index._vecs = RowFile.wrap(vectors)
        index._keys = RowFile.wrap(np.arange(n, dtype=np.int64)[:, None])
        index._live = np.ones(n, dtype=bool)
        index._n_live = n
        index._map.set(np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64), n)
        if n >= index.hnsw_min_size:
            index._build_graph()
        return index

    def _new_rows(self, kind: str, width: int, dtype: str) -> RowFile:
        if self._dir is None:
            return RowFile(None, width, dtype)
        name = f"{kind}.{self._gen}.{_SUFFIX[kind]}"
        self._files[kind] = name
        return RowFile(self._dir / name, width, dtype, create=True)

    def _take_ownership(self) -> bool:
        """Lock ``directory/lock`` for this object's lifetime; False if another holder has it."""
        assert self._dir is not None
        fd = os.open(self._dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def close(self) -> None:
        """Release the directory (unsaved changes stay unsaved: call :meth:`save` first)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---------------------------------------------------------------- introspection

    def __len__(self) -> int:
        return self._n_live

    def __contains__(self, key: object) -> bool:
        try:
            k = np.array([key], dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            return False
        with self._lock.read():
            return bool(self._map.lookup(k)[0] >= 0)

    def keys(self) -> np.ndarray:
        """Live keys, ``(len(self),)`` int64, in slot order (a copy)."""
        with self._lock.read():
            return self._keys.view()[self._live_slot_array(), 0].astype(np.int64)

    @property
    def has_graph(self) -> bool:
        """Whether the HNSW graph exists (built or loaded)."""
        return self._graph is not None

    @property
    def projected(self) -> bool:
        """Whether candidates come from compact (projected) vectors."""
        return self._proj is not None

    @property
    def slots(self) -> int:
        """Rows written, live or tombstoned (what :meth:`compact` reduces to ``len(self)``)."""
        return self._vecs.rows

    @property
    def directory(self) -> Path | None:
        return self._dir

    def __repr__(self) -> str:
        return (
            f"VectorIndex(dim={self.dim}, n={self._n_live}, slots={self.slots}, "
            f"graph={self._graph is not None}, projected={self.projected}, watermark={self.watermark})"
        )

    def _live_slot_array(self) -> np.ndarray:
        cached = self._live_slots
        if cached is None:
            cached = np.flatnonzero(self._live[: self._vecs.rows]).astype(np.int64)
            self._live_slots = cached
        return cached

    # ---------------------------------------------------------------- mutation

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace vectors.

        Args:
            keys: ``(n,)`` integer keys (int64 range). A key already present is replaced; a key
                repeated within ``keys`` keeps its last vector.
            vectors: ``(n, dim)`` float32 (other float dtypes are converted), each row finite and
                L2-normalised (norm within 1e-3 of 1).

        The call that brings the index to ``hnsw_min_size`` vectors builds the graph (searches
        wait): the projection fit plus O(n log n) graph inserts, measured 29 s for 100k 1280-d
        vectors projected to 256-d on 2 cores (50-85 s unprojected). Later adds insert into the
        graph at about the same cost per vector.

        Raises:
            ValueError: shape mismatch, non-finite values or a row that is not unit length.
            TypeError: keys that are not integers.
        """
        keys = _as_keys(keys, "keys")
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or vectors.shape[0] != keys.shape[0]:
            raise ValueError(
                f"vectors must have shape ({keys.shape[0]}, {self.dim}), got {vectors.shape}"
            )
        if keys.shape[0] == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._check_unit(vectors, "vectors")

        # Last occurrence wins, as if the batch were applied row by row.
        rev_unique, rev_first = np.unique(keys[::-1], return_index=True)
        if rev_unique.shape[0] != keys.shape[0]:
            pick = np.sort(keys.shape[0] - 1 - rev_first)
            keys, vectors = keys[pick], vectors[pick]
        with self._write_gate:
            # Projected under the gate: a concurrent add may have just fitted the projection.
            compact = None if self._proj is None else vectors @ self._proj
            with self._lock.write():
                self._apply_add(keys, vectors, compact)

    def _apply_add(self, keys: np.ndarray, vectors: np.ndarray, compact: np.ndarray | None) -> None:
        """The body of :meth:`add` (write lock held)."""
        old_slots = self._map.lookup(keys)
        old = old_slots >= 0
        self._live[old_slots[old]] = False
        slots = self._vecs.append(vectors)
        self._keys.append(keys[:, None])
        if self._compact is not None and compact is not None:
            self._compact.append(compact)
        if self._live.shape[0] < self._vecs.capacity:
            grown = np.zeros(self._vecs.capacity, dtype=bool)
            grown[: self._live.shape[0]] = self._live
            self._live = grown
        self._live[slots] = True
        self._n_live += int((~old).sum())
        self._map.set(keys, slots, self._n_live)
        self._live_slots = None
        if self._graph is not None:
            self._graph_add(keys, vectors if compact is None else compact, old)
        elif self._n_live >= self.hnsw_min_size:
            self._build_graph()

    def remove(self, keys: np.ndarray) -> None:
        """Remove keys (tombstones); unknown keys are ignored.

        Args:
            keys: ``(m,)`` integer keys.

        Raises:
            ValueError, TypeError: ``keys`` not a 1-D integer array.
        """
        keys = _as_keys(keys, "keys")
        if keys.shape[0] == 0:
            return
        with self._write_gate, self._lock.write():
            slots = self._map.lookup(keys)
            found = slots >= 0
            slots = np.unique(slots[found])
            if slots.shape[0] == 0:
                return
            gone_keys = self._keys.view()[slots, 0].astype(np.int64)
            self._live[slots] = False
            self._n_live -= slots.shape[0]
            self._map.delete(gone_keys)
            self._live_slots = None
            if self._graph is not None:
                for k in gone_keys.tolist():
                    self._graph.mark_deleted(_label(k))
                    self._graph_dead.add(k)

    def _fit_projection(self) -> np.ndarray | None:
        """(dim, r) float32: top-r eigenvectors of the second-moment matrix of a sample of
        live rows, or None when the field is small enough to search unprojected."""
        r = self.compact_dim
        if self.dim <= 1.5 * r:
            return None
        live = self._live_slot_array()
        rng = np.random.default_rng(self.dim)  # deterministic: same rows, same projection
        sample = np.sort(rng.choice(live, size=min(live.shape[0], _PROJECTION_SAMPLE), replace=False))
        rows = np.asarray(self._vecs.view()[sample], dtype=np.float64)
        _, eigvecs = np.linalg.eigh(rows.T @ rows)
        return np.ascontiguousarray(eigvecs[:, ::-1][:, :r], dtype=np.float32)

    def _build_graph(self) -> None:
        """Fit the projection, write the compact rows and build the HNSW graph over the live
        rows (called with the write lock held)."""
        self._proj = self._fit_projection()
        if self._proj is not None:
            self._files["projection"] = None
            compact = self._new_rows("compact", self._proj.shape[1], "<f4")
            vecs = self._vecs.view()
            block = max(1, _BUILD_BLOCK // self.dim)
            for start in range(0, vecs.shape[0], block):
                compact.append(np.asarray(vecs[start : start + block]) @ self._proj)
            self._compact = compact
        graph_dim = self.dim if self._proj is None else self._proj.shape[1]
        graph = hnswlib.Index(space="ip", dim=graph_dim)
        graph.init_index(
            max_elements=max(self._n_live, _MIN_CAPACITY),
            M=self.M,
            ef_construction=self.ef_construction,
            random_seed=100,
            allow_replace_deleted=True,
        )
        graph.set_ef(self.ef_search)
        live = self._live_slot_array()
        source = self._graph_rows()
        keys = self._keys.view()[:, 0]
        block = max(1, _BUILD_BLOCK // graph_dim)
        for start in range(0, live.shape[0], block):
            part = live[start : start + block]
            graph.add_items(np.asarray(source[part]), np.asarray(keys[part]).view(np.uint64))
        self._graph = graph
        self._graph_dead = set()

    def _graph_rows(self) -> np.ndarray:
        """The rows the graph indexes: compact ones when projected, else the full vectors."""
        return self._vecs.view() if self._compact is None else self._compact.view()

    def _graph_add(self, keys: np.ndarray, vectors: np.ndarray, old: np.ndarray) -> None:
        graph = self._graph
        assert graph is not None
        update = old.copy()
        if self._graph_dead:
            for i in np.flatnonzero(~old).tolist():
                k = int(keys[i])
                if k in self._graph_dead:
                    self._graph_dead.discard(k)
                    try:
                        graph.unmark_deleted(_label(k))
                    except RuntimeError:
                        continue  # its point was reused by another key: add it afresh
                    update[i] = True
        if update.any():
            # Existing label: hnswlib moves the point and repairs its links (updatePoint).
            graph.add_items(vectors[update], keys[update].view(np.uint64))
        fresh = ~update
        n_fresh = int(fresh.sum())
        if n_fresh:
            needed = graph.element_count + n_fresh
            if needed > graph.max_elements:
                graph.resize_index(max(needed, int(graph.max_elements * _GROWTH)))
            graph.add_items(vectors[fresh], keys[fresh].view(np.uint64), replace_deleted=True)
        if graph.element_count == self._n_live:
            self._graph_dead.clear()  # no deleted point left in the graph

    def compact(self) -> int:
        """Rewrite the rows without tombstones; returns the number of rows reclaimed.

        Copies the live rows to new files block by block (bounded memory) while searches go on
        (writers wait), then swaps them in and, for an index on disk, saves it, so the old
        files are deleted. Keys, vectors and the graph are unchanged: graph labels are keys.

        Raises:
            RuntimeError: the directory is owned by another process (``read_only``).
            OSError: the files cannot be written.
        """
        if self.read_only:
            raise RuntimeError(f"{self._dir}: vector index in use by another process")
        with self._write_gate:
            with self._lock.read():
                live = self._live_slot_array()
                reclaimed = self._vecs.rows - live.shape[0]
                if reclaimed == 0:
                    return 0
                self._gen += 1
                vecs = self._copy_rows(self._vecs, "vectors", live)
                keys = self._copy_rows(self._keys, "keys", live)
                compact = None if self._compact is None else self._copy_rows(self._compact, "compact", live)
            with self._lock.write():
                n = live.shape[0]
                self._vecs, self._keys, self._compact = vecs, keys, compact
                self._live = np.zeros(max(n, vecs.capacity), dtype=bool)
                self._live[:n] = True
                self._map = _KeyMap()
                self._map.set(np.asarray(keys.view()[:, 0], dtype=np.int64), np.arange(n, dtype=np.int64), n)
                self._live_slots = None
        if self._dir is not None:
            self.save()
        return int(reclaimed)

    def _copy_rows(self, rows: RowFile, kind: str, live: np.ndarray) -> RowFile:
        if self._dir is None:
            out = RowFile(None, rows.width, rows.dtype.str)
            out.reserve(live.shape[0])
            out.append(rows.view()[live])
            return out
        name = f"{kind}.{self._gen}.{_SUFFIX[kind]}"
        self._files[kind] = name
        return rows.copy_to(self._dir / name, live)

    # ---------------------------------------------------------------- search

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k keys by cosine similarity to ``query``.

        Args:
            query: ``(dim,)`` float32, finite, L2-normalised (norm within 1e-3 of 1).
            k: number of results wanted (>= 0); fewer come back when fewer keys qualify.
            allowed: ``None`` for all keys, or ``(m,)`` integer keys that pass a filter; unknown
                keys and duplicates are ignored.

        Returns:
            ``(keys, sims)``: ``(<=k,)`` int64 keys and ``(<=k,)`` float32 cosine similarities,
            sorted by similarity descending, ties by key ascending.

        Raises:
            ValueError: bad query shape/values, negative k, or ``allowed`` not 1-D.
            TypeError: ``allowed`` not integer.
        """
        keys, sims, _ = self.search_with_path(query, k, allowed)
        return keys, sims

    def search_with_path(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """:meth:`search`, also returning the :class:`SearchPath` name that served the query."""
        q = np.asarray(query)
        if q.shape != (self.dim,):
            raise ValueError(f"query must have shape ({self.dim},), got {q.shape}")
        q = np.ascontiguousarray(q, dtype=np.float32)
        self._check_unit(q[None, :], "query")
        k = int(k)
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        allowed_keys = None if allowed is None else _as_keys(allowed, "allowed")

        with self._lock.read():
            n = self._n_live
            if n == 0 or k == 0:
                return _empty(SearchPath.EMPTY)
            graph = self._graph if n >= self.hnsw_min_size else None
            zq = q if self._proj is None else q @ self._proj
            # Unprojected graph candidates are already ranked by the full vectors; projected
            # ones need a deeper pool for the exact re-rank to recover the true top-k.
            fetch_all = k if self._proj is None else max(self.ef_search, _pool(k))

            if allowed_keys is None:
                live = self._live_slot_array()
                if graph is None:
                    return (*self._exact(q, k, live), SearchPath.EXACT)
                if fetch_all > HNSW_MAX_FETCH_FRACTION * n:
                    return (*self._candidates(q, zq, k, live), self._scan_path(False))
                hit = self._graph_query(graph, zq, fetch_all)
                if hit is None:
                    return (*self._candidates(q, zq, k, live), self._scan_path(False))
                return (*self._finish(hit, q, k), SearchPath.HNSW)

            slots = self._map.lookup(allowed_keys)
            slots = slots[slots >= 0]
            m = slots.shape[0]
            if m == 0:
                return _empty(SearchPath.EMPTY)
            if graph is None or m <= EXACT_MAX_ROWS:
                return (*self._exact(q, k, slots), SearchPath.EXACT_FILTERED)
            s = m / n
            fetch = max(math.ceil(OVERFETCH * k / s), self.ef_search, fetch_all)
            if (
                s < HNSW_MIN_SELECTIVITY
                or m <= EXACT_ROWS_PER_FETCH * fetch
                or fetch > HNSW_MAX_FETCH_FRACTION * n
            ):
                return (*self._candidates(q, zq, k, slots), self._scan_path(True))
            hit = self._graph_query(graph, zq, fetch)
            if hit is not None:
                mask = np.zeros(self._vecs.rows, dtype=bool)
                mask[slots] = True
                hit = hit[mask[hit]]
                if hit.shape[0] >= k:
                    return (*self._finish(hit, q, k), SearchPath.HNSW_FILTERED)
            return (*self._candidates(q, zq, k, slots), SearchPath.HNSW_FALLBACK)

    def _scan_path(self, filtered: bool) -> str:
        if self._compact is None:
            return SearchPath.EXACT_FILTERED if filtered else SearchPath.EXACT
        return SearchPath.COMPACT_FILTERED if filtered else SearchPath.COMPACT

    def _graph_query(self, graph: hnswlib.Index, q: np.ndarray, fetch: int) -> np.ndarray | None:
        """Slots of up to ``fetch`` graph neighbours, or None if hnswlib cannot fill the request."""
        # hnswlib searches with a beam of max(ef, k), so a large request widens the beam
        # without touching the shared ef setting.
        try:
            labels, _ = graph.knn_query(q, k=min(fetch, self._n_live), num_threads=1)
        except RuntimeError:
            # hnswlib raises when deleted points leave it fewer than k reachable results.
            return None
        slots = self._map.lookup(labels[0].view(np.int64))
        return slots[slots >= 0]

    def _finish(self, slots: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        slots = np.unique(slots)
        rows = self._vecs.gather(slots)
        sims = _rescore(rows, np.arange(slots.shape[0]), q)
        keys = np.asarray(self._keys.view()[slots, 0], dtype=np.int64)
        top = _order(keys, sims, k)
        return keys[top], sims[top]

    def _candidates(
        self, q: np.ndarray, zq: np.ndarray, k: int, slots: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k over the rows ``slots``: a scan of the compact rows for the best
        ``_pool(k)``, re-ranked exactly; an exact scan when
        the index is not projected."""
        if self._compact is None:
            return self._exact(q, k, slots)
        want = _pool(k)
        scores = self._scan(self._compact.view(), zq, slots)
        total = scores.shape[0]
        if want < total:
            slots = slots[np.argpartition(scores, total - want)[total - want :]]
        return self._finish(slots, q, k)

    def _exact(self, q: np.ndarray, k: int, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the rows ``slots`` (full-precision vectors)."""
        vecs = self._vecs.view()
        if slots.shape[0] > GATHER_MAX_FRACTION * vecs.shape[0]:
            scores = self._scan(vecs, q)[slots]
        else:
            scores = self._scan(vecs, q, slots)
        total = scores.shape[0]
        if k < total:
            top = np.argpartition(scores, total - k)[total - k :]
            kth = float(scores[top].min())
            # Keep everything within the BLAS rounding error of the k-th score, so rescoring
            # (which may move a score by an ulp) and key-order tie breaks see every contender.
            tol = max(1e-4, 6e-8 * self.dim) * max(1.0, abs(kth))
            cand = np.flatnonzero(scores >= kth - tol)
        else:
            cand = np.arange(total)
        cand_slots = np.unique(slots[cand])
        if cand_slots.shape[0] < min(k, total) and cand_slots.shape[0] < cand.shape[0]:
            # Duplicate allowed keys crowded the top-k: redo over distinct rows.
            return self._exact(q, k, np.unique(slots))
        return self._finish(cand_slots, q, k)

    @staticmethod
    def _scan(vecs: np.ndarray, q: np.ndarray, slots: np.ndarray | None = None) -> np.ndarray:
        """Inner products (float32) of ``q`` with all rows of ``vecs``, or with the rows ``slots``.

        Works in blocks of about _BLOCK_FLOATS floats: each block's product is small enough for
        OpenBLAS to run it on the calling thread, and a gathered block stays in cache. On this
        2-core machine with other work running, one large multithreaded sgemv waited ~8 ms for
        its second thread (100k x 256: 16 ms vs 8.5 ms blocked; 1k gathered rows x 1280:
        8 ms vs 0.7 ms), and gathering all allowed rows first costs a full extra copy.
        """
        dim = vecs.shape[1]
        rows = vecs.shape[0] if slots is None else slots.shape[0]
        block = max(1, _BLOCK_FLOATS // dim)
        out = np.empty(rows, dtype=np.float32)
        if slots is None:
            for start in range(0, rows, block):
                stop = min(rows, start + block)
                np.matmul(vecs[start:stop], q, out=out[start:stop])
            return out
        buf = np.empty((min(block, rows), dim), dtype=np.float32)
        for start in range(0, rows, block):
            stop = min(rows, start + block)
            part = buf[: stop - start]
            # mode="clip" (slots are always valid): with out=, the default mode="raise"
            # buffers the copy and was 4x slower.
            np.take(vecs, slots[start:stop], axis=0, out=part, mode="clip")
            np.matmul(part, q, out=out[start:stop])
        return out

    @staticmethod
    def _check_unit(vectors: np.ndarray, name: str) -> None:
        if not np.isfinite(vectors).all():
            raise ValueError(f"{name} must be finite")
        # float32 accumulation is accurate to ~1e-6 here, far inside the tolerance, and avoids
        # a float64 copy of a large batch.
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        bad = np.flatnonzero(np.abs(norms - 1.0) > _NORM_TOLERANCE)
        if bad.shape[0]:
            raise ValueError(
                f"{name} must be L2-normalised: row {int(bad[0])} has norm {norms[bad[0]]:.6g}"
            )

    # ---------------------------------------------------------------- persistence

    def save(self, directory: Path | str | None = None) -> bool:
        """Make the index durable in ``directory`` (default: its own), format in ``persist``.

        In its own directory: fsync the appended rows, write the tombstone map and the graph
        under a new generation, then replace ``meta.json`` atomically and delete the previous
        generation's files; a crash at any point leaves the previous or the new index. To
        another directory (or from RAM): write a compacted copy there, the same way.

        Returns:
            False when nothing was written (the directory is owned by another process).

        Raises:
            ValueError: an index in RAM saved without a directory.
            OSError: the files cannot be written.
        """
        target = self._dir if directory is None else Path(directory)
        if target is None:
            raise ValueError("an index in RAM needs a directory to save to")
        if self._dir is not None and target.resolve() == self._dir.resolve():
            if self.read_only:
                return False
            with self._write_gate, self._lock.read():
                self._save_own()
            return True
        with self._lock.read():
            copy = self._export(target)
        copy.close()
        return True

    def _save_own(self) -> None:
        assert self._dir is not None
        self._gen += 1
        gen = self._gen
        for rows in (self._vecs, self._keys, self._compact):
            if rows is not None:
                rows.trim()
        files = dict(self._files)
        n = self._vecs.rows
        files["live"] = f"live.{gen}.u8"
        _write_file(self._dir / files["live"], self._live[:n].astype(np.uint8).tobytes())
        if self._proj is not None:
            files["projection"] = f"projection.{gen}.f32"
            _write_file(self._dir / files["projection"], self._proj.astype("<f4").tobytes())
        else:
            files["projection"] = None
        if self._graph is not None:
            files["graph"] = f"graph.{gen}.hnsw"
            self._graph.save_index(str(self._dir / files["graph"]))
            _fsync_file(self._dir / files["graph"])
        else:
            files["graph"] = None
        if self._compact is None:
            files["compact"] = None
        write_meta(
            self._dir,
            {
                "dim": self.dim,
                "hnsw_min_size": self.hnsw_min_size,
                "M": self.M,
                "ef_construction": self.ef_construction,
                "ef_search": self.ef_search,
                "compact_dim": self.compact_dim,
                "watermark": int(self.watermark),
                "slots": n,
                "live": self._n_live,
                "gen": gen,
                "files": files,
            },
        )
        self._files = files
        remove_unreferenced(self._dir, {f for f in files.values() if f} | {_LOCK_NAME})

    def _export(self, target: Path) -> VectorIndex:
        """A compacted copy of this index in ``target`` (called under the read lock)."""
        copy = VectorIndex(
            self.dim,
            directory=target,
            hnsw_min_size=self.hnsw_min_size,
            M=self.M,
            ef_construction=self.ef_construction,
            ef_search=self.ef_search,
            compact_dim=self.compact_dim,
        )
        live = self._live_slot_array()
        n = live.shape[0]
        copy._vecs = self._vecs.copy_to(target / str(copy._files["vectors"]), live)
        copy._keys = self._keys.copy_to(target / str(copy._files["keys"]), live)
        if self._compact is not None:
            copy._files["compact"] = f"compact.{copy._gen}.f32"
            copy._compact = self._compact.copy_to(target / copy._files["compact"], live)
        copy._proj = self._proj
        copy._live = np.ones(n, dtype=bool)
        copy._n_live = n
        copy._map.set(np.asarray(copy._keys.view()[:, 0], dtype=np.int64), np.arange(n, dtype=np.int64), n)
        copy._graph = self._graph  # saved by copy._save_own; labels are keys, slots do not matter
        copy.watermark = self.watermark
        copy._save_own()
        copy._graph = None
        return copy

    @classmethod
    def load(cls, directory: Path | str) -> VectorIndex:
        """Open an index saved by :meth:`save`: the row files are memory-mapped (not read), the
        keys and tombstones read, the graph loaded by hnswlib (``graph_loaded`` is then True).

        The index owns the directory (an exclusive ``flock`` on ``directory/lock``) until
        :meth:`close`; if another process (or object) owns it, it opens ``read_only``: the
        files are mapped copy-on-write and changes stay in this process's memory.

        Raises:
            FileNotFoundError: no index in ``directory``.
            ValueError: not an index, an unknown format, or files inconsistent with the header.
            OSError: a file cannot be read.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"no vector index at {directory}")
        meta = read_meta(directory)
        try:
            return cls._load(directory, meta)
        except (KeyError, TypeError, RuntimeError) as e:
            # hnswlib reports a bad graph as RuntimeError.
            raise ValueError(f"{directory}: corrupt vector index ({e!r})") from None

    @classmethod
    def _load(cls, directory: Path, meta: dict) -> VectorIndex:
        index = cls.__new__(cls)
        index.dim = int(meta["dim"])
        index.hnsw_min_size = int(meta["hnsw_min_size"])
        index.M = int(meta["M"])
        index.ef_construction = int(meta["ef_construction"])
        index.ef_search = int(meta["ef_search"])
        index.compact_dim = int(meta["compact_dim"])
        index.watermark = int(meta["watermark"])
        index.graph_loaded = False
        index._lock = _RWLock()
        index._write_gate = threading.Lock()
        index._dir = directory
        index._lock_fd = None
        index._gen = int(meta["gen"])
        index._files = dict(meta["files"])
        index.read_only = not index._take_ownership()
        private = index.read_only
        files = index._files
        n = int(meta["slots"])
        index._vecs = RowFile(directory / files["vectors"], index.dim, "<f4", n, private=private)
        index._keys = RowFile(directory / files["keys"], 1, "<i8", n, private=private)
        live = np.fromfile(directory / files["live"], dtype=np.uint8)
        if live.shape[0] != n:
            raise ValueError(f"{directory}: tombstone map holds {live.shape[0]} slots, expected {n}")
        index._live = np.zeros(max(n, index._vecs.capacity), dtype=bool)
        index._live[:n] = live.astype(bool)
        index._live_slots = None
        index._n_live = int(index._live.sum())
        if index._n_live != int(meta["live"]):
            raise ValueError(f"{directory}: {index._n_live} live slots, header says {meta['live']}")
        index._proj = None
        index._compact = None
        if files.get("projection"):
            proj = np.fromfile(directory / files["projection"], dtype="<f4")
            r = proj.shape[0] // index.dim
            if proj.shape[0] != index.dim * r or r == 0:
                raise ValueError(f"{directory}: projection of {proj.shape[0]} floats for dim {index.dim}")
            index._proj = proj.reshape(index.dim, r).astype(np.float32)
            index._compact = RowFile(directory / files["compact"], r, "<f4", n, private=private)
        index._map = _KeyMap()
        live_slots = index._live_slot_array()
        index._map.set(np.asarray(index._keys.view()[live_slots, 0], dtype=np.int64), live_slots, index._n_live)
        index._graph = None
        index._graph_dead = set()
        if files.get("graph"):
            gdim = index.dim if index._proj is None else index._proj.shape[1]
            graph = hnswlib.Index(space="ip", dim=gdim)
            graph.load_index(str(directory / files["graph"]), max_elements=0, allow_replace_deleted=True)
            if graph.dim != gdim:
                raise ValueError(f"{directory}: graph dimension {graph.dim} != {gdim}")
            graph.set_ef(index.ef_search)
            index._graph = graph
            index.graph_loaded = True
            if graph.element_count > index._n_live:
                # Points of removed keys stay in the graph, marked deleted.
                live_keys = set(index._keys.view()[live_slots, 0].tolist())
                index._graph_dead = set(graph.get_ids_list()) - live_keys
        return index


# --------------------------------------------------------------------------------------------


def _pool(k: int) -> int:
    """Candidates to re-rank exactly for k results (see RERANK_PER_K)."""
    return max(RERANK_MIN, RERANK_PER_K * min(k, 10) + 2 * max(0, k - 10))


def _label(key: int) -> int:
    # hnswlib labels are unsigned 64-bit; negative keys travel as their two's complement.
    return key & 0xFFFF_FFFF_FFFF_FFFF


def _empty(path: str) -> tuple[np.ndarray, np.ndarray, str]:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), path


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
