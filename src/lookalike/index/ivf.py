"""Inverted-file candidate stage over 8-bit scalar-quantised codes (FAISS ``IndexIVFScalarQuantizer``).

An inverted file (IVF; Sivic & Zisserman, "Video Google", ICCV 2003; with a k-means coarse
quantiser as in Jégou, Douze & Schmid, "Product quantization for nearest neighbor search",
IEEE TPAMI 33(1), 2011, section IV) partitions the vectors into ``nlist`` cells around k-means
centroids; a query scans only the ``nprobe`` cells whose centroids are nearest. Each vector is
kept as a code of one byte per dimension: FAISS's ``QT_8bit`` scalar quantiser, a per-dimension
[min, max] range trained on a sample and split into 256 levels. That keeps all dimensions (a
1280-d vector costs 1,280 bytes, a quarter of float32) at a fraction of the error of a low-rank
projection: the order inside a dense cluster, which a projection to fewer dimensions loses,
survives (README, Storage at scale, has the measurements).

Filters are applied inside the scan: a query may pass a bitmap of the ids it allows
(``faiss.IDSelectorBitmap``), and codes of other ids are skipped before their distance is
computed, so a filtered query costs the cells it probes plus the allowed codes it scores.

Ids are the owner's slots (small non-negative int64); the owner keeps the full-precision rows
and re-ranks what this stage returns.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Final

import faiss
import numpy as np

__all__ = ["CoarseIndex", "nlist_for"]

# FAISS's guideline (wiki, "Guidelines to choose an index"): between 4·sqrt(n) and 16·sqrt(n)
# cells. The low end keeps training cheap (k-means cost grows with nlist) and cells large
# enough that a fixed share of probed cells holds a query's neighbours.
_CELLS_PER_SQRT_N: Final = 4
_MIN_NLIST: Final = 16
_MAX_NLIST: Final = 1 << 16
# k-means points per cell (FAISS warns below 39) and the cap on the training sample (bytes:
# 100k x 1280 float32 = 512 MB at most, during a build only).
_TRAIN_PER_CELL: Final = 40
_MAX_TRAIN: Final = 100_000
# Above this dimension the centroids are found in the top principal directions of the sample
# (k-means cost is linear in the dimension) and then lifted back (see CoarseIndex.train).
_KMEANS_DIM: Final = 256
_KMEANS_ITERATIONS: Final = 12
_ADD_BLOCK: Final = 50_000
# Rows that set the quantiser's per-dimension ranges (min / max: more rows only widen them).
_SQ_TRAIN: Final = 20_000
_RANGE_MARGIN: Final = 0.1
# Training rows whose nearest-centroid cosine sets ``fit``.
_FIT_ROWS: Final = 20_000


def nlist_for(n: int) -> int:
    """Number of IVF cells for ``n`` vectors: ``4 * sqrt(n)``, clamped to [16, 65536]."""
    return int(min(_MAX_NLIST, max(_MIN_NLIST, round(_CELLS_PER_SQRT_N * math.sqrt(max(n, 1))))))


class CoarseIndex:
    """IVF cells of SQ8 codes, searched by inner product (a thin typed wrapper over FAISS).

    Build with :meth:`train` then :meth:`add`; :meth:`search` returns candidate ids ranked by
    their quantised inner product. Not thread-safe for writes: the owner serialises
    :meth:`add` / :meth:`renumber` against searches (FAISS searches may run concurrently).

    Attributes:
        trained_on: how many vectors the owner held when the cells were trained (it retrains
            once it has grown well past them).
        fit: mean cosine of the training rows with their nearest centroid; rows added later
            that fit their cells much worse mean the data has drifted from the cells.
    """

    def __init__(self, index: faiss.IndexIVFScalarQuantizer, trained_on: int, fit: float) -> None:
        self._index = index
        self.trained_on = int(trained_on)
        self.fit = float(fit)

    @classmethod
    def train(cls, sample: np.ndarray, nlist: int, trained_on: int, *, seed: int = 1) -> CoarseIndex:
        """Train the cells and the quantiser on ``sample``.

        Args:
            sample: ``(m, dim)`` float32, L2-normalised rows (m >= nlist), e.g. a random
                sample of the vectors to index; k-means uses ``40 * nlist`` of them (100k at
                most), up to 20k of the rest measure :attr:`fit`.
            nlist: number of cells (see :func:`nlist_for`).
            trained_on: recorded as :attr:`trained_on`.
            seed: k-means seed (the same sample gives the same cells).

        Centroids: spherical k-means (cosine) on the sample's projection onto its top 256
        principal directions (5x cheaper than at 1280-d: 28 s for 4,096 cells at 1M vectors on
        2 cores), then each centroid is replaced by the normalised mean of the full vectors of
        its cell, so cells are routed in the full space.

        Raises:
            ValueError: fewer sample rows than cells, or a bad shape.
        """
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        if sample.ndim != 2 or sample.shape[0] < nlist or nlist < 1:
            raise ValueError(f"need a (m >= nlist={nlist}, dim) sample, got {sample.shape}")
        m, dim = sample.shape
        take = min(m, _TRAIN_PER_CELL * nlist, _MAX_TRAIN)
        held_out = sample[:0]
        if take < m:
            rng = np.random.default_rng(seed)
            chosen = np.zeros(m, dtype=bool)
            chosen[rng.choice(m, size=take, replace=False)] = True
            held_out = sample[~chosen][:_FIT_ROWS]
            sample = sample[chosen]
        basis = np.eye(dim, dtype=np.float32)
        if dim > _KMEANS_DIM:
            _, eigvecs = np.linalg.eigh(sample.T.astype(np.float64) @ sample)
            basis = np.ascontiguousarray(eigvecs[:, ::-1][:, :_KMEANS_DIM], dtype=np.float32)
        space = np.ascontiguousarray(sample @ basis)
        kmeans = faiss.Kmeans(
            space.shape[1], nlist, niter=_KMEANS_ITERATIONS, seed=seed, spherical=True,
            min_points_per_centroid=1, max_points_per_centroid=_TRAIN_PER_CELL, verbose=False,
        )
        kmeans.train(space)
        _, cell = kmeans.index.search(space, 1)
        centroids = np.zeros((nlist, dim), dtype=np.float32)
        np.add.at(centroids, cell[:, 0], sample)
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        if empty.any():  # a cell k-means left empty keeps its own centroid, lifted
            centroids[empty] = np.asarray(kmeans.centroids)[empty] @ basis.T
            norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        centroids /= np.maximum(norms, 1e-12)
        quantiser = faiss.IndexFlatIP(dim)
        quantiser.add(centroids)
        index = faiss.IndexIVFScalarQuantizer(
            quantiser, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        # The index frees its quantiser (Python must not: it would free it first).
        index.own_fields = True
        quantiser.this.disown()  # type: ignore[attr-defined]  # SWIG attribute, not in the stubs
        # Codes of the vectors themselves, not of their residuals from the centroid: vectors
        # that arrive after training and sit far from every centroid would have residuals
        # outside the trained ranges. The ranges are widened by 10 % a side for the same
        # reason (a 20 % coarser step).
        index.by_residual = False
        index.sq.rangestat = faiss.ScalarQuantizer.RS_minmax
        index.sq.rangestat_arg = _RANGE_MARGIN
        # The quantiser holds nlist centroids, so this trains the SQ8 ranges only.
        index.train(sample[: _SQ_TRAIN])
        # Rows k-means did not see measure the fit as later rows will see it (in-sample rows
        # sit closer to the centroids they pulled).
        probe = held_out if held_out.shape[0] >= _FIT_ROWS // 10 else sample[:_FIT_ROWS]
        fit = float(np.mean(np.max(probe @ centroids.T, axis=1)))
        return cls(index, trained_on, fit)

    @property
    def nlist(self) -> int:
        """Number of cells."""
        return int(self._index.nlist)

    @property
    def ntotal(self) -> int:
        """Number of codes held (ids removed by :meth:`renumber` are gone)."""
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def assign(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cells of ``vectors`` ((n, dim) float32): ``(n,)`` int64 cells and ``(n,)`` float32
        cosines with their centroids. Read-only, so an owner can run it outside its write lock
        and pass the cells to :meth:`add` (the costly part of an add: n x nlist x dim
        multiply-adds)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        sims, cells = self._index.quantizer.search(vectors, 1)
        return np.ascontiguousarray(cells[:, 0], dtype=np.int64), sims[:, 0]

    def add(self, ids: np.ndarray, vectors: np.ndarray, cells: np.ndarray | None = None) -> None:
        """Add ``vectors`` ((n, dim) float32, unit rows) under ``ids`` ((n,) int64, >= 0), in
        blocks of 50k (bounded temporary memory); ``cells`` from :meth:`assign`, when known."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        for start in range(0, ids.shape[0], _ADD_BLOCK):
            stop = min(ids.shape[0], start + _ADD_BLOCK)
            x = np.ascontiguousarray(vectors[start:stop], dtype=np.float32)
            part = self.assign(x)[0] if cells is None else np.ascontiguousarray(cells[start:stop], dtype=np.int64)
            self._index.add_core(stop - start, faiss.swig_ptr(x), faiss.swig_ptr(ids[start:stop]), faiss.swig_ptr(part))

    def search(self, query: np.ndarray, count: int, nprobe: int, members: np.ndarray | None = None) -> np.ndarray:
        """Ids of up to ``count`` codes nearest ``query`` in the ``nprobe`` nearest cells.

        Args:
            query: ``(dim,)`` float32.
            count: candidates wanted (>= 1).
            nprobe: cells to scan (clamped to [1, nlist]).
            members: optional packed bitmap (uint8, little bit order: id i is bit ``i % 8`` of
                byte ``i // 8``) of the ids that may be returned; ids past its end are excluded.

        Returns:
            ``(<= count,)`` int64 ids, best first.
        """
        params = faiss.SearchParametersIVF()
        params.nprobe = int(min(max(1, nprobe), self.nlist))
        if members is not None:
            members = np.ascontiguousarray(members, dtype=np.uint8)
            selector = faiss.IDSelectorBitmap(members.shape[0], faiss.swig_ptr(members))
            params.sel = selector
        _, ids = self._index.search(np.ascontiguousarray(query, dtype=np.float32)[None, :], int(count), params=params)
        found = ids[0]
        return found[found >= 0]

    def renumber(self, new_ids: np.ndarray) -> None:
        """Drop codes whose ``new_ids[id]`` is -1 and give the others id ``new_ids[id]``.

        Args:
            new_ids: ``(id space,)`` int64, the new id of every old id (-1: remove); ids past
                its end are removed.

        Used when the owner compacts its slots. One pass over the codes (``remove_ids``) and one
        over the id arrays of the cells, in place.
        """
        new_ids = np.ascontiguousarray(new_ids, dtype=np.int64)
        # Kept in locals: FAISS holds raw pointers to the bitmap and the inner selector.
        # Ids past the bitmap's end are not members, so they are removed too.
        keep = np.packbits(new_ids >= 0, bitorder="little")
        kept = faiss.IDSelectorBitmap(keep.shape[0], faiss.swig_ptr(keep))
        self._index.remove_ids(faiss.IDSelectorNot(kept))
        invlists = self._index.invlists
        assert invlists is not None
        for cell in range(self.nlist):
            size = invlists.list_size(cell)
            if size:
                ids = faiss.rev_swig_ptr(invlists.get_ids(cell), size)
                ids[:] = new_ids[ids]

    def clone(self) -> CoarseIndex:
        """An independent copy (same cells, codes and ids)."""
        clone = faiss.clone_index(self._index)  # already the concrete class (FAISS's wrapper)
        assert isinstance(clone, faiss.IndexIVFScalarQuantizer)
        return CoarseIndex(clone, self.trained_on, self.fit)

    def save(self, path: Path) -> None:
        """Write the index to ``path`` (FAISS's own format; the caller fsyncs)."""
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path, trained_on: int, fit: float) -> CoarseIndex:
        """Read an index written by :meth:`save` into RAM (``nlist * dim * 4`` bytes of
        centroids plus ``dim + 8`` bytes a code).

        Raises:
            ValueError: the file is not an IVF-SQ index.
            RuntimeError: FAISS cannot read the file.
        """
        index = faiss.read_index(str(path))  # already the concrete class (FAISS's wrapper)
        if not isinstance(index, faiss.IndexIVFScalarQuantizer):
            raise ValueError(f"{path}: not an IVF-SQ index ({type(index).__name__})")
        return cls(index, trained_on, fit)
