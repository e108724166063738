"""The contract every embedding model implements.

A model turns decoded RGB images into embeddings for image queries (``visual``) and,
where it supports text search, for text queries (``semantic``); and turns query texts
into vectors comparable with ``semantic``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ScoreCalibration:
    """Knots of a monotone piecewise-linear map from cosine similarity to a 0..1 score.

    ``cosines`` is strictly increasing in [-1, 1]; ``scores`` is non-decreasing in [0, 1],
    same length. Values outside the knots are clamped. See ``lookalike.scoring``.
    """

    cosines: tuple[float, ...]
    scores: tuple[float, ...]


@dataclass(frozen=True)
class ModelInfo:
    """What a library records about the model it was built with.

    Attributes:
        model_id: registry id, e.g. ``efficientnet-lite0`` or ``clip:/models/vit-b-32``.
        image_dim: size of the ``visual`` embedding (image queries).
        text_dim: size of the ``semantic`` embedding (text queries); ``None`` if the model
            has no text search.
        shared_space: True when text and image embeddings share one space (CLIP-style);
            then ``semantic`` is not stored separately and text queries search ``visual``.
        input_size: square input side of the image tower, in pixels.
    """

    model_id: str
    image_dim: int
    text_dim: int | None
    shared_space: bool
    input_size: int
    image_calibration: ScoreCalibration
    text_calibration: ScoreCalibration | None


@dataclass
class ImageEmbeddings:
    """Embeddings of a batch of n images.

    Attributes:
        visual: (n, image_dim) float32, L2-normalised.
        semantic: (n, text_dim) float32, L2-normalised; ``None`` for shared-space models.
    """

    visual: np.ndarray
    semantic: np.ndarray | None


class Embedder(Protocol):
    """An image (and text) embedding model running on ONNX Runtime."""

    info: ModelInfo

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB image -> (3, S, S) float32 model input, S = ``info.input_size``."""
        ...

    def embed_pixels(self, batch: np.ndarray) -> ImageEmbeddings:
        """(n, 3, S, S) float32 preprocessed batch -> embeddings. Batches internally."""
        ...

    def embed_images(self, images: Sequence[Image.Image]) -> ImageEmbeddings:
        """RGB images -> embeddings (``preprocess`` then ``embed_pixels``)."""
        ...

    def text_calibration_for(self, text: str) -> ScoreCalibration | None:
        """The cosine -> score knots for the query ``text`` (``info.text_calibration`` unless
        the model embeds some texts on another scale, e.g. non-English ones); ``None`` when the
        model has no text search."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Query texts -> (n, text_dim) float32, L2-normalised, comparable with ``semantic``
        (or with ``visual`` for shared-space models).

        Raises:
            ModeNotSupported: the model has no text search.
        """
        ...
