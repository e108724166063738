"""``MilvusPostIndex``: the candidate stage of creator search (``PostIndex``) on a Milvus server.

Creator profiles and posts stay in ``creators.db`` (SQLite), which is the source of truth and
where the profile and post filters are evaluated (``CreatorSearchService``); Milvus holds a copy
of each platform's post embeddings and answers "the L counted posts nearest this query".

Layout: one collection per platform and embedding size, ``<prefix>posts_<platform>_<dim>``, with
``row`` INT64 primary key (the post's row in the platform's ``CreatorSnapshot``), ``gen`` INT64
(the snapshot ``version`` the row was written for) and ``vec`` FLOAT_VECTOR(dim) under an HNSW
index (inner product = cosine on L2-normalised vectors, as the image collections).

Sync: the creator store bumps a platform's ``version`` on every import or delete (in this or
another process). On the first search of a new version the rows are upserted with the new
``gen`` and rows past the new count deleted; searches always filter on ``gen == version`` so a
row of another version never answers. While that happens (in a background thread when
serving) ``top_posts`` answers None and the search scans exactly, as ``AnnPostIndex`` does.

Filters: the counted rows (posts passing the profile and post filters) are sent as
``row in [...]`` (or ``row not in [...]``, whichever list is shorter); past ``MAX_EXPR_ROWS``
rows, or a ``limit`` beyond Milvus's top-k cap, the answer is None (the exact scan). The
cosines returned are recomputed from the snapshot's float32 vectors, so they are the exact
scan's to the bit; only the candidate set comes from Milvus's HNSW (searched with ``ef`` at
least twice the limit).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from .creator_types import CreatorSnapshot
from .post_index import VersionedBuilds

if TYPE_CHECKING:
    from .milvus import MilvusStore

log = logging.getLogger(__name__)

#: Longest row list sent in one expression; longer filters are scanned exactly here.
MAX_EXPR_ROWS = 50_000
#: Milvus 2.3's cap on top-k and on HNSW ``ef`` (``quotaAndLimits`` / knowhere).
MAX_TOP_K = 16_384
MAX_EF = 32_768
#: HNSW ``ef`` floor, and its multiple of the limit (recall of the candidate set).
SEARCH_EF = 256
EF_PER_LIMIT = 2
_BATCH_ROWS = 1000
HNSW_BUILD = {"M": 16, "efConstruction": 200}


class MilvusPostIndex:
    """``PostIndex`` over per-platform Milvus collections (see module docstring).

    Args:
        store: the ``MilvusStore`` whose connection, timeouts and collection prefix are used
            (its errors: an unreachable server is ``StoreUnavailable``, HTTP 503).
        min_posts: platforms with fewer posts answer None (scanned exactly); default 0: every
            platform large enough for the candidate stage is searched in Milvus.
        background: sync a new snapshot version in a background thread (serving) or in the
            calling thread (tests: the first call then answers).
    """

    def __init__(self, store: MilvusStore, min_posts: int = 0, *, background: bool = True) -> None:
        self._store = store
        self._min_posts = int(min_posts)
        # per platform: the snapshot version present in Milvus
        self._synced = VersionedBuilds(self._sync, background=background,
                                       thread_name="lookalike-milvus-posts",
                                       on_failure=self._sync_failed)

    def top_posts(
        self, snapshot: CreatorSnapshot, vector: np.ndarray, counted: np.ndarray, limit: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """See ``PostIndex.top_posts``: (rows (m,) int64, exact cosines (m,) float32), or None."""
        n = len(snapshot.posts)
        if limit > MAX_TOP_K or n == 0 or not self._ready(snapshot):
            return None
        expr = f"gen == {int(snapshot.version)}"
        if len(counted) < n:
            if len(counted) <= n - len(counted):
                rows_expr = f"row in [{','.join(map(str, counted.tolist()))}]"
                listed = len(counted)
            else:
                outside = np.setdiff1d(np.arange(n, dtype=np.int64), counted, assume_unique=True)
                rows_expr = f"row not in [{','.join(map(str, outside.tolist()))}]"
                listed = len(outside)
            if listed > MAX_EXPR_ROWS:
                return None
            expr = f"{expr} and {rows_expr}"
        store = self._store
        query = np.asarray(vector, dtype=np.float32)
        with store._milvus():
            coll = self._collection(snapshot)
            ef = min(MAX_EF, max(SEARCH_EF, EF_PER_LIMIT * limit))
            result = coll.search(
                data=[query.tolist()], anns_field="vec",
                param={"metric_type": "IP", "params": {"ef": ef}}, limit=limit, expr=expr,
                output_fields=[], consistency_level="Session", timeout=store._t,
            )
        rows = np.asarray(list(result[0].ids), dtype=np.int64)
        # Exact cosines, as the exact scan computes them (row by row over the same float32 data).
        cosines = (snapshot.posts.vectors[rows] @ query).astype(np.float32)
        order = np.lexsort((rows, -cosines))
        return rows[order], cosines[order]

    def warm(self, snapshot: CreatorSnapshot) -> None:
        """Start syncing this snapshot's posts into Milvus if they are not there yet."""
        self._ready(snapshot)

    # -- sync ------------------------------------------------------------------------------

    def _ready(self, snapshot: CreatorSnapshot) -> bool:
        return len(snapshot.posts) >= self._min_posts and self._synced.get(snapshot) is not None

    def _sync_failed(self, snapshot: CreatorSnapshot) -> None:
        log.warning("could not copy %s posts to Milvus", snapshot.platform, exc_info=True)

    def _sync(self, snapshot: CreatorSnapshot) -> bool:
        """Upsert every post row with ``gen = version``; delete rows past the count."""
        store, posts = self._store, snapshot.posts
        n, gen = len(posts), int(snapshot.version)
        with store._milvus():
            coll = self._collection(snapshot)
            have = coll.query(f"gen == {gen}", output_fields=["count(*)"], consistency_level="Session",
                              timeout=store._t)
            if int(have[0]["count(*)"]) != n:  # another process may have written this version already
                for start in range(0, n, _BATCH_ROWS):
                    stop = min(n, start + _BATCH_ROWS)
                    coll.upsert([list(range(start, stop)), [gen] * (stop - start),
                                 posts.vectors[start:stop].tolist()], timeout=store._t)
                coll.delete(f"row >= {n}", timeout=store._t)
                store._wrote(coll)
        log.info("posts of %s (%d, version %d) copied to Milvus", snapshot.platform, n, gen)
        return True

    def _collection(self, snapshot: CreatorSnapshot) -> Any:
        from pymilvus import CollectionSchema, DataType, FieldSchema

        dim = int(snapshot.posts.vectors.shape[1])
        schema = CollectionSchema(
            [
                FieldSchema("row", DataType.INT64, is_primary=True),
                FieldSchema("gen", DataType.INT64),
                FieldSchema("vec", DataType.FLOAT_VECTOR, dim=dim),
            ],
            description=f"Lookalike creator posts of {snapshot.platform}",
        )
        index = {"index_type": "HNSW", "metric_type": "IP", "params": HNSW_BUILD}
        name = f"{self._store.target.prefix}posts_{snapshot.platform}_{dim}"
        return self._store._collection(name, schema, index)
