"""Storage backends as use cases: migrate a library between stores, run a dev Milvus server.

The CLI reaches the store layer only through here (and ``Runtime``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..errors import InvalidParameter, LibraryNotFound
from ..store import FIELDS, NewImage, Store
from ..store.backends import describe_store, open_store
from ..store.milvus_server import ServerInfo, free_port, server_status, start_server, stop_server

__all__ = [
    "MigrationReport",
    "ServerInfo",
    "free_port",
    "migrate_library",
    "open_target",
    "server_status",
    "start_server",
    "stop_server",
]

#: Images copied per batch (one ``add_images`` call on the target).
MIGRATE_BATCH = 256


@dataclass(frozen=True)
class MigrationReport:
    """``copied``: images written to the target; ``already``: found there (a resumed run);
    ``total``: images in the source library; ``target``: where it went (no password)."""

    copied: int
    already: int
    total: int
    target: str


def open_target(settings: Settings, spec: str) -> Store:
    """The store named by ``spec`` (``embedded`` = this data dir's, or a Milvus URI).

    Raises:
        ValueError: ``spec`` is not a store URI.
    """
    return open_store(
        spec, db_path=settings.db_path, index_dir=settings.index_dir, bytes_path=settings.milvus_bytes_path
    )


def migrate_library(
    source: Store,
    target: Store,
    library: str,
    *,
    target_name: str,
    progress: Callable[[int, int], None] | None = None,
    batch: int = MIGRATE_BATCH,
) -> MigrationReport:
    """Copy a library (records, tags, every embedding field, original bytes) from ``source``
    to ``target`` without re-embedding. Resumable: the library is created on the target if
    missing, and images already there are skipped, so an interrupted run can be repeated.

    Args:
        progress: called with (images done so far, total) after each batch.

    Raises:
        LibraryNotFound: ``library`` is not in ``source``.
        InvalidParameter: the target holds a library of that name with another model or dims.
        StoreUnavailable: either store cannot be reached.
    """
    record = source.get_library(library)
    try:
        existing = target.get_library(library, count=False)
    except LibraryNotFound:
        target.create_library(library, record.mode, record.model_id, record.dims)
    else:
        if existing.model_id != record.model_id or existing.dims != record.dims or existing.mode != record.mode:
            raise InvalidParameter(
                f"library '{library}' exists on {target_name} with another mode, model or embedding size"
            )
    total = record.image_count or 0
    copied = already = done = 0
    offset = 0
    fields = [f for f in FIELDS if f in record.dims]
    while True:
        page = source.list_images(library, offset=offset, limit=batch)
        if not page:
            break
        offset += len(page)
        ids = [image.image_id for image in page]
        present = target.existing_ids(library, ids)
        todo = [image for image in page if image.image_id not in present]
        if todo:
            todo_ids = [image.image_id for image in todo]
            vectors = {f: source.vectors(library, f, todo_ids) for f in fields}
            data = source.image_bytes(library, todo_ids)
            new = [
                NewImage(
                    image_id=image.image_id,
                    image_uri=image.image_uri,
                    tags=image.tags,
                    vectors={f: vectors[f][image.image_id] for f in fields if image.image_id in vectors[f]},
                    image_bytes=data.get(image.image_id),
                )
                for image in todo
            ]
            report = target.add_images(library, new, skip_existing=True)
            copied += len(report.added)
            already += len(report.skipped)
        already += len(present)
        done += len(page)
        if progress is not None:
            progress(done, max(total, done))
    return MigrationReport(copied=copied, already=already, total=max(total, done), target=target_name)


def describe(spec: str) -> str:
    """A store spec for display: ``embedded`` or ``milvus://host:port`` without the password."""
    return describe_store(spec)


def milvus_dir(settings: Settings, data_dir: Path | None = None) -> Path:
    """Where ``lookalike milvus start`` keeps the dev server: ``<data_dir>/milvus``."""
    return (data_dir or settings.data_dir) / "milvus"
