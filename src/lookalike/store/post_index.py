"""Candidate stage of creator search: the posts nearest a query among the counted ones.

``PostIndex`` is the seam: creator search asks it for the ``limit`` counted posts most similar
to the query and ranks creators from those (``service.creators.candidates``), so another engine
(Milvus) can answer the same question. ``GraphPostIndex`` is the embedded implementation: a
``VectorIndex`` per platform over the snapshot's post vectors (searched in place; HNSW over
compact 256-d projections, candidates re-ranked exactly; filters that pass few posts scanned
exactly), rebuilt in a background thread when the snapshot changes. Until the index of the
current snapshot is ready it answers None and the search scans every counted post exactly.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

import numpy as np

from ..index import VectorIndex
from .creator_types import CreatorSnapshot

log = logging.getLogger(__name__)

#: Below this many posts a platform is always scanned exactly: at 30k x 1280-d the exact scan
#: measured 8.6 ms p50, the candidate rounds more (benchmarks/scale.py).
MIN_INDEXED_POSTS = 50_000


class PostIndex(Protocol):
    """Nearest counted posts of one platform's snapshot."""

    def top_posts(
        self, snapshot: CreatorSnapshot, vector: np.ndarray, counted: np.ndarray, limit: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The ``limit`` counted posts most similar to ``vector``, or None (not available now:
        the caller scans exactly).

        Args:
            snapshot: the platform's snapshot the rows refer to.
            vector: (d,) float32, L2-normalised query embedding.
            counted: (c,) int64 ascending post rows that pass the filters.
            limit: number of posts wanted.

        Returns:
            (rows (m,) int64, cosines (m,) float32), cosine descending, m = min(limit, c); the
            cosines are exact, the set approximate (graph recall).
        """
        ...

    def warm(self, snapshot: CreatorSnapshot) -> None:
        """Build (or start building) the index of this snapshot; optional work."""
        ...


class GraphPostIndex:
    """``PostIndex`` over in-process ``VectorIndex`` graphs, one per platform and snapshot version.

    Args:
        min_posts: platforms with fewer posts answer None (scanned exactly).
        background: build in a background thread (serving) or in the calling thread (tests,
            benchmarks: the first call then returns an answer).
        index_options: ``VectorIndex`` keyword arguments (``hnsw_min_size`` defaults to
            ``min_posts`` so the graph exists once the platform is indexed).
    """

    def __init__(self, min_posts: int = MIN_INDEXED_POSTS, *, background: bool = True,
                 index_options: dict[str, int] | None = None) -> None:
        self._min_posts = int(min_posts)
        self._background = background
        self._options = {"hnsw_min_size": self._min_posts, **(index_options or {})}
        self._ready: dict[str, tuple[int, VectorIndex]] = {}
        self._building: dict[str, threading.Thread] = {}
        self._lock = threading.RLock()

    def top_posts(
        self, snapshot: CreatorSnapshot, vector: np.ndarray, counted: np.ndarray, limit: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        index = self._index(snapshot)
        if index is None:
            return None
        everything = len(counted) == len(snapshot.posts)  # no filter: the unfiltered graph path
        rows, cosines = index.search(vector, limit, None if everything else counted)
        return rows, cosines

    def warm(self, snapshot: CreatorSnapshot) -> None:
        self._index(snapshot)

    def _index(self, snapshot: CreatorSnapshot) -> VectorIndex | None:
        if len(snapshot.posts) < self._min_posts:
            return None
        with self._lock:
            ready = self._ready.get(snapshot.platform)
            if ready is not None and ready[0] == snapshot.version:
                return ready[1]
            if not self._background:
                index = self._build(snapshot)
                return index
            thread = self._building.get(snapshot.platform)
            if thread is None or not thread.is_alive():
                thread = threading.Thread(target=self._build, args=(snapshot,), daemon=True,
                                          name=f"lookalike-post-index-{snapshot.platform}")
                self._building[snapshot.platform] = thread
                thread.start()
        return None

    def _build(self, snapshot: CreatorSnapshot) -> VectorIndex:
        index = VectorIndex.over(snapshot.posts.vectors, **self._options)
        log.info("post index of %s (%d posts, version %d) built", snapshot.platform, len(snapshot.posts),
                 snapshot.version)
        with self._lock:
            current = self._ready.get(snapshot.platform)
            if current is None or current[0] < snapshot.version:
                self._ready[snapshot.platform] = (snapshot.version, index)
        return index

