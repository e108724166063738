"""Vector search over one embedding field: :class:`VectorIndex` (exact scan + HNSW)."""

from lookalike.index.vector_index import SearchPath, VectorIndex

__all__ = ["SearchPath", "VectorIndex"]
