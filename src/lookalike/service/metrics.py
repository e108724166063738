"""The service layer's Prometheus instruments: search latency, imports, model inference time.

One ``REGISTRY`` for the process (``prometheus-client``'s own pattern: instruments are module
globals, so every ``Runtime`` and app in the process adds to the same series; counters only
ever grow). ``GET /metrics`` (``api/observability.py``) exposes it in the Prometheus text format,
together with the HTTP instruments registered there and gauges read at scrape time (index
sizes). Labels are bounded: ``library`` is only ever a library that exists (a search or import
is counted after the library was found), ``model`` a model id the operator configured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = [
    "REGISTRY", "SEARCH_SECONDS", "IMPORTED_IMAGES", "IMPORTED_CREATORS", "INFERENCE_SECONDS",
    "observe_search", "timed_models", "timed_detector",
]  # fmt: skip

REGISTRY = CollectorRegistry(auto_describe=True)

#: Latency buckets, seconds: from sub-millisecond index hits to multi-second segmented queries.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

SEARCH_SECONDS = Histogram(
    "lookalike_search_duration_seconds",
    "Search latency inside the service (decode + detect + embed + rank), by library and query kind.",
    ["library", "query"], buckets=LATENCY_BUCKETS, registry=REGISTRY,
)
IMPORTED_IMAGES = Counter(
    "lookalike_imported_images_total",
    "Images an import handled, by library and outcome (added, skipped: already stored, failed).",
    ["library", "outcome"], registry=REGISTRY,
)
IMPORTED_CREATORS = Counter(
    "lookalike_imported_creators_total",
    "Creator lines an import handled, by outcome (imported, unchanged, failed).",
    ["outcome"], registry=REGISTRY,
)
INFERENCE_SECONDS = Histogram(
    "lookalike_model_inference_seconds",
    "Time of one model call (a batch), by model and task (image, text, detect).",
    ["model", "task"], buckets=LATENCY_BUCKETS, registry=REGISTRY,
)


def observe_search(library: str, query: str, started: float) -> None:
    """Record a search of ``library`` that began at ``started`` (``time.perf_counter()``).

    Args:
        query: the kind of query: ``image``, ``text`` or ``creators``.
    """
    SEARCH_SECONDS.labels(library=library, query=query).observe(time.perf_counter() - started)


@contextmanager
def _timed(model: str, task: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        INFERENCE_SECONDS.labels(model=model, task=task).observe(time.perf_counter() - started)


class _TimedModel:
    """An embedding model whose ``embed_images`` / ``embed_pixels`` / ``embed_texts`` calls are
    timed into ``INFERENCE_SECONDS``; every other attribute is the model's own. (A model's own
    internal calls bypass the wrapper, so no call is counted twice.)"""

    def __init__(self, model: Any, model_id: str) -> None:
        self._model = model
        self._model_id = model_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def embed_images(self, *args: Any, **kwargs: Any) -> Any:
        with _timed(self._model_id, "image"):
            return self._model.embed_images(*args, **kwargs)

    def embed_pixels(self, *args: Any, **kwargs: Any) -> Any:  # imports: preprocessed batches
        with _timed(self._model_id, "image"):
            return self._model.embed_pixels(*args, **kwargs)

    def embed_texts(self, *args: Any, **kwargs: Any) -> Any:
        with _timed(self._model_id, "text"):
            return self._model.embed_texts(*args, **kwargs)


class _TimedDetector:
    """An item detector whose ``detect`` calls are timed into ``INFERENCE_SECONDS``."""

    def __init__(self, detector: Any) -> None:
        self._detector = detector

    def __getattr__(self, name: str) -> Any:
        return getattr(self._detector, name)

    def detect(self, *args: Any, **kwargs: Any) -> Any:
        with _timed(str(getattr(self._detector, "model_id", "detector")), "detect"):
            return self._detector.detect(*args, **kwargs)


def timed_models(models: Callable[[str], Any]) -> Callable[[str], Any]:
    """A model provider (model id -> model) whose models' inference is timed."""

    def provide(model_id: str) -> Any:
        return _TimedModel(models(model_id), model_id)

    return provide


def timed_detector(detector: Callable[[], Any]) -> Callable[[], Any]:
    """A detector provider whose detector's ``detect`` is timed."""
    return lambda: _TimedDetector(detector())
