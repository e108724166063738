"""Vector index of one embedding field of one library: memory-mapped rows, compact candidates.

A :class:`VectorIndex` holds the L2-normalised float32 embeddings of one field, keyed by the
store's int64 row ids, and answers top-k cosine-similarity queries, optionally restricted to an
``allowed`` set of keys (the rows that pass a metadata filter).

Search methods, chosen per query by a small planner (:meth:`VectorIndex.search_with_path`):

* exact: inner products with all live rows, or with the allowed rows gathered block by block,
  then ``np.argpartition``; recall 1.0, cost proportional to rows x dim. Used below
  ``ann_min_size`` rows and for filters passing at most ``EXACT_MAX_ROWS`` rows.
* IVF: an inverted file of 8-bit scalar-quantised codes over all dimensions
  (:mod:`lookalike.index.ivf`, FAISS), built once the index holds ``ann_min_size`` vectors
  and kept in step with every add. A filter is applied inside the scan (a bitmap of allowed
  slots), with proportionally more cells probed, so a filtered query sees about as many
  allowed candidates as an unfiltered one. Candidates are re-ranked with the full vectors.

The on-disk format (a directory of memory-mapped row files, the IVF and a header) is in
:mod:`lookalike.index.persist`.

Why this design (``docs/research.md``, "Vector engines", and README, "Storage at scale",
measured on this 2-core machine): an exact search over a pre-gathered filtered subset is cheap
and exact (16k x 1280-d rows in ~5-10 ms), and graph search loses recall under selective
filters, so selective filters are scanned. For the rest, the candidate stage must keep the order
*inside* dense clusters: at 1M clustered 1280-d vectors an HNSW graph over a 256-d projection
topped out at recall@10 0.945 even with 2,000 candidates re-ranked, while IVF over SQ8 codes of
all 1280 dimensions reaches 0.98+ at a few percent of the cells, and filters cost it no recall.

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

import numpy as np

from .ivf import CoarseIndex, nlist_for
from .persist import META_NAME, RowFile, read_meta, remove_unreferenced, write_meta

__all__ = ["SearchPath", "VectorIndex"]


class SearchPath:
    """Names of the ways :meth:`VectorIndex.search_with_path` can serve a query."""

    EMPTY: Final = "empty"  # nothing to search: empty index, k == 0 or no allowed key is live
    EXACT: Final = "exact"  # brute force over all live rows
    EXACT_FILTERED: Final = "exact-filtered"  # brute force over the allowed rows
    IVF: Final = "ivf"  # inverted-file candidates, re-ranked exactly
    IVF_FILTERED: Final = "ivf-filtered"  # the same, the filter applied inside the scan


# Share of the IVF cells an unfiltered query probes, and the floor. Measured on 1M clustered
# 1280-d vectors (benchmarks/scale.py's mixture, 4,096 cells, 200 queries, recall@10 after the
# exact re-rank; README, Storage at scale): 1.6 / 3.1 / 6.3 / 12.5 % of the cells gave
# recall@10 0.897 / 0.943 / 0.976 / 0.988.
PROBE_SHARE: Final = 0.125
MIN_PROBES: Final = 16
# Filters passing more than EXACT_MAX_ROWS rows, a share s of them. Measured at 1M (README,
# Storage at scale; 60 queries, recall@10 of the allowed rows, ms under load ~5, where the
# unfiltered query gave 0.983 in 16 ms):
# - s >= POSTFILTER_MIN_SHARE: the unfiltered candidates, _pool(k) / s of them from
#   POSTFILTER_PROBES times the cells, keeping those allowed. At 50 %: 0.977 / 0.980 / 0.993 /
#   0.997 with 1 / 1.5 / 2 / 3 times the cells (16 / 22 / 27 / 35 ms).
# - below: the filter applied inside the scan (a bitmap of allowed slots; FAISS checks it for
#   every code of the probed cells), probing 1 / sqrt(s) times the cells. At 10 %: 0.988 in
#   16 ms (1 / s: 1.000 in 37 ms; post-filtering with 2 x the cells: 0.982 in 29 ms).
POSTFILTER_MIN_SHARE: Final = 0.3
POSTFILTER_PROBES: Final = 2
# The IVF is retrained (new cells for the new size) once the live rows reach RETRAIN_GROWTH
# times the count it was trained on: cells stay near 4·sqrt(n) (FAISS's guideline).
RETRAIN_GROWTH: Final = 4
# ... or once the rows added since training (at least DRIFT_MIN_SHARE of the trained size) fit
# their cells worse than DRIFT_RATIO times the training rows did (mean nearest-centroid
# cosine): new content unlike the old lands scattered over cells fitted to the old, and a
# query near it no longer finds it in its nearest cells (measured on a test with new random
# clusters per batch: recall@10 fell from 1.0 to 0.53 without this rule).
DRIFT_MIN_SHARE: Final = 0.1
DRIFT_RATIO: Final = 0.9
# Probed cells hold at least this many times the candidates wanted (deep requests, such as
# creator search's candidate rounds, need more cells than the probe share gives).
_PROBE_MARGIN: Final = 2
# When the allowed rows are more than this share of all rows, scanning the whole matrix
# (sequential reads) and picking their scores is cheaper than gathering their rows (random
# reads plus a copy: measured 0.17 vs 0.09 us per 256-d row).
GATHER_MAX_FRACTION: Final = 0.5

# Largest key span the dense key->slot table may cover, as a multiple of the live row count
# (with a floor); beyond it keys are mapped by a dict and a lazily sorted array.
_DENSE_SPAN_FACTOR: Final = 4
_DENSE_SPAN_FLOOR: Final = 1 << 20
# Rows x dim per block of an exact scan: below OpenBLAS's sgemv threading cut-off (measured:
# 100k elements ran on one thread, 256k on two) and within L2 (see VectorIndex._scan).
_BLOCK_FLOATS: Final = 98_304
_NORM_TOLERANCE: Final = 1e-3
_GROWTH: Final = 1.5
_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")

# Candidates re-ranked exactly: RERANK_PER_K per wanted result up to 10 results, then 2 more per
# result (a deep request, e.g. creator search's 512 candidates, needs a thinner margin), at least
# RERANK_MIN. SQ8 codes rank almost exactly, so the pool only covers their small errors.
RERANK_PER_K: Final = 20
RERANK_MIN: Final = 100
# File pages an exact scan touched stay mapped, and count as resident memory, until the
# process maps more than this (bytes); then the scanned index unmaps its pages (they stay in
# the page cache: RowFile.release). Unmapping after every scan made the next scan of the
# same rows fault them back in (1 % of 1M: 8 -> 49 ms).
MAPPED_BUDGET: Final = 1 << 30
# A filter passing at most this many rows is always scanned exactly in full precision: a gather
# of 4k x 1280-d rows costs ~2-3 ms and is exact (recall 1.0). Larger ones go to the IVF's
# bitmap scan, which probes every cell when the filter is this narrow (1 % of 1M: 1.000), and
# whose codes sit in RAM: a gather of 10k rows through the map left ~1.5 GB of file pages
# mapped (fault-around), resident memory the 1M target has no room for.
EXACT_MAX_ROWS: Final = 4096
# Rows sampled to train the IVF (cells and quantiser ranges, and its fit): see
# ivf.CoarseIndex.train.
_TRAIN_SAMPLE: Final = 120_000
# Floats per block when feeding rows to the IVF (bounded memory).
_BUILD_BLOCK: Final = 1 << 24
_LOCK_NAME: Final = "lock"
_SUFFIX: Final = {"vectors": "f32", "keys": "i64"}


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

    Candidate stage and exact re-rank: once ``ann_min_size`` vectors are live, an inverted file
    of 8-bit codes of every dimension (:class:`~lookalike.index.ivf.CoarseIndex`, ids = slots,
    1 byte a dimension: a quarter of the float32 rows, held in RAM) finds candidates, which are
    re-ranked with the full-precision rows, so every returned similarity is the exact one
    (:func:`_rescore`); recall, not score, is what the candidate stage may cost (measured in
    README, Storage at scale). The IVF is retrained for the new size once the index has grown
    ``RETRAIN_GROWTH`` times past what it was trained on.

    Thread safety: any number of concurrent :meth:`search` calls against one writer at a time;
    :meth:`add`, :meth:`remove` and :meth:`compact` are atomic with respect to searches, and
    :meth:`compact` and IVF (re)builds let searches run while they copy or train.

    Args:
        dim: vector dimension (> 0).
        directory: where the index lives on disk (created; any index there is replaced), or
            None for an index in RAM only (it can still be written out with :meth:`save`).
        ann_min_size: number of live vectors at which the IVF is first built.
        probe_share: share of the IVF cells an unfiltered query scans (0 < share <= 1).

    Raises:
        ValueError: a parameter out of range.

    Attributes:
        watermark: an int the owner sets to record how far the index reflects its durable rows
            (e.g. the last applied change id); saved and restored with the index, not used here.
        ann_loaded: True when the IVF was read from disk by :meth:`load` (not built).
        read_only: True when another process owns the directory (see :meth:`load`): searches
            and changes work, in this process's memory only, and :meth:`save` is a no-op.
    """

    def __init__(
        self,
        dim: int,
        *,
        directory: Path | str | None = None,
        ann_min_size: int = 20_000,
        probe_share: float = PROBE_SHARE,
    ) -> None:
        if int(dim) <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        if int(ann_min_size) < 1:
            raise ValueError(f"ann_min_size must be >= 1, got {ann_min_size}")
        if not 0 < float(probe_share) <= 1:
            raise ValueError(f"probe_share must be in (0, 1], got {probe_share}")
        self.dim = int(dim)
        self.ann_min_size = int(ann_min_size)
        self.probe_share = float(probe_share)
        self.watermark: int = 0
        self.ann_loaded = False
        self.read_only = False

        self._lock = _RWLock()
        # Writers (add, remove, compact) queue here first, so compact and IVF builds can work
        # under the read lock (searches go on) while no writer changes the rows they read.
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
        self._map = _KeyMap()
        self._live_slots: np.ndarray | None = None
        self._live_bits: np.ndarray | None = None
        self._ann: CoarseIndex | None = None
        # Rows assigned to the IVF's cells since it was trained (or loaded), and the sum of
        # their nearest-centroid cosines: the drift test of _maybe_build.
        self._added = 0
        self._added_fit = 0.0

    @classmethod
    def over(cls, vectors: np.ndarray, **options: Any) -> VectorIndex:
        """An index in RAM whose keys are the row numbers of ``vectors`` ((n, dim) float32,
        L2-normalised rows, not checked), searching that array in place (no copy of the full
        vectors; the IVF is built when n >= ``ann_min_size``).

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
        if n >= index.ann_min_size:
            index._ann = index._build_ann()
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
    def has_ann(self) -> bool:
        """Whether the IVF candidate stage exists (built or loaded)."""
        return self._ann is not None

    @property
    def slots(self) -> int:
        """Rows written, live or tombstoned (what :meth:`compact` reduces to ``len(self)``)."""
        return self._vecs.rows

    @property
    def directory(self) -> Path | None:
        return self._dir

    def __repr__(self) -> str:
        ann = "none" if self._ann is None else f"ivf{self._ann.nlist}"
        return f"VectorIndex(dim={self.dim}, n={self._n_live}, slots={self.slots}, ann={ann}, watermark={self.watermark})"

    def _live_slot_array(self) -> np.ndarray:
        cached = self._live_slots
        if cached is None:
            cached = np.flatnonzero(self._live[: self._vecs.rows]).astype(np.int64)
            self._live_slots = cached
        return cached

    def _live_bitmap(self) -> np.ndarray:
        """Packed bitmap (little bit order) of the live slots, for the IVF's selector."""
        cached = self._live_bits
        if cached is None:
            cached = np.packbits(self._live[: self._vecs.rows], bitorder="little")
            self._live_bits = cached
        return cached

    def _changed(self) -> None:
        """Drop the caches derived from the live map (write lock held)."""
        self._live_slots = None
        self._live_bits = None

    # ---------------------------------------------------------------- mutation

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace vectors.

        Args:
            keys: ``(n,)`` integer keys (int64 range). A key already present is replaced; a key
                repeated within ``keys`` keeps its last vector.
            vectors: ``(n, dim)`` float32 (other float dtypes are converted), each row finite and
                L2-normalised (norm within 1e-3 of 1).

        The call that brings the index to ``ann_min_size`` vectors (or ``RETRAIN_GROWTH`` times
        the size the IVF was trained on) (re)builds the IVF before it returns, while searches go
        on with the previous state: k-means on a sample plus one pass assigning every row to a
        cell, O(n * nlist * dim), measured 30 s + 59 s for 1M 1280-d vectors into 2,508 cells
        on 2 cores. Other adds assign their rows to cells the same way (~0.06 ms a row at 1M).

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
            # Cells found before the write lock, so searches wait only for the append.
            cells = None
            if self._ann is not None:
                cells, fit = self._ann.assign(vectors)
                self._added += cells.shape[0]
                self._added_fit += float(fit.sum(dtype=np.float64))
            with self._lock.write():
                self._apply_add(keys, vectors, cells)
            self._maybe_build()

    def _apply_add(self, keys: np.ndarray, vectors: np.ndarray, cells: np.ndarray | None) -> None:
        """The body of :meth:`add` (write lock held)."""
        old_slots = self._map.lookup(keys)
        old = old_slots >= 0
        self._live[old_slots[old]] = False
        slots = self._vecs.append(vectors)
        self._keys.append(keys[:, None])
        if self._live.shape[0] < self._vecs.capacity:
            grown = np.zeros(self._vecs.capacity, dtype=bool)
            grown[: self._live.shape[0]] = self._live
            self._live = grown
        self._live[slots] = True
        self._n_live += int((~old).sum())
        self._map.set(keys, slots, self._n_live)
        self._changed()
        if self._ann is not None:
            self._ann.add(slots, vectors, cells)

    def _maybe_build(self) -> None:
        """(Re)build the IVF when the index reached its first or next size (write gate held).

        Trains and fills the new IVF under the read lock, so searches go on with the previous
        one; no writer can change the rows meanwhile (they wait at the gate).
        """
        with self._lock.read():
            n, ann = self._n_live, self._ann
            if ann is None:
                due = n >= self.ann_min_size
            else:
                drifted = (
                    self._added >= DRIFT_MIN_SHARE * ann.trained_on
                    and self._added_fit < DRIFT_RATIO * ann.fit * self._added
                )
                due = n >= RETRAIN_GROWTH * max(1, ann.trained_on) or (drifted and n >= self.ann_min_size)
            if not due:
                return
            ann = self._build_ann()
        with self._lock.write():
            self._ann = ann
            self._added, self._added_fit = 0, 0.0

    def _build_ann(self) -> CoarseIndex:
        """A new IVF over the live rows (caller holds the read lock or owns the index)."""
        live = self._live_slot_array()
        n = live.shape[0]
        nlist = min(nlist_for(n), n)
        rng = np.random.default_rng(self.dim)  # deterministic: same rows, same cells
        take = min(n, max(_TRAIN_SAMPLE, nlist))  # k-means rows + rows that measure the fit
        sample = np.sort(rng.choice(live, size=take, replace=False)) if take < n else live
        ann = CoarseIndex.train(self._vecs.gather(sample), nlist, trained_on=n)
        vecs = self._vecs.view()
        block = max(1, _BUILD_BLOCK // self.dim)
        for start in range(0, n, block):
            part = live[start : start + block]
            ann.add(part, np.asarray(vecs[part]))
        return ann

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
            self._changed()

    def compact(self) -> int:
        """Rewrite the rows without tombstones; returns the number of rows reclaimed.

        Copies the live rows to new files block by block (bounded memory) while searches go on
        (writers wait), then swaps them in, renumbers the IVF's ids to the new slots (one pass
        over its codes; its cells are kept) and, for an index on disk, saves it, so the old
        files are deleted.

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
            with self._lock.write():
                n = live.shape[0]
                if self._ann is not None:
                    self._ann.renumber(_renumbering(live, self._vecs.rows))
                self._vecs, self._keys = vecs, keys
                self._live = np.zeros(max(n, vecs.capacity), dtype=bool)
                self._live[:n] = True
                self._map = _KeyMap()
                self._map.set(np.asarray(keys.view()[:, 0], dtype=np.int64), np.arange(n, dtype=np.int64), n)
                self._changed()
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
            ann = self._ann if n >= self.ann_min_size else None

            if allowed_keys is None:
                live = self._live_slot_array()
                if ann is None:
                    return (*self._exact(q, k, live), SearchPath.EXACT)
                hit = self._ann_query(ann, q, _pool(k))
                if hit.shape[0] < min(k, n):
                    return (*self._exact(q, k, live), SearchPath.EXACT)
                return (*self._finish(hit, q, k), SearchPath.IVF)

            slots = self._map.lookup(allowed_keys)
            slots = slots[slots >= 0]
            m = slots.shape[0]  # duplicates (repeated allowed keys) only make the share look larger
            if m == 0:
                return _empty(SearchPath.EMPTY)
            if ann is None or m <= EXACT_MAX_ROWS:
                return (*self._exact(q, k, slots), SearchPath.EXACT_FILTERED)
            share = m / n
            mask = np.zeros(self._vecs.rows, dtype=bool)
            mask[slots] = True
            if share >= POSTFILTER_MIN_SHARE:
                # Broad filter: unfiltered candidates from POSTFILTER_PROBES times the cells,
                # deep enough that about _pool(k) of them pass.
                hit = self._ann_query(ann, q, math.ceil(_pool(k) / share), POSTFILTER_PROBES)
                hit = hit[mask[hit]]
                if hit.shape[0] >= min(k, m):
                    return (*self._finish(hit, q, k), SearchPath.IVF_FILTERED)
            hit = self._ann_query(ann, q, _pool(k), 1 / math.sqrt(share), np.packbits(mask, bitorder="little"))
            if hit.shape[0] < min(k, m):
                return (*self._exact(q, k, slots), SearchPath.EXACT_FILTERED)
            return (*self._finish(hit, q, k), SearchPath.IVF_FILTERED)

    def _ann_query(
        self, ann: CoarseIndex, q: np.ndarray, count: int, cells: float = 1.0, members: np.ndarray | None = None
    ) -> np.ndarray:
        """Slots of ``count`` IVF candidates (among ``members``, live slots by default),
        probing ``cells`` times the cells an unfiltered query probes."""
        if members is None and ann.ntotal > self._n_live:
            # Tombstoned slots stay in the IVF until compaction: exclude them in the scan.
            members = self._live_bitmap()
        per_cell = max(1.0, ann.ntotal / ann.nlist)
        probes = max(MIN_PROBES, math.ceil(self.probe_share * ann.nlist), math.ceil(_PROBE_MARGIN * count / per_cell))
        return ann.search(q, count, math.ceil(probes * cells), members)

    def _finish(self, slots: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        slots = np.unique(slots)
        rows = self._vecs.gather(slots)
        sims = _rescore(rows, np.arange(slots.shape[0]), q)
        keys = np.asarray(self._keys.view()[slots, 0], dtype=np.int64)
        top = _order(keys, sims, k)
        return keys[top], sims[top]

    def _exact(self, q: np.ndarray, k: int, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the rows ``slots`` (full-precision vectors)."""
        vecs = self._vecs.view()
        if slots.shape[0] > GATHER_MAX_FRACTION * vecs.shape[0]:
            scores = self._scan(vecs, q)[slots]
        else:
            scores = self._scan(vecs, q, slots)
        if _mapped_bytes() > MAPPED_BUDGET:
            self._vecs.release()
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
        for rows in (self._vecs, self._keys):
            rows.trim()
        files = dict(self._files)
        n = self._vecs.rows
        files["live"] = f"live.{gen}.u8"
        _write_file(self._dir / files["live"], self._live[:n].astype(np.uint8).tobytes())
        trained_on, fit = 0, 0.0
        if self._ann is not None:
            files["ann"] = f"ann.{gen}.faiss"
            self._ann.save(self._dir / files["ann"])
            _fsync_file(self._dir / files["ann"])
            trained_on, fit = self._ann.trained_on, self._ann.fit
        else:
            files["ann"] = None
        write_meta(
            self._dir,
            {
                "dim": self.dim,
                "ann_min_size": self.ann_min_size,
                "probe_share": self.probe_share,
                "ann_trained_on": trained_on,
                "ann_fit": fit,
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
        copy = VectorIndex(self.dim, directory=target, ann_min_size=self.ann_min_size, probe_share=self.probe_share)
        live = self._live_slot_array()
        n = live.shape[0]
        copy._vecs = self._vecs.copy_to(target / str(copy._files["vectors"]), live)
        copy._keys = self._keys.copy_to(target / str(copy._files["keys"]), live)
        copy._live = np.ones(n, dtype=bool)
        copy._n_live = n
        copy._map.set(np.asarray(copy._keys.view()[:, 0], dtype=np.int64), np.arange(n, dtype=np.int64), n)
        if self._ann is not None:
            copy._ann = self._ann.clone()
            copy._ann.renumber(_renumbering(live, self._vecs.rows))
        copy.watermark = self.watermark
        copy._save_own()
        copy._ann = None
        return copy

    @classmethod
    def load(cls, directory: Path | str) -> VectorIndex:
        """Open an index saved by :meth:`save`: the row files are memory-mapped (not read), the
        keys and tombstones read, the IVF read into RAM (``ann_loaded`` is then True).

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
            # FAISS reports a bad file as RuntimeError.
            raise ValueError(f"{directory}: corrupt vector index ({e!r})") from None

    @classmethod
    def _load(cls, directory: Path, meta: dict) -> VectorIndex:
        index = cls.__new__(cls)
        index.dim = int(meta["dim"])
        index.ann_min_size = int(meta["ann_min_size"])
        index.probe_share = float(meta["probe_share"])
        index.watermark = int(meta["watermark"])
        index.ann_loaded = False
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
        index._live_bits = None
        index._n_live = int(index._live.sum())
        if index._n_live != int(meta["live"]):
            raise ValueError(f"{directory}: {index._n_live} live slots, header says {meta['live']}")
        index._map = _KeyMap()
        live_slots = index._live_slot_array()
        index._map.set(np.asarray(index._keys.view()[live_slots, 0], dtype=np.int64), live_slots, index._n_live)
        index._ann = None
        index._added, index._added_fit = 0, 0.0
        if files.get("ann"):
            ann = CoarseIndex.load(directory / files["ann"], int(meta["ann_trained_on"]), float(meta["ann_fit"]))
            if ann.dim != index.dim or ann.ntotal < index._n_live:
                raise ValueError(f"{directory}: IVF of {ann.ntotal} x {ann.dim}-d codes for {index._n_live} x {index.dim}-d rows")
            index._ann = ann
            index.ann_loaded = True
        return index


# --------------------------------------------------------------------------------------------


def _pool(k: int) -> int:
    """Candidates to re-rank exactly for k results (see RERANK_PER_K)."""
    return max(RERANK_MIN, RERANK_PER_K * min(k, 10) + 2 * max(0, k - 10))


def _mapped_bytes() -> int:
    """File-backed and shared resident bytes of this process (``/proc/self/statm``, field 3;
    0 where there is no procfs)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[2]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def _renumbering(live: np.ndarray, slots: int) -> np.ndarray:
    """``(slots,)`` int64: the new slot of every old slot once ``live`` (sorted) are packed to
    the front, -1 for the others."""
    out = np.full(slots, -1, dtype=np.int64)
    out[live] = np.arange(live.shape[0], dtype=np.int64)
    return out


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
