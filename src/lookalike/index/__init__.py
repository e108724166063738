"""Vector search over one embedding field: :class:`VectorIndex` (exact scan + HNSW)."""

from .vector_index import SearchPath, VectorIndex

__all__ = ["SearchPath", "VectorIndex"]
