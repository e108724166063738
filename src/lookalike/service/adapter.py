"""Keeps each library's ranking adaptation (``service.adaptation``) fitted, saved and at hand.

Rules:
- a library is adapted once it holds ``MIN_IMAGES`` images (below: plain cosine, exactly
  as before); the kind follows its mode (``KIND_BY_MODE``);
- the fit is refitted when the image count moved by more than ``REFIT_CHANGE`` of the count
  it was fitted at, from a sample of at most ``SAMPLE_ROWS`` rows;
- fitting never runs on a search: an import refits at its end (``refresh``), and a search
  that finds its library unchecked for ``CHECK_EVERY_S`` (imports by another process,
  deletions) starts a background check; until a refit lands the previous fit (or none) serves;
- the fit is saved through the ``Store`` (it survives restarts and is deleted with the
  library); a store that cannot sample (Milvus) leaves libraries unadapted.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from ..errors import LibraryNotFound
from ..store import LibraryRecord, Store
from .adaptation import Adaptation, fit, from_bytes, to_bytes

log = logging.getLogger(__name__)

#: Fewest images a library needs before it is adapted: a mean of fewer photos is noisy and
#: the quantile calibration needs pairs.
MIN_IMAGES = 200
#: Rows sampled for a fit (a covariance of 20k x 1280 is ~2 s on 2 cores).
SAMPLE_ROWS = 20_000
#: Refit when the image count changed by more than this share since the fit.
REFIT_CHANGE = 0.25
#: A search rechecks its library's count in the background at most this often.
CHECK_EVERY_S = 30.0
#: Adaptation by library mode: centring helps category and instance search alike;
#: whitening helps instance search only (README, "Image→image ranking").
KIND_BY_MODE = {"general_search": "centre", "item_search": "whiten"}
FIELD = "visual"


@dataclass
class _Entry:
    created_at: float
    adaptation: Adaptation | None
    checked_at: float


class Adapter:
    """The current adaptation of each library's ``visual`` field.

    Args:
        store: where fits are read, sampled from and saved.
        min_images, sample_rows, check_every_s: see the module constants.
    """

    def __init__(self, store: Store, *, min_images: int = MIN_IMAGES, sample_rows: int = SAMPLE_ROWS,
                 check_every_s: float = CHECK_EVERY_S) -> None:
        self._store = store
        self._min_images = min_images
        self._sample_rows = sample_rows
        self._check_every_s = check_every_s
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._fitting: dict[str, threading.Lock] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._closed = False

    def current(self, library: LibraryRecord) -> Adaptation | None:
        """The library's adaptation for a search (``None``: plain cosine). Never fits: loads
        the saved fit on first use and schedules a background check when one is due."""
        with self._lock:
            entry = self._entries.get(library.name)
        if entry is None or entry.created_at != library.created_at:
            raw = self._store.adaptation(library.name, FIELD)
            entry = _Entry(library.created_at, _decoded(raw, library.name), checked_at=0.0)
            with self._lock:
                self._entries[library.name] = entry
        if time.monotonic() - entry.checked_at >= self._check_every_s:
            entry.checked_at = time.monotonic()
            self._in_background(library.name)
        return entry.adaptation

    def refresh(self, library: str) -> Adaptation | None:
        """Refit ``library`` now if due (see the module rules) and return its adaptation.

        Raises:
            LibraryNotFound: no such library.
        """
        with self._lock:
            fitting = self._fitting.setdefault(library, threading.Lock())
        with fitting:  # one fit per library at a time; a second caller sees the first's result
            record = self._store.get_library(library, count=True)
            with self._lock:
                entry = self._entries.get(library)
            if entry is None or entry.created_at != record.created_at:
                entry = _Entry(record.created_at, _decoded(self._store.adaptation(library, FIELD), library), 0.0)
            entry.checked_at = time.monotonic()
            n = record.image_count or 0
            kind = KIND_BY_MODE.get(record.mode)
            old = entry.adaptation
            if kind is None or n < self._min_images:
                new = None
            elif old is None or old.kind != kind or abs(n - old.images) > REFIT_CHANGE * old.images:
                new = self._fit(library, kind, n)
            else:
                new = old
            if new is not old:
                self._store.save_adaptation(library, FIELD, None if new is None else to_bytes(new))
            entry.adaptation = new
            with self._lock:
                self._entries[library] = entry
            return new

    def _fit(self, library: str, kind: str, images: int) -> Adaptation | None:
        sample = self._store.sample_vectors(library, FIELD, self._sample_rows)
        if len(sample) < min(self._min_images, images):  # the store cannot sample (Milvus)
            return None
        started = time.perf_counter()
        fitted = fit(sample, kind, images)
        log.info("library %s: %s adaptation fitted on %d of %d images in %.2f s",
                 library, kind, len(sample), images, time.perf_counter() - started)
        return fitted

    def _in_background(self, library: str) -> None:
        with self._lock:
            running = self._threads.get(library)
            if self._closed or (running is not None and running.is_alive()):
                return

            def run() -> None:
                try:
                    self.refresh(library)
                except LibraryNotFound:
                    pass
                except Exception:  # noqa: BLE001 - ranking falls back to the old fit or plain cosine
                    log.warning("library %s: adaptation refit failed", library, exc_info=True)

            thread = threading.Thread(target=run, name=f"lookalike-adapt-{library}", daemon=True)
            self._threads[library] = thread
            thread.start()

    def close(self) -> None:
        """Wait for background refits (call before closing the store)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads.values())
        for thread in threads:
            thread.join()


def _decoded(raw: bytes | None, library: str) -> Adaptation | None:
    if raw is None:
        return None
    try:
        return from_bytes(raw)
    except ValueError:
        log.warning("library %s: saved adaptation unreadable; plain cosine until the next refit", library)
        return None
