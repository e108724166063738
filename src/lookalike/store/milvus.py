"""``MilvusStore``: the Store contract on a Milvus 2.3 server (standalone or distributed).

What lives where:

* ``<prefix>libraries`` (Milvus): one row per library, primary key ``name`` (VARCHAR), ``info``
  (JSON: mode, model_id, dims, created_at, the collection ``token``, and ``exact``), and a
  2-d placeholder vector ``_v`` (FLAT index) because Milvus 2.3 needs a vector in every collection.
* ``<prefix><field>_<dim>`` (Milvus), e.g. ``lookalike_visual_1280``: one collection per
  embedding field and size (Milvus 2.3 allows one vector field per collection), shared by the
  libraries with that field, which are told apart by ``lib`` (VARCHAR, the library's token:
  a library is a filter, not a collection to create and load, which takes seconds; not a
  partition key either, as Milvus 2.3.5's upsert misroutes partition-key rows). Fields:
  ``pk`` INT64 primary key (import order), ``lib``, ``image_id`` VARCHAR(1024), ``meta`` JSON
  (``uri``, ``created_at``), ``tags`` JSON, ``vec`` FLOAT_VECTOR(dim) with an HNSW index
  (M 16, efConstruction 200, inner product = cosine on L2-normalised vectors). Every
  field's collection holds the tags, so each can filter.
* Original image bytes (for ``return_image_base64``) stay out of Milvus: they live in a small
  SQLite file beside Lookalike's data dir (``<data_dir>/milvus-bytes.db``), keyed by the
  library's token and the image id, written before the rows are inserted.

Searching: the ``tag_filter`` is translated into a Milvus expression
(:mod:`.milvus_expr`). Where the translation is exact Milvus filters and searches in one
call (HNSW with its own brute-force switch for very selective filters). Where it is not
(``contains``, keys outside ``[A-Za-z0-9_-]``, libraries holding tags Milvus cannot compare
exactly), the rows of the superset expression are read back with their tags, the filter is
evaluated here with :func:`lookalike.filters.evaluate`, and Milvus searches only those
primary keys. Either way the answer is the embedded store's.

Consistency: reads use Milvus's ``Session`` level, so this process always reads its own
writes; writes of another process become visible within Milvus's time tick (about 0.2 s).
An insert is acknowledged by Milvus once in its write-ahead log (the message stream), which
is when ``add_images`` returns. Every call carries the target's ``timeout``; a server that is
down or slow becomes :class:`~lookalike.errors.StoreUnavailable` (HTTP 503), and the next call
reconnects, so Lookalike recovers by itself when Milvus is back.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Conflict, ImageNotFound, InvalidParameter, LibraryNotFound, StoreUnavailable
from ..filters import Node, TagColumns, evaluate
from .base import Hit, ImageRecord, ImportReport, LibraryRecord, NewImage
from .milvus_expr import literal, safe_key, safe_value, translate
from .milvus_uri import MilvusTarget
from .sqlite import SQLiteStore

log = logging.getLogger(__name__)

#: Milvus's cap on offset + limit of one query (``quotaAndLimits.limits.maxQueryResultWindow``).
QUERY_WINDOW = 16384
#: Largest JSON document of one row's tags (Milvus's JSON field limit is 65,536 bytes).
MAX_TAGS_BYTES = 65_000
#: HNSW ``ef`` at search time: the floor, and the multiple of ``top_k``. Chosen by
#: ``benchmarks/bench.py --store milvus`` for recall@10 >= 0.98 at every selectivity.
SEARCH_EF = 256
HNSW_BUILD = {"M": 16, "efConstruction": 200}
#: Share of a collection's rows up to which one filtered search is exact (Milvus switches to
#: a scan below about 7 %; kept under it with a margin, as ``pk % n`` groups are uneven).
BRUTE_FORCE_SHARE = 0.04
#: Above this share a filtered HNSW search keeps recall@10 >= 0.98 (0.997 at 50 %, ef 256).
SPLIT_MAX_SHARE = 0.3
_BATCH_ROWS = 1000  # rows per insert / per ``pk in [...]`` lookup

BYTES_SCHEMA = """
CREATE TABLE IF NOT EXISTS image_bytes (
    token TEXT NOT NULL,
    image_id TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (token, image_id)
);
"""


class _ByteStore(SQLiteStore):
    """Encoded image bytes of Milvus libraries, keyed by (library token, image id)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, BYTES_SCHEMA)

    def put(self, token: str, items: Sequence[tuple[str, bytes]]) -> None:
        with self._write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO image_bytes (token, image_id, data) VALUES (?, ?, ?)",
                [(token, i, d) for i, d in items],
            )

    def get(self, token: str, image_ids: Sequence[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        with self._read() as conn:
            for image_id in image_ids:
                row = conn.execute(
                    "SELECT data FROM image_bytes WHERE token = ? AND image_id = ?", (token, image_id)
                ).fetchone()
                if row is not None:
                    out[image_id] = row["data"]
        return out

    def delete(self, token: str, image_ids: Sequence[str] | None = None) -> None:
        with self._write() as conn:
            if image_ids is None:
                conn.execute("DELETE FROM image_bytes WHERE token = ?", (token,))
            else:
                conn.executemany(
                    "DELETE FROM image_bytes WHERE token = ? AND image_id = ?", [(token, i) for i in image_ids]
                )


class _Library:
    """A library's row in ``<prefix>libraries``."""

    def __init__(self, name: str, info: dict[str, Any]) -> None:
        self.name = name
        self.info = info
        self.token: str = info["token"]
        self.dims: dict[str, int] = dict(info["dims"])
        self.exact: bool = bool(info.get("exact", False))

    def record(self, count: int | None) -> LibraryRecord:
        return LibraryRecord(
            name=self.name,
            mode=self.info["mode"],
            model_id=self.info["model_id"],
            dims=dict(self.dims),
            created_at=self.info["created_at"],
            image_count=count,
        )


def _tags_need_exact(tags: dict[str, object]) -> bool:
    """Whether Milvus could compare these tags differently from the filter language."""
    return any(not safe_key(k) or not safe_value(v) for k, v in tags.items())


class MilvusStore:
    """``Store`` on a Milvus 2.3 server (see module docstring for the layout).

    Args:
        target: the server and options (``parse_milvus_uri``).
        bytes_path: SQLite file for original image bytes.
        search_ef: HNSW ``ef`` floor at search time (``SEARCH_EF``).

    Raises (from every method, besides the contract's errors):
        StoreUnavailable: Milvus cannot be reached or did not answer within ``target.timeout``.
    """

    def __init__(self, target: MilvusTarget, bytes_path: Path, *, search_ef: int = SEARCH_EF) -> None:
        self.target = target
        self.search_ef = search_ef
        # pymilvus bounds its retries by ``timeout`` only when it is an int; a float means
        # 75 retries with backoff, minutes against a server that is down.
        self._t = max(1, math.ceil(target.timeout))
        self._alias = f"lookalike-{uuid.uuid4().hex[:12]}"
        self._bytes = _ByteStore(bytes_path)
        self._lock = threading.RLock()
        self._connected = False
        self._catalog_ready = False
        self._collections: dict[str, Any] = {}
        self._last_pk = 0

    @property
    def backend(self) -> str:
        """Where libraries live, for listings: ``milvus://host:port`` (no password)."""
        return self.target.display()

    # -- connection ----------------------------------------------------------------------

    def _connect(self) -> None:
        from pymilvus import connections

        with self._lock:
            if self._connected:
                return
            t = self.target
            connections.connect(
                alias=self._alias,
                host=t.host,
                port=str(t.port),
                user=t.user or "",
                password=t.password or "",
                db_name=t.db_name,
                secure=t.secure,
                timeout=t.timeout,
            )
            self._connected = True

    def _disconnect(self) -> None:
        from pymilvus import connections

        with self._lock:
            self._connected = False
            self._catalog_ready = False
            self._collections.clear()
            try:
                connections.disconnect(self._alias)
            except Exception:  # noqa: BLE001 - a broken channel may fail to close; it is dropped anyway
                log.debug("disconnect failed", exc_info=True)

    @contextmanager
    def _milvus(self) -> Iterator[None]:
        """Run Milvus calls, mapping an unreachable or slow server to ``StoreUnavailable``."""
        from pymilvus.exceptions import MilvusException

        try:
            self._connect()
            yield
        except MilvusException as exc:
            if _unavailable(exc):
                self._disconnect()  # a fresh channel next time: gRPC's reconnect backoff grows to minutes
                raise StoreUnavailable(
                    f"Milvus at {self.target.display()} is unavailable or did not answer within "
                    f"{self.target.timeout:g} s; retry later."
                ) from exc
            raise
        except Exception as exc:
            if _is_grpc_error(exc):
                self._disconnect()
                raise StoreUnavailable(f"Milvus at {self.target.display()} is unavailable; retry later.") from exc
            raise

    def _collection(self, name: str, schema: Any = None, index: dict | None = None, field: str = "vec") -> Any:
        """An open, loaded collection; created (with its index) when ``schema`` is given."""
        from pymilvus import Collection, utility

        coll = self._collections.get(name)
        if coll is not None:
            return coll
        t = self._t
        if schema is not None and not utility.has_collection(name, using=self._alias, timeout=t):
            # Once per collection and server: allow a busy server more than one request's timeout.
            slow = max(t, 120)
            coll = Collection(name, schema, using=self._alias, consistency_level="Session", timeout=slow)
            coll.create_index(field, index, timeout=slow)
        else:
            coll = Collection(name, using=self._alias)
        # pymilvus polls loading every 0.5 s; poll faster (a first load takes about 3 s).
        coll.load(timeout=t, _async=True)
        deadline = time.monotonic() + max(t, 30.0)
        while utility.loading_progress(name, using=self._alias, timeout=t)["loading_progress"] != "100%":
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"Milvus did not load collection {name} within {max(t, 30.0):g} s")
            time.sleep(0.05)
        self._collections[name] = coll
        return coll

    def _catalog(self) -> Any:
        from pymilvus import CollectionSchema, DataType, FieldSchema

        name = f"{self.target.prefix}libraries"
        if self._catalog_ready:
            return self._collections[name]
        schema = CollectionSchema(
            [
                FieldSchema("name", DataType.VARCHAR, is_primary=True, max_length=1024),
                FieldSchema("info", DataType.JSON),
                FieldSchema("_v", DataType.FLOAT_VECTOR, dim=2),
            ],
            description="Lookalike libraries",
        )
        coll = self._collection(name, schema, {"index_type": "FLAT", "metric_type": "L2", "params": {}}, "_v")
        self._catalog_ready = True
        return coll

    def _image_collection(self, lib: _Library, field: str) -> Any:
        from pymilvus import CollectionSchema, DataType, FieldSchema

        schema = CollectionSchema(
            [
                FieldSchema("pk", DataType.INT64, is_primary=True),
                FieldSchema("lib", DataType.VARCHAR, max_length=64),
                FieldSchema("image_id", DataType.VARCHAR, max_length=1024),
                FieldSchema("meta", DataType.JSON),
                FieldSchema("tags", DataType.JSON),
                FieldSchema("vec", DataType.FLOAT_VECTOR, dim=lib.dims[field]),
            ],
            description=f"Lookalike image libraries, {field} embeddings",
        )
        index = {"index_type": "HNSW", "metric_type": "IP", "params": HNSW_BUILD}
        return self._collection(self._name(lib, field), schema, index)

    def _name(self, lib: _Library, field: str) -> str:
        return f"{self.target.prefix}{field}_{lib.dims[field]}"

    def _library(self, name: str) -> _Library:
        rows = self._catalog().query(
            f"name == {literal(name)}", output_fields=["info"], consistency_level="Session", timeout=self._t
        )
        if not rows:
            raise LibraryNotFound(name)
        return _Library(name, rows[0]["info"])

    def _first(self, lib: _Library) -> Any:
        """The collection holding the library's records: the first embedding field's."""
        return self._image_collection(lib, next(iter(lib.dims)))

    def _query(self, coll: Any, expr: str, fields: list[str], **kw: Any) -> list[dict[str, Any]]:
        return coll.query(expr, output_fields=fields, consistency_level="Session", timeout=self._t, **kw)

    def _count(self, lib: _Library) -> int:
        rows = self._query(self._first(lib), _of(lib), ["count(*)"])
        return int(rows[0]["count(*)"])

    def _wrote(self, coll: Any) -> None:
        # Milvus 2.3 answers a delete without its timestamp, so pymilvus's "Session" reads
        # would not wait for it: record a timestamp taken after it instead.
        from pymilvus import connections
        from pymilvus.client import ts_utils

        ts_utils.update_collection_ts(coll.name, connections._fetch_handler(self._alias).alloc_timestamp())

    def _next_pks(self, n: int) -> list[int]:
        # Import order across processes: microseconds since the epoch, 1024 slots each (a
        # batch is at most 1000 images); monotone within this process.
        with self._lock:
            base = max(time.time_ns() // 1000 * 1024, self._last_pk + 1)
            self._last_pk = base + n
        return list(range(base, base + n))

    # -- libraries -----------------------------------------------------------------------

    def create_library(self, name: str, mode: str, model_id: str, dims: dict[str, int]) -> LibraryRecord:
        with self._milvus():
            catalog = self._catalog()
            try:
                self._library(name)
            except LibraryNotFound:
                pass
            else:
                raise Conflict(f"Image library '{name}' already exists.")
            info = {
                "mode": mode,
                "model_id": model_id,
                "dims": dict(dims),
                "created_at": time.time(),
                "token": uuid.uuid4().hex[:16],
                "exact": False,
            }
            lib = _Library(name, info)
            for field in dims:  # collections first: a library is visible only once complete
                self._image_collection(lib, field)
            catalog.insert([[name], [info], [[0.0, 0.0]]], timeout=self._t)
        return lib.record(0)

    def get_library(self, name: str, *, count: bool = True) -> LibraryRecord:
        with self._milvus():
            lib = self._library(name)
            return lib.record(self._count(lib) if count else None)

    def list_libraries(self) -> list[LibraryRecord]:
        with self._milvus():
            rows = self._query(self._catalog(), 'name != ""', ["name", "info"], limit=QUERY_WINDOW)
            libs = sorted((_Library(r["name"], r["info"]) for r in rows), key=lambda lib: lib.name)
            return [lib.record(self._count(lib)) for lib in libs]

    def delete_library(self, name: str) -> None:
        with self._milvus():
            lib = self._library(name)
            catalog = self._catalog()
            catalog.delete(f"name == {literal(name)}", timeout=self._t)
            self._wrote(catalog)
            for field in lib.dims:
                coll = self._image_collection(lib, field)
                coll.delete(_of(lib), timeout=self._t)
                self._wrote(coll)
        self._bytes.delete(lib.token)

    def _mark_exact(self, lib: _Library) -> None:
        """Record that the library holds tags Milvus cannot compare exactly: from now on its
        filters are evaluated here (see module docstring)."""
        if lib.exact:
            return
        info = dict(lib.info, exact=True)
        self._catalog().upsert([[lib.name], [info], [[0.0, 0.0]]], timeout=self._t)
        lib.info, lib.exact = info, True

    # -- images --------------------------------------------------------------------------

    def add_images(self, library: str, images: Sequence[NewImage], *, skip_existing: bool = False) -> ImportReport:
        report = ImportReport()
        with self._milvus():
            lib = self._library(library)
            for image in images:
                for name, dim in lib.dims.items():
                    vector = image.vectors.get(name)
                    if vector is None or vector.shape != (dim,):
                        raise InvalidParameter(f"image '{image.image_id}': embedding '{name}' must have shape ({dim},)")
                size = len(json.dumps(image.tags, ensure_ascii=False).encode("utf-8", "surrogatepass"))
                if size > MAX_TAGS_BYTES:
                    raise InvalidParameter(
                        f"image '{image.image_id}': tags take {size} bytes as JSON; the Milvus backend "
                        f"stores at most {MAX_TAGS_BYTES}"
                    )
            existing = self._existing(lib, [i.image_id for i in images])
            new: list[NewImage] = []
            seen: set[str] = set()
            for image in images:
                if image.image_id in existing or image.image_id in seen:
                    if not skip_existing:
                        raise Conflict(f"image_id '{image.image_id}' already exists in library '{library}'.")
                    report.skipped.append(image.image_id)
                    continue
                seen.add(image.image_id)
                new.append(image)
            if not new:
                return report
            if any(_tags_need_exact(i.tags) for i in new):
                self._mark_exact(lib)
            # Bytes first: an acknowledged image always has them; bytes of a failed insert are
            # unreachable and replaced by a retry.
            self._bytes.put(lib.token, [(i.image_id, i.image_bytes) for i in new if i.image_bytes is not None])
            pks = self._next_pks(len(new))
            now = time.time()
            metas = [{"uri": i.image_uri, "created_at": now} for i in new]
            ids = [i.image_id for i in new]
            tags = [_storable(i.tags) for i in new]
            done: list[Any] = []
            try:
                for field in lib.dims:
                    coll = self._image_collection(lib, field)
                    vecs = [np.asarray(i.vectors[field], dtype=np.float32) for i in new]
                    coll.insert([pks, [lib.token] * len(pks), ids, metas, tags, vecs], timeout=self._t)
                    done.append(coll)
            except Exception:
                # All or nothing: undo the fields already written (best effort; a failure
                # here leaves rows that a retry with skip_existing will keep).
                for coll in done:
                    try:
                        coll.delete(f"pk in {pks}", timeout=self._t)
                        self._wrote(coll)
                    except Exception:  # noqa: BLE001
                        log.warning("could not undo a partial insert into %s", coll.name, exc_info=True)
                raise
            report.added.extend(ids)
        return report

    def _existing(self, lib: _Library, image_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        ids = list(dict.fromkeys(image_ids))
        coll = self._first(lib)
        for start in range(0, len(ids), _BATCH_ROWS):
            chunk = ids[start : start + _BATCH_ROWS]
            expr = _of(lib, f"image_id in [{', '.join(literal(i) for i in chunk)}]")
            found.update(r["image_id"] for r in self._query(coll, expr, ["image_id"], limit=QUERY_WINDOW))
        return found

    def existing_ids(self, library: str, image_ids: Sequence[str]) -> set[str]:
        with self._milvus():
            return self._existing(self._library(library), image_ids)

    def _row(self, lib: _Library, image_id: str, fields: list[str], field: str | None = None) -> dict[str, Any]:
        coll = self._image_collection(lib, field) if field else self._first(lib)
        rows = self._query(coll, _of(lib, f"image_id == {literal(image_id)}"), fields)
        if not rows:
            raise ImageNotFound(lib.name, image_id)
        return min(rows, key=lambda r: r["pk"])

    def get_image(self, library: str, image_id: str) -> ImageRecord:
        with self._milvus():
            lib = self._library(library)
            return _record(self._row(lib, image_id, ["image_id", "meta", "tags"]))

    def list_images(self, library: str, *, offset: int = 0, limit: int = 100) -> list[ImageRecord]:
        with self._milvus():
            lib = self._library(library)
            coll = self._first(lib)
            # Milvus answers a query with limit in primary-key order, i.e. import order.
            # Past its query window, walk the keys to the page start.
            expr = _of(lib)
            while offset + limit > QUERY_WINDOW:
                step = min(offset, QUERY_WINDOW)
                keys = self._query(coll, expr, ["pk"], limit=step)
                if len(keys) < step:
                    return []
                expr = _of(lib, f"pk > {max(int(k['pk']) for k in keys)}")
                offset -= step
            rows = self._query(coll, expr, ["image_id", "meta", "tags"], offset=offset, limit=limit)
            rows.sort(key=lambda r: r["pk"])
            return [_record(r) for r in rows]

    def update_tags(self, library: str, image_id: str, tags: dict[str, object]) -> ImageRecord:
        with self._milvus():
            lib = self._library(library)
            if _tags_need_exact(tags):
                self._mark_exact(lib)
            record = None
            for field in lib.dims:
                row = self._row(lib, image_id, ["pk", "image_id", "meta", "vec"], field)
                coll = self._image_collection(lib, field)
                vec = np.asarray(row["vec"], np.float32)
                coll.upsert(
                    [[row["pk"]], [lib.token], [row["image_id"]], [row["meta"]], [_storable(tags)], [vec]],
                    timeout=self._t,
                )
                record = ImageRecord(image_id=row["image_id"], image_uri=row["meta"]["uri"], tags=dict(tags),
                                     created_at=row["meta"]["created_at"])
            assert record is not None
            return record

    def delete_image(self, library: str, image_id: str) -> None:
        with self._milvus():
            lib = self._library(library)
            row = self._row(lib, image_id, ["pk"])
            for field in lib.dims:
                coll = self._image_collection(lib, field)
                coll.delete(f"pk in [{int(row['pk'])}]", timeout=self._t)
                self._wrote(coll)
        self._bytes.delete(lib.token, [image_id])

    def image_bytes(self, library: str, image_ids: Sequence[str]) -> dict[str, bytes]:
        with self._milvus():
            lib = self._library(library)
        return self._bytes.get(lib.token, image_ids)

    def sample_vectors(self, library: str, field: str, limit: int) -> np.ndarray:
        """Always empty: Milvus libraries rank by plain cosine (no library-fitted adaptation:
        sampling a shared collection by library and keeping the fit beside it are not built)."""
        with self._milvus():
            lib = self._library(library)
        return np.zeros((0, lib.dims.get(field, 0)), dtype=np.float32)

    def adaptation(self, library: str, field: str) -> bytes | None:
        with self._milvus():
            self._library(library)
        return None

    def save_adaptation(self, library: str, field: str, data: bytes | None) -> None:
        with self._milvus():
            self._library(library)  # nothing kept: see sample_vectors

    def vectors(self, library: str, field: str, image_ids: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._milvus():
            lib = self._library(library)
            if field not in lib.dims:
                return out
            coll = self._image_collection(lib, field)
            ids = list(dict.fromkeys(image_ids))
            for start in range(0, len(ids), _BATCH_ROWS):
                chunk = ids[start : start + _BATCH_ROWS]
                expr = _of(lib, f"image_id in [{', '.join(literal(i) for i in chunk)}]")
                for r in self._query(coll, expr, ["image_id", "vec"], limit=QUERY_WINDOW):
                    out[r["image_id"]] = np.asarray(r["vec"], dtype=np.float32)
        return out

    # -- search --------------------------------------------------------------------------

    def search(
        self, library: str, field: str, query: np.ndarray, top_k: int, tag_filter: Node | None = None
    ) -> list[Hit]:
        with self._milvus():
            lib = self._library(library)
            if field not in lib.dims:
                raise InvalidParameter(f"library '{library}' has no '{field}' embeddings")
            coll = self._image_collection(lib, field)
            plan = translate(tag_filter)
            q = np.asarray(query, dtype=np.float32)
            if tag_filter is None:
                return self._search(coll, q, top_k, [_of(lib)])
            if plan.exact and not lib.exact:
                expr = _of(lib, plan.expr)
                passing = int(self._query(coll, expr, ["count(*)"])[0]["count(*)"])
                groups = self._groups(coll, passing)
                if groups == 1:
                    return self._search(coll, q, top_k, [expr]) if passing else []
                return self._search(coll, q, top_k, [f"({expr}) and pk % {groups} == {j}" for j in range(groups)])
            keys = self._passing(coll, tag_filter, _of(lib, None if lib.exact else plan.expr))
            if not keys:
                return []
            groups = self._groups(coll, len(keys))
            chunks = [keys[j::groups] for j in range(groups)]
            return self._search(coll, q, top_k, [_of(lib, f"pk in [{', '.join(map(str, c))}]") for c in chunks if c])

    def _groups(self, coll: Any, passing: int) -> int:
        """Into how many disjoint searches to split a filter that ``passing`` rows pass.

        Milvus 2.3's HNSW scans exactly when a filter keeps under about 7 % of a segment, and
        is exact then; between that and about a third its filtered graph search loses recall
        (measured 0.958 at 10 % of 100k, ef 256; 0.978 at ef 2048). So such a filter is split
        by ``pk % groups`` into searches of at most ``BRUTE_FORCE_SHARE`` each, run at once,
        and merged: exact. Above ``SPLIT_MAX_SHARE`` the graph search keeps recall >= 0.98.
        """
        total = max(1, coll.num_entities)  # the collection's rows, deleted ones included: what the segments hold
        share = passing / total
        if share <= BRUTE_FORCE_SHARE or share > SPLIT_MAX_SHARE:
            return 1
        return math.ceil(share / BRUTE_FORCE_SHARE)

    def _passing(self, coll: Any, tag_filter: Node, superset: str) -> list[int]:
        """Primary keys of the rows passing ``tag_filter``, evaluated here over the rows of
        the ``superset`` expression."""
        keys: list[int] = []
        tags: list[dict[str, object]] = []
        cursor: int | None = None
        while True:
            expr = superset if cursor is None else f"({superset}) and pk > {cursor}"
            rows = self._query(coll, expr, ["tags"], limit=QUERY_WINDOW)
            for r in rows:
                keys.append(int(r["pk"]))
                tags.append(r["tags"])
            if len(rows) < QUERY_WINDOW:
                break
            cursor = max(int(r["pk"]) for r in rows)
        if not keys:
            return []
        mask = evaluate(tag_filter, TagColumns(tags))
        return [k for k, m in zip(keys, mask.tolist()) if m]

    def _search(self, coll: Any, query: np.ndarray, top_k: int, exprs: list[str]) -> list[Hit]:
        """Top ``top_k`` over the union of the rows each expression selects (disjoint sets)."""
        ef = max(self.search_ef, top_k)
        futures = [
            coll.search(
                [query.tolist()],
                "vec",
                {"metric_type": "IP", "params": {"ef": ef}},
                limit=top_k,
                expr=expr,
                output_fields=["image_id", "meta", "tags"],
                consistency_level="Session",
                timeout=self._t,
                _async=True,
            )
            for expr in exprs
        ]
        found = []
        for future in futures:
            for hit in future.result()[0]:
                entity = {name: hit.entity.get(name) for name in ("image_id", "meta", "tags")}
                found.append((float(hit.distance), int(hit.id), _record(entity)))
        found.sort(key=lambda t: (-t[0], t[1]))  # ties: the older import first
        return [Hit(image=record, similarity=sim) for sim, _, record in found[:top_k]]

    def flush(self, library: str, timeout: float = 3600.0) -> None:
        """Seal the library's rows and wait until Milvus has indexed them (HNSW is built on
        sealed segments; rows still growing are searched by brute force). Optional: benchmarks
        call it so they time the index, not the growing segment."""
        from pymilvus import utility

        with self._milvus():
            lib = self._library(library)
            for field in lib.dims:
                coll = self._image_collection(lib, field)
                coll.flush(timeout=int(timeout))
                utility.wait_for_index_building_complete(coll.name, using=self._alias, timeout=int(timeout))
                # Then until the query node serves every sealed segment with its index.
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    segments = utility.get_query_segment_info(coll.name, using=self._alias, timeout=self._t)
                    if all(seg.index_name and seg.state == 3 for seg in segments):  # 3: Sealed
                        break
                    time.sleep(0.5)

    def compact(self, library: str) -> int:
        """Ask Milvus to compact the library's collections now (it also does on its own; the
        collections are shared, so this compacts other libraries' segments too). Returns 0: Milvus
        reports no row count for it. Raises ``LibraryNotFound``."""
        with self._milvus():
            lib = self._library(library)
            for field in lib.dims:
                self._image_collection(lib, field).compact(timeout=self._t)
        return 0

    def warm(self, library: str) -> None:
        """Open and load the library's collections. Raises ``LibraryNotFound``."""
        with self._milvus():
            lib = self._library(library)
            for field in lib.dims:
                self._image_collection(lib, field)

    def close(self) -> None:
        if self._connected:
            self._disconnect()
        self._bytes.close()


def _of(lib: _Library, expr: str | None = None) -> str:
    """``expr`` restricted to the library's rows (its token is hex: a safe literal)."""
    own = f'lib == "{lib.token}"'
    return own if expr is None else f"{own} and ({expr})"


def _storable(tags: dict[str, object]) -> dict[str, object]:
    # Milvus keeps the JSON text as sent; pymilvus encodes with ensure_ascii, so even lone
    # surrogates survive the round trip (such libraries are filtered here, see _mark_exact).
    return dict(tags)


def _record(row: dict[str, Any]) -> ImageRecord:
    meta = row["meta"]
    return ImageRecord(image_id=row["image_id"], image_uri=meta.get("uri"), tags=dict(row["tags"]),
                       created_at=float(meta["created_at"]))


def _unavailable(exc: Exception) -> bool:
    """Whether a pymilvus error means "cannot reach the server in time" (vs. a bad request)."""
    from pymilvus.exceptions import MilvusUnavailableException

    if isinstance(exc, MilvusUnavailableException):
        return True
    text = str(exc).lower()
    return any(
        s in text
        for s in ("retry timeout", "unavailable", "deadline", "connect", "not ready", "timeout", "server is not healthy")
    )


def _is_grpc_error(exc: Exception) -> bool:
    import grpc

    return isinstance(exc, (grpc.RpcError, grpc.FutureTimeoutError))
