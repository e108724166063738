"""Model registry: ids -> ``Embedder`` instances, one per (id, cache dir) per process.

Ids (an id's embeddings never change: libraries store them):
    ``efficientnet-lite0-multilingual`` (default), ``efficientnet-lite1-multilingual``,
    ``efficientnet-lite2-multilingual``: EfficientNet-Lite + ConSE text search in English
        MiniLM | multilingual e5, 768-d (``lookalike.models.efficientnet``,
        ``lookalike.models.text_space``).
    ``efficientnet-lite0``, ``efficientnet-lite1``, ``efficientnet-lite2``: the same image
        embeddings, ConSE in English MiniLM alone, 384-d: the ids as they were before the
        multilingual text space, kept for the libraries built with them.
    ``clip:/abs/path/to/folder`` or ``clip:org/name``: a CLIP/SigLIP checkpoint from a
        local folder or the local Hugging Face cache (``lookalike.models.clip``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelUnavailable
from .base import Embedder, ImageEmbeddings, ModelInfo, ScoreCalibration
from .clip import CLIP_PREFIX
from .efficientnet import DEFAULT_MODEL_ID, MODELS, image_only_model_id, variant_installed

__all__ = [
    "DEFAULT_MODEL_ID",
    "Embedder",
    "ImageEmbeddings",
    "ModelInfo",
    "ScoreCalibration",
    "available_model_ids",
    "image_only_model_id",
    "load_detector",
    "load_model",
]

_lock = threading.Lock()
# One lock per key so two different models can load concurrently while a second
# request for the same model waits for the first load instead of duplicating it.
_key_locks: dict[tuple[str, str], threading.Lock] = {}
_instances: dict[tuple[str, str], Embedder] = {}
_text_spaces: dict[tuple[str, str], TextSpace] = {}
_minilm: dict[str, MiniLMEncoder] = {}


def load_model(model_id: str, cache_dir: Path) -> Embedder:
    """The shared ``Embedder`` for ``model_id``, loading (and on first use exporting) it.

    Thread-safe; a model is loaded once per process and ``cache_dir``. The first load of
    an EfficientNet id exports ONNX graphs (about 20-40 s, needs torch); later processes
    load the cached graphs in about a second.

    Args:
        model_id: see the module docstring.
        cache_dir: ONNX cache root, normally ``Settings.model_cache_dir``.

    Raises:
        ModelUnavailable: unknown id, weights not installed / not found locally, or the
            ONNX export failed its numerical check.
    """
    key = (model_id, str(Path(cache_dir).resolve()))
    with _lock:
        inst = _instances.get(key)
        if inst is not None:
            return inst
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        with _lock:
            inst = _instances.get(key)
        if inst is None:
            inst = _build(model_id, Path(cache_dir))
            with _lock:
                _instances[key] = inst
    return inst


def _build(model_id: str, cache_dir: Path) -> Embedder:
    if model_id in MODELS:
        from .efficientnet import EfficientNetConSE

        space = _text_space(MODELS[model_id].text_space, cache_dir)
        return EfficientNetConSE(model_id, cache_dir, text_encoder=space)
    if model_id.startswith(CLIP_PREFIX):
        from .clip import ClipEmbedder

        return ClipEmbedder(model_id, cache_dir)
    raise ModelUnavailable(
        f"unknown model '{model_id}'; known: {', '.join(available_model_ids())}, "
        f"or '{CLIP_PREFIX}/path/to/folder' / '{CLIP_PREFIX}org/name'"
    )


def _text_space(kind: str, cache_dir: Path) -> TextSpace:
    """One ConSE text space of each kind per cache dir, shared by the EfficientNet variants;
    both kinds share one MiniLM encoder."""
    from .text_encoder import MiniLMEncoder
    from .text_space import build_text_space

    key = str(cache_dir.resolve())
    with _lock:
        space = _text_spaces.get((kind, key))
        minilm = _minilm.get(key)
    if space is None:
        if minilm is None:
            minilm = MiniLMEncoder(cache_dir)
            with _lock:
                minilm = _minilm.setdefault(key, minilm)
        space = build_text_space(kind, cache_dir, minilm)
        with _lock:
            space = _text_spaces.setdefault((kind, key), space)
    return space


def available_model_ids() -> list[str]:
    """Built-in model ids whose weights packages are installed, default first.

    ``clip:`` ids are not listed: they name folders or Hugging Face cache entries.
    """
    return [m for m in MODELS if variant_installed(m)]


if TYPE_CHECKING:  # pragma: no cover
    from .detector import U2NetpDetector
    from .text_encoder import MiniLMEncoder
    from .text_space import TextSpace

_detectors: dict[str, U2NetpDetector] = {}


def load_detector(model_path: Path | None = None) -> U2NetpDetector:
    """The shared U²-Netp item detector (``lookalike.models.detector.U2NetpDetector``) for
    the weights at ``model_path`` (default: ``$LOOKALIKE_U2NETP``, else the copy that
    ``scripts/setup.sh`` installs in the venv); one instance per file per process, thread-safe.

    Raises:
        ModelUnavailable: the weights are not installed or cannot be loaded.
    """
    from .detector import U2NetpDetector, u2netp_path

    key = str(u2netp_path(model_path).resolve())
    with _lock:
        det = _detectors.get(key)
        if det is not None:
            return det
        key_lock = _key_locks.setdefault(("detector", key), threading.Lock())
    with key_lock:
        with _lock:
            det = _detectors.get(key)
        if det is None:
            det = U2NetpDetector(Path(key))
            with _lock:
                _detectors[key] = det
    return det
