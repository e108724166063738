"""In-memory vector index of one embedding field of one library.

A :class:`VectorIndex` holds the L2-normalised float32 embeddings of one field, keyed by the
store's int64 row ids, and answers top-k cosine-similarity queries, optionally restricted to an
``allowed`` set of keys (the rows that pass a metadata filter).

Two search methods, chosen per query by a small planner (:meth:`VectorIndex.search_with_path`):

* exact: inner products with all live rows, or with the allowed rows gathered block by block,
  then ``np.argpartition``; recall 1.0, cost proportional to rows x dim.
* HNSW: a hierarchical navigable small-world graph (Malkov & Yashunin, "Efficient and robust
  approximate nearest neighbor search using Hierarchical Navigable Small World graphs",
  IEEE TPAMI 42(4), 2018), through hnswlib 0.8, space ``'ip'``. Built lazily once the index
  holds ``hnsw_min_size`` vectors, then kept in step with every add and remove.

Why a planner (``/work/shared/research/vector-engines.md``, measured on this 2-core machine):
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
import json
import math
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import hnswlib
import numpy as np

__all__ = ["VectorIndex", "SearchPath"]


class SearchPath:
    """Names of the ways :meth:`VectorIndex.search_with_path` can serve a query."""

    EMPTY: Final = "empty"  # nothing to search: empty index, k == 0 or no allowed key is live
    EXACT: Final = "exact"  # brute force over all live rows
    EXACT_FILTERED: Final = "exact-filtered"  # brute force over the allowed rows
    HNSW: Final = "hnsw"  # graph search, no filter
    HNSW_FILTERED: Final = "hnsw-filtered"  # over-fetching graph search, filtered afterwards
    HNSW_FALLBACK: Final = "hnsw-filtered>exact"  # too few survivors: redone exactly


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

_MAGIC: Final = b"LKVINDEX"
_FORMAT_VERSION: Final = 1
_ALIGN: Final = 64


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
    """Embeddings of one field of one library, in memory, searchable by cosine similarity.

    Vectors live in one contiguous float32 matrix ``(capacity, dim)`` whose first ``len(self)``
    rows ("slots") are the live vectors; removal moves the last live row into the hole, so a
    full scan never touches dead rows. Keys are int64 (the store's row ids).

    Once ``hnsw_min_size`` vectors are present an hnswlib graph (space ``'ip'``, labels = keys)
    is built and then updated on every add and remove: a replaced key is updated in place
    (hnswlib re-links the point), a removed key is marked deleted, and new keys reuse the slots of
    deleted points (``allow_replace_deleted``), so the graph never holds more points than the
    peak live count. The graph keeps its own copy of the vectors: memory is about
    ``2 x n x dim x 4`` bytes plus ``n x M x 8`` bytes of links.

    Thread safety: any number of concurrent :meth:`search` calls (numpy and hnswlib release the
    GIL) against one writer at a time; :meth:`add` and :meth:`remove` are applied atomically with
    respect to searches.

    Args:
        dim: vector dimension (> 0).
        hnsw_min_size: number of live vectors at which the graph is first built; below it every
            query is a scan, which is both exact and fast at that size.
        M: HNSW out-degree (hnswlib ``M``).
        ef_construction: HNSW build beam width.
        ef_search: HNSW query beam width; a query asking the graph for more candidates than
            this (large k, filtered over-fetch) widens its beam to that count.

    Raises:
        ValueError: a parameter out of range.

    Attributes:
        watermark: an int the owner sets to record how far the index reflects its durable rows
            (e.g. the last applied change id); saved and restored with the index, not used here.
    """

    def __init__(
        self,
        dim: int,
        *,
        hnsw_min_size: int = 20_000,
        M: int = 16,
        ef_construction: int = 128,
        ef_search: int = 128,
    ) -> None:
        if int(dim) <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        if int(hnsw_min_size) < 1:
            raise ValueError(f"hnsw_min_size must be >= 1, got {hnsw_min_size}")
        if int(M) < 2 or int(ef_construction) < 1 or int(ef_search) < 1:
            raise ValueError("M must be >= 2, ef_construction and ef_search >= 1")
        self.dim = int(dim)
        self.hnsw_min_size = int(hnsw_min_size)
        self.M = int(M)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.watermark: int = 0

        self._lock = _RWLock()
        self._n = 0
        self._vecs = np.empty((0, self.dim), dtype=np.float32)
        self._keys = np.empty(0, dtype=np.int64)
        self._map = _KeyMap()
        self._graph: hnswlib.Index | None = None
        # Keys removed from the index whose points may still sit (marked deleted) in the graph;
        # re-adding one must unmark it first, because hnswlib refuses to update a deleted point
        # when replacement of deleted points is enabled.
        self._graph_dead: set[int] = set()

    # ---------------------------------------------------------------- introspection

    def __len__(self) -> int:
        return self._n

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
            return self._keys[: self._n].copy()

    @property
    def has_graph(self) -> bool:
        """Whether the HNSW graph has been built."""
        return self._graph is not None

    def __repr__(self) -> str:
        return (
            f"VectorIndex(dim={self.dim}, n={self._n}, graph={self._graph is not None}, "
            f"watermark={self.watermark})"
        )

    # ---------------------------------------------------------------- mutation

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace vectors.

        Args:
            keys: ``(n,)`` integer keys (int64 range). A key already present is replaced; a key
                repeated within ``keys`` keeps its last vector.
            vectors: ``(n, dim)`` float32 (other float dtypes are converted), each row finite and
                L2-normalised (norm within 1e-3 of 1).

        The call that brings the index to ``hnsw_min_size`` vectors builds the graph, holding
        the write lock meanwhile (searches wait): O(n log n), measured 15-23 s for 100k 256-d
        and 50-85 s for 100k 1280-d vectors on 2 cores. Later adds insert into the graph at
        about the same cost per vector.

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

        with self._lock.write():
            slots = self._map.lookup(keys)
            old = slots >= 0
            if old.any():
                self._vecs[slots[old]] = vectors[old]
            new = ~old
            n_new = int(new.sum())
            if n_new:
                self._reserve(self._n + n_new)
                new_slots = np.arange(self._n, self._n + n_new, dtype=np.int64)
                self._vecs[new_slots] = vectors[new]
                self._keys[new_slots] = keys[new]
                self._n += n_new
                self._map.set(keys[new], new_slots, self._n)

            if self._graph is not None:
                self._graph_add(keys, vectors, old)
            elif self._n >= self.hnsw_min_size:
                self._build_graph()

    def remove(self, keys: np.ndarray) -> None:
        """Remove keys; unknown keys are ignored.

        Args:
            keys: ``(m,)`` integer keys.

        Raises:
            ValueError, TypeError: ``keys`` not a 1-D integer array.
        """
        keys = _as_keys(keys, "keys")
        if keys.shape[0] == 0:
            return
        with self._lock.write():
            slots = self._map.lookup(keys)
            slots = np.unique(slots[slots >= 0])
            if slots.shape[0] == 0:
                return
            gone_keys = self._keys[slots].copy()
            n_after = self._n - slots.shape[0]
            # Fill the holes below n_after with the surviving rows above it, keeping the live
            # rows contiguous in [0, n_after).
            holes = slots[slots < n_after]
            tail = np.arange(n_after, self._n, dtype=np.int64)
            movers = tail[~np.isin(tail, slots, assume_unique=True)]
            self._map.delete(gone_keys)
            if holes.shape[0]:
                self._vecs[holes] = self._vecs[movers]
                self._keys[holes] = self._keys[movers]
                self._map.set(self._keys[holes], holes, n_after)
            self._n = n_after
            if self._graph is not None:
                for k in gone_keys.tolist():
                    self._graph.mark_deleted(_label(k))
                    self._graph_dead.add(k)

    def _reserve(self, rows: int) -> None:
        cap = self._vecs.shape[0]
        if rows <= cap:
            return
        new_cap = max(rows, int(cap * _GROWTH), _MIN_CAPACITY)
        vecs = np.empty((new_cap, self.dim), dtype=np.float32)
        vecs[: self._n] = self._vecs[: self._n]
        keys = np.empty(new_cap, dtype=np.int64)
        keys[: self._n] = self._keys[: self._n]
        self._vecs, self._keys = vecs, keys

    def _build_graph(self) -> None:
        """Build the HNSW graph over all live rows (called with the write lock held)."""
        n = self._n
        graph = hnswlib.Index(space="ip", dim=self.dim)
        graph.init_index(
            max_elements=max(n, self._vecs.shape[0], _MIN_CAPACITY),
            M=self.M,
            ef_construction=self.ef_construction,
            random_seed=100,
            allow_replace_deleted=True,
        )
        graph.set_ef(self.ef_search)
        graph.add_items(self._vecs[:n], self._keys[:n].view(np.uint64))
        self._graph = graph
        self._graph_dead = set()

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
        if graph.element_count == self._n:
            self._graph_dead.clear()  # no deleted point left in the graph

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
            n = self._n
            if n == 0 or k == 0:
                return _empty(SearchPath.EMPTY)
            graph = self._graph if n >= self.hnsw_min_size else None

            if allowed_keys is None:
                if graph is None or k > HNSW_MAX_FETCH_FRACTION * n:
                    return (*self._exact(q, k, None), SearchPath.EXACT)
                hit = self._graph_query(graph, q, k)
                if hit is None:
                    return (*self._exact(q, k, None), SearchPath.EXACT)
                return (*self._finish(hit, q, k), SearchPath.HNSW)

            slots = self._map.lookup(allowed_keys)
            slots = slots[slots >= 0]
            m = slots.shape[0]
            if m == 0:
                return _empty(SearchPath.EMPTY)
            s = m / n
            fetch = max(math.ceil(OVERFETCH * k / s), self.ef_search)
            if (
                graph is None
                or s < HNSW_MIN_SELECTIVITY
                or m <= EXACT_ROWS_PER_FETCH * fetch
                or fetch > HNSW_MAX_FETCH_FRACTION * n
            ):
                return (*self._exact(q, k, slots), SearchPath.EXACT_FILTERED)
            # Asking hnswlib for ef_search results costs the same as asking for k (the beam is
            # ef_search wide anyway), and every extra candidate may pass the filter.
            hit = self._graph_query(graph, q, fetch)
            if hit is not None:
                mask = np.zeros(n, dtype=bool)
                mask[slots] = True
                hit = hit[mask[hit]]
                if hit.shape[0] >= k:
                    return (*self._finish(hit, q, k), SearchPath.HNSW_FILTERED)
            return (*self._exact(q, k, slots), SearchPath.HNSW_FALLBACK)

    def _graph_query(self, graph: hnswlib.Index, q: np.ndarray, fetch: int) -> np.ndarray | None:
        """Slots of up to ``fetch`` graph neighbours, or None if hnswlib cannot fill the request."""
        try:
            labels, _ = graph.knn_query(q, k=min(fetch, self._n), num_threads=1)
        except RuntimeError:
            # hnswlib raises when deleted points leave it fewer than k reachable results.
            return None
        slots = self._map.lookup(labels[0].view(np.int64))
        return slots[slots >= 0]

    def _finish(self, slots: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims = _rescore(self._vecs, slots, q)
        keys = self._keys[slots]
        top = _order(keys, sims, k)
        return keys[top], sims[top]

    def _exact(
        self, q: np.ndarray, k: int, slots: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over all live rows (``slots`` None) or over the rows ``slots``."""
        n = self._n
        if slots is None:
            scores = self._scan(q)
        elif slots.shape[0] > GATHER_MAX_FRACTION * n:
            scores = self._scan(q)[slots]
        else:
            scores = self._scan(q, slots)
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
        cand_slots = cand if slots is None else slots[cand]
        if slots is not None:
            uniq = np.unique(cand_slots)
            if uniq.shape[0] < min(k, total) and uniq.shape[0] < cand_slots.shape[0]:
                # Duplicate allowed keys crowded the top-k: redo over distinct rows.
                return self._exact(q, k, np.unique(slots))
            cand_slots = uniq
        return self._finish(cand_slots, q, k)

    def _scan(self, q: np.ndarray, slots: np.ndarray | None = None) -> np.ndarray:
        """Inner products (float32) of ``q`` with all live rows, or with the rows ``slots``.

        Works in blocks of about _BLOCK_FLOATS floats: each block's product is small enough for
        OpenBLAS to run it on the calling thread, and a gathered block stays in cache. On this
        2-core machine with other work running, one large multithreaded sgemv waited ~8 ms for
        its second thread (100k x 256: 16 ms vs 8.5 ms blocked; 1k gathered rows x 1280:
        8 ms vs 0.7 ms), and gathering all allowed rows first costs a full extra copy.
        """
        vecs = self._vecs
        rows = self._n if slots is None else slots.shape[0]
        block = max(1, _BLOCK_FLOATS // self.dim)
        out = np.empty(rows, dtype=np.float32)
        if slots is None:
            for start in range(0, rows, block):
                stop = min(rows, start + block)
                np.matmul(vecs[start:stop], q, out=out[start:stop])
            return out
        buf = np.empty((min(block, rows), self.dim), dtype=np.float32)
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

    def save(self, path: Path | str) -> None:
        """Write the index (keys, vectors, HNSW graph, parameters, ``watermark``) to one file.

        The file is written beside ``path`` under a temporary name, fsynced, then moved over
        ``path`` with ``os.replace``, so a reader sees the old file or the new one, never half a
        file. With a graph, the vectors are stored once, inside hnswlib's own file.

        Raises:
            OSError: the file cannot be written.
        """
        path = Path(path)
        with self._lock.read():
            n = self._n
            header = {
                "format": _FORMAT_VERSION,
                "dim": self.dim,
                "hnsw_min_size": self.hnsw_min_size,
                "M": self.M,
                "ef_construction": self.ef_construction,
                "ef_search": self.ef_search,
                "watermark": int(self.watermark),
                "n": n,
                "graph": self._graph is not None,
                "graph_bytes": 0,
            }
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            graph_tmp = None
            try:
                if self._graph is not None:
                    gfd, graph_tmp = tempfile.mkstemp(
                        dir=path.parent, prefix=f".{path.name}.", suffix=".hnsw.tmp"
                    )
                    os.close(gfd)
                    self._graph.save_index(graph_tmp)
                    header["graph_bytes"] = os.path.getsize(graph_tmp)
                with os.fdopen(fd, "wb") as f:
                    fd = -1
                    _write_header(f, header)
                    _write_array(f, self._keys[:n].astype("<i8", copy=False))
                    if graph_tmp is None:
                        _write_array(f, self._vecs[:n].astype("<f4", copy=False))
                    else:
                        with open(graph_tmp, "rb") as g:
                            shutil.copyfileobj(g, f, 1 << 22)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                tmp = None
            finally:
                if fd != -1:
                    os.close(fd)
                if tmp is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
                if graph_tmp is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(graph_tmp)
        with contextlib.suppress(OSError):
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    @classmethod
    def load(cls, path: Path | str) -> VectorIndex:
        """Read an index written by :meth:`save`.

        The graph part goes through a temporary file beside ``path`` (hnswlib loads from a
        path only).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: not an index file, an unknown format version, a truncated or otherwise
                inconsistent file.
            OSError: the file or the temporary file cannot be read or written.
        """
        path = Path(path)
        with open(path, "rb") as f:
            try:
                return cls._load(f, path)
            except (KeyError, TypeError, RuntimeError) as e:
                # hnswlib reports a bad graph (e.g. a key missing from it) as RuntimeError.
                raise ValueError(f"{path}: corrupt index file ({e!r})") from None

    @classmethod
    def _load(cls, f, path: Path) -> VectorIndex:
        header, data_start = _read_header(f)
        n, dim = int(header["n"]), int(header["dim"])
        graph_bytes = int(header["graph_bytes"])
        expected = data_start + 8 * n + (graph_bytes if header["graph"] else 4 * n * dim)
        size = os.fstat(f.fileno()).st_size
        if size != expected:
            raise ValueError(f"{path}: corrupt index file ({size} bytes, expected {expected})")
        index = cls(
            dim,
            hnsw_min_size=int(header["hnsw_min_size"]),
            M=int(header["M"]),
            ef_construction=int(header["ef_construction"]),
            ef_search=int(header["ef_search"]),
        )
        index.watermark = int(header["watermark"])
        f.seek(data_start)
        keys = _read_array(f, np.dtype("<i8"), n).astype(np.int64, copy=False)
        graph = None
        if not header["graph"]:
            vectors = _read_array(f, np.dtype("<f4"), n * dim).reshape(n, dim)
        else:
            gfd, graph_tmp = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.name}.", suffix=".hnsw.tmp"
            )
            try:
                with os.fdopen(gfd, "wb") as g:
                    _copy_exact(f, g, graph_bytes)
                graph = hnswlib.Index(space="ip", dim=dim)
                graph.load_index(graph_tmp, max_elements=0, allow_replace_deleted=True)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(graph_tmp)
            if graph.dim != dim:
                raise ValueError(f"{path}: graph dimension {graph.dim} != {dim}")
            graph.set_ef(index.ef_search)
            if n:
                vectors = np.ascontiguousarray(
                    graph.get_items(keys.view(np.uint64), return_type="numpy"),
                    dtype=np.float32,
                ).reshape(n, dim)
            else:
                vectors = np.empty((0, dim), dtype=np.float32)
        index._vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        index._keys = keys.copy()
        index._n = n
        index._map.set(index._keys, np.arange(n, dtype=np.int64), n)
        if graph is not None:
            index._graph = graph
            if graph.element_count > n:
                index._graph_dead = set(graph.get_ids_list()) - set(keys.tolist())
        return index


# --------------------------------------------------------------------------------------------
# file format: MAGIC | u32 version | u32 header length | JSON header | pad to 64 | keys int64 |
# vectors float32 (no graph) or hnswlib's save_index bytes (graph)


def _label(key: int) -> int:
    # hnswlib labels are unsigned 64-bit; negative keys travel as their two's complement.
    return key & 0xFFFF_FFFF_FFFF_FFFF


def _empty(path: str) -> tuple[np.ndarray, np.ndarray, str]:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), path


def _write_header(f, header: dict) -> None:
    body = json.dumps(header, sort_keys=True).encode()
    head = _MAGIC + struct.pack("<II", _FORMAT_VERSION, len(body)) + body
    f.write(head + b"\0" * (-len(head) % _ALIGN))


def _read_header(f) -> tuple[dict, int]:
    fixed = f.read(len(_MAGIC) + 8)
    if len(fixed) < len(_MAGIC) + 8 or fixed[: len(_MAGIC)] != _MAGIC:
        raise ValueError("not a Lookalike vector index file")
    version, length = struct.unpack("<II", fixed[len(_MAGIC) :])
    if version != _FORMAT_VERSION:
        raise ValueError(f"unsupported vector index format version {version}")
    body = f.read(length)
    if len(body) != length:
        raise ValueError("corrupt index file (truncated header)")
    try:
        header = json.loads(body)
    except ValueError as e:
        raise ValueError(f"corrupt index file header: {e}") from None
    head_len = len(fixed) + length
    return header, head_len + (-head_len % _ALIGN)


def _write_array(f, arr: np.ndarray) -> None:
    if arr.size:
        f.write(memoryview(np.ascontiguousarray(arr).reshape(-1)).cast("B"))


def _read_array(f, dtype: np.dtype, count: int) -> np.ndarray:
    arr = np.empty(count, dtype=dtype)
    if count == 0:
        return arr
    view = memoryview(arr).cast("B")
    done = 0
    while done < view.nbytes:
        got = f.readinto(view[done:])
        if not got:
            raise ValueError("corrupt index file (truncated data)")
        done += got
    return arr


def _copy_exact(src, dst, nbytes: int) -> None:
    remaining = nbytes
    while remaining:
        chunk = src.read(min(remaining, 1 << 22))
        if not chunk:
            raise ValueError("corrupt index file (truncated graph)")
        dst.write(chunk)
        remaining -= len(chunk)
