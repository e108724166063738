"""Candidate stage of creator search: the posts nearest a query among the counted ones.

``PostIndex`` is the seam: creator search asks it for the ``limit`` counted posts most similar
to the query and ranks creators from those (``service.creators.candidates``), so another engine
(Milvus) can answer the same question. ``AnnPostIndex`` is the embedded implementation: a
``VectorIndex`` per platform over the snapshot's post vectors (searched in place; an IVF of
8-bit codes, candidates re-ranked exactly; filters that pass few posts scanned exactly),
rebuilt in a background thread when the snapshot changes. Until the index of the current
snapshot is ready it answers None and the search scans every counted post exactly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import numpy as np

from ..index import VectorIndex
from .creator_types import CreatorSnapshot

log = logging.getLogger(__name__)

T = TypeVar("T")

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
            cosines are exact, the set approximate (IVF recall).
        """
        ...

    def warm(self, snapshot: CreatorSnapshot) -> None:
        """Build (or start building) the index of this snapshot; optional work."""
        ...


class VersionedBuilds(Generic[T]):
    """Per platform, what ``build(snapshot)`` made for the snapshot's current version.

    ``get`` answers the value built for this version, or builds it: in the calling thread
    (``background=False``: the value is returned) or in one background thread per platform
    (None meanwhile; a later call after the thread ends, e.g. after a failure, starts another).
    A value replaces the platform's only if built for a newer version.

    Args:
        build: makes the value of a snapshot (may take long).
        background: build in a background thread.
        thread_name: thread name prefix (the platform is appended).
        on_failure: called (in the ``except`` block) when a background build raises; None lets
            the exception end the thread as it is.
    """

    def __init__(self, build: Callable[[CreatorSnapshot], T], *, background: bool, thread_name: str,
                 on_failure: Callable[[CreatorSnapshot], None] | None = None) -> None:
        self._build = build
        self.background = background  # may be switched off later (tests)
        self._thread_name = thread_name
        self._on_failure = on_failure
        self._ready: dict[str, tuple[int, T]] = {}
        self._building: dict[str, threading.Thread] = {}
        self._lock = threading.RLock()

    def get(self, snapshot: CreatorSnapshot) -> T | None:
        with self._lock:
            ready = self._ready.get(snapshot.platform)
            if ready is not None and ready[0] == snapshot.version:
                return ready[1]
            if not self.background:
                return self._run(snapshot)
            thread = self._building.get(snapshot.platform)
            if thread is None or not thread.is_alive():
                target = self._run if self._on_failure is None else self._run_caught
                thread = threading.Thread(target=target, args=(snapshot,), daemon=True,
                                          name=f"{self._thread_name}-{snapshot.platform}")
                self._building[snapshot.platform] = thread
                thread.start()
        return None

    def _run(self, snapshot: CreatorSnapshot) -> T:
        value = self._build(snapshot)
        with self._lock:
            current = self._ready.get(snapshot.platform)
            if current is None or current[0] < snapshot.version:
                self._ready[snapshot.platform] = (snapshot.version, value)
        return value

    def _run_caught(self, snapshot: CreatorSnapshot) -> None:
        assert self._on_failure is not None
        try:
            self._run(snapshot)
        except Exception:  # noqa: BLE001 - a failed background build is retried by the next call
            self._on_failure(snapshot)


class AnnPostIndex:
    """``PostIndex`` over in-process ``VectorIndex`` IVFs, one per platform and snapshot version.

    Args:
        min_posts: platforms with fewer posts answer None (scanned exactly).
        background: build in a background thread (serving) or in the calling thread (tests,
            benchmarks: the first call then returns an answer).
        index_options: ``VectorIndex`` keyword arguments (``ann_min_size`` defaults to
            ``min_posts`` so the IVF exists once the platform is indexed).
    """

    def __init__(self, min_posts: int = MIN_INDEXED_POSTS, *, background: bool = True,
                 index_options: dict[str, int] | None = None) -> None:
        self._min_posts = int(min_posts)
        self._options = {"ann_min_size": self._min_posts, **(index_options or {})}
        self._indexes = VersionedBuilds(self._build, background=background,
                                        thread_name="lookalike-post-index")

    def top_posts(
        self, snapshot: CreatorSnapshot, vector: np.ndarray, counted: np.ndarray, limit: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        index = self._index(snapshot)
        if index is None:
            return None
        everything = len(counted) == len(snapshot.posts)  # no filter: the unfiltered IVF path
        rows, cosines = index.search(vector, limit, None if everything else counted)
        return rows, cosines

    def warm(self, snapshot: CreatorSnapshot) -> None:
        self._index(snapshot)

    def _index(self, snapshot: CreatorSnapshot) -> VectorIndex | None:
        if len(snapshot.posts) < self._min_posts:
            return None
        return self._indexes.get(snapshot)

    def _build(self, snapshot: CreatorSnapshot) -> VectorIndex:
        index = VectorIndex.over(snapshot.posts.vectors, **self._options)
        log.info("post index of %s (%d posts, version %d) built", snapshot.platform, len(snapshot.posts),
                 snapshot.version)
        return index
