"""Importing images: read and decode, embed in batches, store durably.

Decoding and storing overlap inference: a thread pool reads and decodes the next images
(Pillow releases the GIL while decoding) while ONNX Runtime embeds the current batch, and
each batch is committed in one SQLite transaction, so an acknowledged batch is durable and
a crash never leaves half an image.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
from PIL import Image

from ..config import Settings
from ..crops import main_item_crop
from ..errors import InvalidImage, InvalidParameter, LookalikeError
from ..imaging import decode_base64, decode_image
from ..models.base import Embedder
from ..store import NewImage, Store
from .adapter import Adapter
from .detection import ITEM_CROP_TYPE, DetectorProvider, default_detector
from .libraries import LibraryService
from .local_files import read_local_file
from .metrics import IMPORTED_IMAGES
from .validation import check_image_id, check_tags

log = logging.getLogger(__name__)

#: Images embedded per ONNX Runtime call.
BATCH_SIZE = 32


@dataclass
class ImportItem:
    """One image to import, as the API and the CLI's CSV/JSONL lines give it.

    The pixels come from ``image_base64``, else ``path``, else ``image_uri`` when that is a
    local file path or ``file://`` URI. ``image_uri`` is stored verbatim either way.
    ``where`` names the item in errors, e.g. ``images[3]`` or ``line 12``.
    """

    image_id: str | None = None
    image_uri: str | None = None
    image_base64: str | None = None
    path: str | None = None
    tags: dict[str, object] = field(default_factory=dict)
    where: str = "image"


@dataclass
class ImportOutcome:
    """What an import did. ``failed`` holds (item ``where``, message) for skipped bad items."""

    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Prepared:
    item: ImportItem
    image_id: str
    data: bytes
    pixels: np.ndarray  # (3, S, S) float32 model input


def read_image_bytes(item: ImportItem, max_bytes: int, roots: tuple[Path, ...] | None = None) -> bytes:
    """The encoded bytes of an item's image.

    Args:
        max_bytes: size limit, in bytes.
        roots: folders local files may be read from: ``None``: any (the operator);
            ``()``: none (an HTTP client without import roots). See ``local_files``.

    Raises:
        InvalidImage: no usable source, a file outside ``roots``, unreadable, not a regular
            file, or more than ``max_bytes`` bytes.
    """
    if item.image_base64 is not None:
        return decode_base64(item.image_base64, field=f"{item.where}.image_base64", max_bytes=max_bytes)
    if item.path:
        return read_local_file(Path(item.path).expanduser(), f"{item.where}.path", max_bytes, roots)
    if item.image_uri:
        field_name = f"{item.where}.image_uri"
        return read_local_file(local_uri_path(item.image_uri, field_name), field_name, max_bytes, roots)
    raise InvalidParameter(f"{item.where}: one of image_base64, path, or a local image_uri is required")


def local_uri_path(uri: str, field: str, alternative: str = "image_base64 or a path") -> Path:
    """The local file a plain path or ``file://`` URI names.

    Raises:
        InvalidImage: a remote URL (http, https, ...): the server never fetches those;
            the message suggests ``alternative`` instead.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # plain path (or a Windows drive)
        return Path(uri).expanduser()
    raise InvalidImage(
        f"{field}: '{uri}' is not a local file and this server does not fetch remote URLs; send {alternative}"
    )


class Importer:
    """Imports images into libraries (see module docstring).

    Args:
        libraries: resolves a library and its model.
        store: where images go.
        settings: byte and pixel limits.
        workers: decoding (and, for ``item_search``, detection) threads.
        detector: the item detector, loaded on the first ``item_search`` import; default
            ``lookalike.models.load_detector``.
        adapter: refits the library's ranking adaptation at the end of an import that added
            images, when due (``service.adapter``); ``None``: left to searches.
    """

    def __init__(
        self,
        libraries: LibraryService,
        store: Store,
        settings: Settings,
        workers: int = 2,
        detector: DetectorProvider | None = None,
        adapter: Adapter | None = None,
    ) -> None:
        self._adapter = adapter
        self._libraries = libraries
        self._store = store
        self._settings = settings
        self._workers = workers
        self._detector = detector or default_detector

    def _region(self, mode: str) -> Callable[[Image.Image], Image.Image] | None:
        """What of an imported image gets embedded: ``item_search`` embeds the main item's
        ``ITEM_CROP_TYPE`` crop (whole image when nothing is detected); ``None``: the whole
        image. Raises ``ModelUnavailable`` when ``item_search`` needs a missing detector."""
        if mode != "item_search":
            return None
        detector = self._detector()
        return lambda image: main_item_crop(image, detector, ITEM_CROP_TYPE)[0]

    def _prepare(
        self,
        item: ImportItem,
        model: Embedder,
        region: Callable[[Image.Image], Image.Image] | None = None,
        roots: tuple[Path, ...] | None = (),
    ) -> _Prepared:
        image_id = check_image_id(item.image_id, f"{item.where}.image_id") if item.image_id is not None else uuid.uuid4().hex
        if item.image_uri is not None and not isinstance(item.image_uri, str):
            raise InvalidParameter(f"{item.where}.image_uri: must be a string")
        item.tags = check_tags(item.tags, f"{item.where}.tags")
        data = read_image_bytes(item, self._settings.max_import_bytes, roots)
        # name the field the bytes came from (images[3].image_uri); a CLI path keeps its own name
        source = ".image_base64" if item.image_base64 is not None else "" if item.path else ".image_uri"
        image = decode_image(data, field=f"{item.where}{source}", max_pixels=self._settings.max_image_pixels)
        if region is not None:  # detection runs here, in the worker threads, beside decoding
            image = region(image)
        return _Prepared(item=item, image_id=image_id, data=data, pixels=model.preprocess(image))

    def import_items(
        self,
        library: str,
        items: Iterable[ImportItem],
        *,
        skip_existing: bool = False,
        atomic: bool = True,
        batch_size: int = BATCH_SIZE,
        progress: Callable[[int], None] | None = None,
        local_files: bool = False,
    ) -> ImportOutcome:
        """Import items into ``library``.

        Args:
            skip_existing: skip items whose ``image_id`` is stored already (resumable imports);
                otherwise such an item is an error.
            atomic: all or nothing: validate and embed every item first and store them in one
                transaction; the first bad item raises. Otherwise (the CLI) bad items are
                reported in ``failed`` and skipped, and every batch is committed as it goes.
            progress: called with the number of items finished after each batch.
            local_files: the operator's import (CLI): read any local file an item names.
                Otherwise (HTTP) only files inside ``Settings.import_roots``, none without them.

        In an ``item_search`` library each image's main item is detected and its
        ``ITEM_CROP_TYPE`` crop embedded; the whole image when nothing is detected.

        Raises:
            LibraryNotFound, ModelMismatch, ModelUnavailable (model or, for ``item_search``,
            item detector weights missing); with ``atomic``: InvalidParameter / InvalidImage
            naming the item and field, Conflict for an existing ``image_id``.
        """
        record = self._libraries.get(library, count=False)
        model = self._libraries.model_for(record)
        region = self._region(record.mode)
        outcome = ImportOutcome()
        pending: list[NewImage] = []
        roots = None if local_files else (self._settings.import_roots or ())
        with ThreadPoolExecutor(self._workers) as pool:
            for batch in _batched(self._prepared(items, model, pool, outcome, atomic, region, roots), batch_size):
                ids = [p.image_id for p in batch]
                if skip_existing:
                    existing = self._store.existing_ids(library, ids)
                    outcome.skipped += [i for i in ids if i in existing]
                    batch = [p for p in batch if p.image_id not in existing]
                if batch:
                    embeddings = model.embed_pixels(np.stack([p.pixels for p in batch]))
                    new = [
                        NewImage(
                            image_id=p.image_id,
                            image_uri=p.item.image_uri,
                            tags=p.item.tags,
                            vectors=_vectors(embeddings, i),
                            image_bytes=p.data,
                        )
                        for i, p in enumerate(batch)
                    ]
                    if atomic:
                        pending += new
                    else:
                        report = self._store.add_images(library, new, skip_existing=skip_existing)
                        outcome.added += report.added
                        outcome.skipped += report.skipped
                if progress is not None:
                    progress(len(ids))
        if atomic and pending:
            report = self._store.add_images(library, pending, skip_existing=skip_existing)
            outcome.added += report.added
            outcome.skipped += report.skipped
        for kind, count in (("added", len(outcome.added)), ("skipped", len(outcome.skipped)),
                            ("failed", len(outcome.failed))):
            IMPORTED_IMAGES.labels(library=library, outcome=kind).inc(count)
        if outcome.added and self._adapter is not None:
            try:  # after the commit: the images are stored whatever happens here
                self._adapter.refresh(library)
            except Exception:  # noqa: BLE001 - searches rank by the previous fit and retry the refit
                log.warning("library %s: adaptation refit after import failed", library, exc_info=True)
        return outcome

    def _prepared(
        self,
        items: Iterable[ImportItem],
        model: Embedder,
        pool: ThreadPoolExecutor,
        outcome: ImportOutcome,
        atomic: bool,
        region: Callable[[Image.Image], Image.Image] | None = None,
        roots: tuple[Path, ...] | None = (),
    ) -> Iterator[_Prepared]:
        # Keep a bounded window of decodes in flight so decoding runs ahead of inference
        # without holding a whole folder of pixels in memory.
        window: list[tuple[ImportItem, Future[_Prepared]]] = []
        it = iter(items)
        for item in islice(it, 4 * BATCH_SIZE):
            window.append((item, pool.submit(self._prepare, item, model, region, roots)))
        while window:
            item, future = window.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                window.append((nxt, pool.submit(self._prepare, nxt, model, region, roots)))
            try:
                yield future.result()
            except LookalikeError as exc:
                if atomic:
                    for _, f in window:
                        f.cancel()
                    raise
                outcome.failed.append((item.where, exc.message))


def _vectors(embeddings, i: int) -> dict[str, np.ndarray]:
    vectors = {"visual": embeddings.visual[i]}
    if embeddings.semantic is not None:
        vectors["semantic"] = embeddings.semantic[i]
    return vectors


def _batched(items: Iterable[_Prepared], size: int) -> Iterator[list[_Prepared]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
