"""Vector search over one embedding field: :class:`VectorIndex` (exact scan + IVF-SQ8 candidates)."""

from .vector_index import SearchPath, VectorIndex

__all__ = ["SearchPath", "VectorIndex"]
