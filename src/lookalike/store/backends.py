"""Open the store a ``LOOKALIKE_STORE`` value names: ``embedded`` or a Milvus URI."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from .base import Store
from .embedded import EmbeddedStore
from .post_index import AnnPostIndex, PostIndex

__all__ = ["EMBEDDED", "describe_store", "open_post_index", "open_store"]

EMBEDDED = "embedded"


def open_store(spec: str, *, db_path: Path, index_dir: Path, bytes_path: Path) -> Store:
    """The store for ``spec``.

    Args:
        spec: ``embedded`` or ``milvus://HOST:PORT...`` (``store/milvus_uri.py``).
        db_path, index_dir: the embedded store's SQLite file and saved indexes.
        bytes_path: the SQLite file of original image bytes of Milvus libraries.

    Raises:
        ValueError: ``spec`` is neither (the message names the rule).
        RuntimeError: a Milvus URI without the optional extra installed.
    """
    if spec == EMBEDDED:
        return EmbeddedStore(db_path, index_dir)
    from .milvus_uri import parse_milvus_uri

    target = parse_milvus_uri(spec)
    try:
        with warnings.catch_warnings():  # pymilvus 2.3 imports the deprecated pkg_resources
            warnings.simplefilter("ignore", UserWarning)
            import pymilvus  # noqa: F401
    except ImportError:
        raise RuntimeError("LOOKALIKE_STORE names Milvus: install the extra, pip install -e '.[milvus]'") from None
    from .milvus import MilvusStore

    return MilvusStore(target, bytes_path)


def describe_store(spec: str) -> str:
    """A display name for a store spec: ``embedded`` or the Milvus URI without its password."""
    if spec == EMBEDDED:
        return EMBEDDED
    from .milvus_uri import parse_milvus_uri

    return parse_milvus_uri(spec).display()


def open_post_index(store: Store) -> PostIndex:
    """The candidate stage of creator search for ``store``'s backend: ``MilvusPostIndex`` (the
    posts' embeddings copied to Milvus; profiles stay in ``creators.db``) on a ``MilvusStore``,
    else ``AnnPostIndex`` (in-process IVFs)."""
    milvus = sys.modules.get(f"{__package__}.milvus")  # loaded by open_store for a Milvus URI
    if milvus is not None and isinstance(store, milvus.MilvusStore):
        from .milvus_posts import MilvusPostIndex

        return MilvusPostIndex(store)
    return AnnPostIndex()
