"""Thumbnails of stored images, for result grids: small JPEG / WebP renditions, cached in memory.

Results of a search never carry full originals for display (four 3.5 MB photos made 18.6 MB of
JSON); a page asks for ``thumbnail(library, image_id, size)`` per result instead, which the
browser caches by its ETag.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from ..errors import InvalidParameter, NotFound
from ..imaging import decode_image
from ..store import Store
from .validation import check_image_id, check_library_name

#: Bounds of ``size`` (pixels of the longest side). 1024 covers a detail view on a HiDPI screen.
MIN_SIZE, MAX_SIZE = 16, 1024
#: Formats a thumbnail is encoded in -> (Pillow format name, media type).
FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
#: Encoder quality: 80 is Pillow's WebP default and where JPEG artefacts stop showing at thumbnail size.
QUALITY = 80
#: Bytes of encoded thumbnails kept in memory (a 256 px JPEG is about 10-20 KB: thousands of them).
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Thumbnail:
    """An encoded thumbnail.

    Attributes:
        data: the encoded image bytes.
        media_type: ``image/jpeg`` or ``image/webp``.
        etag: a strong validator (quoted): a hash of the library, the id, the image's import
            time, the size and the format; an image re-imported under the same id gets another.
        width, height: pixels of the thumbnail (its longest side is ``min(size, original side)``).
    """

    data: bytes
    media_type: str
    etag: str
    width: int
    height: int


class ThumbnailService:
    """Thumbnails of a library's stored originals, with an LRU cache bounded in bytes.

    The cache key holds the image's import time (``ImageRecord.created_at``), so deleting an
    image and importing other bytes under the same id (or re-creating the library) never serves
    a stale thumbnail, and a hit or a revalidation costs one row lookup, not a read of the
    original (3.5 MB for a phone photo).

    Args:
        store: where the originals are (``Store.image_bytes``).
        max_pixels: decompression-bomb guard for decoding originals (``Settings.max_image_pixels``).
        cache_bytes: most bytes of encoded thumbnails kept in memory.
    """

    def __init__(self, store: Store, max_pixels: int, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._store = store
        self._max_pixels = max_pixels
        self._cache_bytes = cache_bytes
        self._cache: OrderedDict[str, Thumbnail] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def thumbnail(self, library: str, image_id: str, size: int = 256, fmt: str = "jpeg") -> Thumbnail:
        """The image scaled to fit ``size`` x ``size`` (aspect kept, never enlarged).

        Args:
            size: longest side in pixels, ``MIN_SIZE``..``MAX_SIZE``.
            fmt: ``jpeg`` or ``webp``.

        Raises:
            InvalidParameter: bad ``size``, ``format``, library name or image id (400).
            LibraryNotFound, ImageNotFound (404); NotFound (404, ``IMAGE_NOT_FOUND``) when the
                image has no stored original.
            InvalidImage: the stored original cannot be decoded (400).
        """
        check_library_name(library)
        check_image_id(image_id)
        if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
            raise InvalidParameter(f"size: must be an integer from {MIN_SIZE} to {MAX_SIZE}")
        if fmt not in FORMATS:
            raise InvalidParameter(f"format: must be one of {', '.join(FORMATS)}")
        record = self._store.get_image(library, image_id)  # LibraryNotFound / ImageNotFound
        key = hashlib.sha256(json.dumps([library, image_id, record.created_at, size, fmt]).encode()).hexdigest()[:32]
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        original = self._store.image_bytes(library, [image_id]).get(image_id)
        if original is None:  # a store may keep only the embeddings
            raise NotFound(
                f"Image '{image_id}' of library '{library}' has no stored original to make a thumbnail from.",
                status="IMAGE_NOT_FOUND",
            )
        made = self._render(original, key, size, fmt)
        with self._lock:
            if key not in self._cache and len(made.data) <= self._cache_bytes:
                self._cache[key] = made
                self._held += len(made.data)
                while self._held > self._cache_bytes:
                    _, old = self._cache.popitem(last=False)
                    self._held -= len(old.data)
        return made

    def _render(self, original: bytes, key: str, size: int, fmt: str) -> Thumbnail:
        picture = decode_image(original, field="image", max_pixels=self._max_pixels)
        picture.thumbnail((size, size), Image.Resampling.LANCZOS)  # in place, keeps the aspect, never enlarges
        pil_format, media_type = FORMATS[fmt]
        buf = io.BytesIO()
        picture.save(buf, format=pil_format, quality=QUALITY)
        return Thumbnail(
            data=buf.getvalue(), media_type=media_type, etag=f'"{key}"',
            width=picture.width, height=picture.height,
        )
