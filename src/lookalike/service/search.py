"""Search a library by an image or by a text.

Image queries may be segmented: the item detector finds up to ``MAX_SEGMENTS`` items in the
query, each item's crop is searched on its own, and the ranked lists are merged by
``interleave`` (de-duplicated, round-robin over the segments, so no item starves the others).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from ..config import Settings
from ..crops import check_crop_type
from ..errors import InvalidImage, InvalidParameter, ModeNotSupported
from ..filters import parse_filter
from ..imaging import decode_image
from ..models.detector import Detection
from ..scoring import to_score
from ..store import Hit, Store
from .detection import DetectorProvider, default_detector, item_crop
from .libraries import LibraryService
from .validation import check_library_name, check_top_k

MAX_QUERY_TEXT_CHARS = 1000
#: Most items a segmented query searches (the detector's main items, largest first).
MAX_SEGMENTS = 5
#: Largest ``top_k`` of ``search_image`` (the Constructor-style endpoint pages through
#: results); ``by_image`` and ``by_text`` keep 1..100.
MAX_IMAGE_TOP_K = 1000


@dataclass(frozen=True)
class SearchResult:
    """One ranked image. ``score`` in 0..1 (see ``lookalike.scoring``); ``image_bytes``
    (the stored image, encoded as imported) is set only when asked for; ``segment``: index of the query segment whose search found
    it (``SegmentMatch.index``), ``None`` for a query without segments."""

    image_id: str
    image_uri: str | None
    score: float
    tags: dict[str, object]
    image_bytes: bytes | None = None
    segment: int | None = None


@dataclass(frozen=True)
class SegmentMatch:
    """One item of a segmented query and its own results.

    Attributes:
        index: 0-based, the main item first (the detector's order).
        bbox: (x, y, width, height) in pixels of the query image as sent.
        mask_area: pixels of the item's mask, in pixels of the query image as sent.
        label: the detector's class name; ``None`` for U²-Netp and for the whole-image fallback.
        score: detector confidence in 0..1; 0.0 for the whole-image fallback segment.
        results: this segment's ranked results (each with ``segment == index``).
    """

    index: int
    bbox: tuple[int, int, int, int]
    mask_area: int
    label: str | None
    score: float
    results: list[SearchResult]


@dataclass(frozen=True)
class ImageQueryResult:
    """What ``SearchService.search_image`` returns.

    Attributes:
        results: the ranked results: with segmentation, the segments' results merged by
            ``interleave``; otherwise those of the plain query.
        segments: the query's segments and their results, only when ``return_segments``.
    """

    results: list[SearchResult]
    segments: list[SegmentMatch] | None = None


def interleave(per_segment: list[list[SearchResult]], top_k: int) -> list[SearchResult]:
    """Merge the ranked results of several segments into one list of at most ``top_k``.

    Rule: (1) de-duplicate by ``image_id``: an image found by several segments stays only
    in the list of the segment that gave it the highest score (ties: the lower segment
    index), with that score and ``segment``; (2) round-robin: round r takes the r-th
    remaining result of every segment that has one, and orders that round by score,
    descending (ties: the lower segment index); rounds follow each other until ``top_k``.
    So among the first n x k results every one of n segments has k of its own (while it has
    results), whatever the scale of its scores: a score-sorted merge would let the segment
    with the most similar catalogue fill the whole page.
    """
    best: dict[str, tuple[float, int]] = {}
    for index, results in enumerate(per_segment):
        for r in results:
            if r.image_id not in best or r.score > best[r.image_id][0]:
                best[r.image_id] = (r.score, index)
    queues = [[r for r in results if best[r.image_id][1] == index] for index, results in enumerate(per_segment)]
    merged: list[SearchResult] = []
    for rank in range(max((len(q) for q in queues), default=0)):
        round_ = [q[rank] for q in queues if rank < len(q)]
        merged += sorted(round_, key=lambda r: -r.score)  # stable: ties keep segment order
        if len(merged) >= top_k:
            break
    return merged[:top_k]


class SearchService:
    """Image and text queries over libraries.

    Args:
        libraries: resolves libraries and their models.
        store: the vector store.
        settings: query size limits.
    """

    def __init__(
        self, libraries: LibraryService, store: Store, settings: Settings, detector: DetectorProvider | None = None
    ) -> None:
        self._libraries = libraries
        self._store = store
        self._settings = settings
        self._detector = detector or default_detector

    def by_image(
        self,
        library_name: str,
        image: bytes,
        top_k: int = 10,
        tag_filter: object = None,
        return_image_bytes: bool = False,
        *,
        field: str = "image",
    ) -> list[SearchResult]:
        """Images most similar to a query image: ``search_image`` without segmentation.

        Args:
            image: encoded JPEG / PNG / WebP / GIF, at most ``max_query_bytes`` bytes.
            top_k: 1..100 results.
            tag_filter: the filter language of ``lookalike.filters`` (raw JSON).
            field: the request field or option that carried ``image``, named in errors.

        Raises:
            as ``search_image``.
        """
        check_library_name(library_name)
        top_k = check_top_k(top_k)
        found = self.search_image(
            library_name, image, field=field, top_k=top_k, tag_filter=tag_filter,
            return_image_bytes=return_image_bytes,
        )
        return found.results

    def search_image(
        self,
        library_name: str,
        image: bytes,
        *,
        field: str = "image",
        top_k: int = 10,
        tag_filter: object = None,
        use_segmentation: bool = False,
        crop_type: str = "bbox",
        return_segments: bool = False,
        return_image_bytes: bool = False,
    ) -> ImageQueryResult:
        """Images most similar to a query image, optionally item by item.

        The plain query embeds the main item's ``crop_type`` crop in an ``item_search``
        library (the whole image when nothing is detected) and the whole image in a
        ``general_search`` one. ``use_segmentation``: the detector finds up to
        ``MAX_SEGMENTS`` items; each one's crop is embedded (one batch) and searched with
        the same ``tag_filter``; ``results`` merges them by ``interleave``. When nothing is
        detected, one segment covers the whole image (label ``None``, score 0.0).
        ``return_segments`` returns the segments and their own results; without
        ``use_segmentation`` the segments are detected and searched all the same, and
        ``results`` stays the plain query.

        Args:
            image: the encoded query image (JPEG / PNG / WebP / GIF), at most
                ``max_query_bytes`` bytes.
            field: the request field that carried ``image``, named in errors.
            top_k: 1..1000 results, for the merged list and for every segment.
            tag_filter: the filter language of ``lookalike.filters`` (raw JSON).
            crop_type: ``bbox`` (the item's box, ``detection.QUERY_CROP_MARGIN``) or
                ``segment`` (the box with the background outside the item's mask greyed out).

        Raises:
            InvalidParameter (400: naming ``top_k``, ``search_crop_type``,
            ``use_segmentation``, ...), InvalidImage (400, naming ``field``), InvalidFilter
            (400), LibraryNotFound (404), ModelMismatch, ModelUnavailable (400: the
            embedding model or, when detection is needed, the detector weights missing).
        """
        check_library_name(library_name)
        top_k = check_top_k(top_k, maximum=MAX_IMAGE_TOP_K)
        for name, flag in (("use_segmentation", use_segmentation), ("return_segments", return_segments),
                           ("return_image_bytes", return_image_bytes)):
            _check_flag(flag, name)
        check_crop_type(crop_type)
        node = parse_filter(tag_filter)
        library = self._libraries.get(library_name, count=False)
        picture = self._decode(image, field)
        model = self._libraries.model_for(library)
        main, regions = self._regions(picture, library.mode, use_segmentation or return_segments)
        queries = regions if use_segmentation else [main, *regions]  # the plain query first
        vectors = model.embed_images([item_crop(picture, d, crop_type) for d in queries]).visual
        ranked = [self._ranked(library_name, v, top_k, node, model.info.image_calibration) for v in vectors]
        per_segment = [[replace(r, segment=i) for r in rs] for i, rs in enumerate(ranked[len(ranked) - len(regions):])]
        results = interleave(per_segment, top_k) if use_segmentation else ranked[0]
        segments = None
        if return_segments:
            scale = _scale(image, picture)
            segments = [_segment(i, d, picture, scale, rs) for i, (d, rs) in enumerate(zip(regions, per_segment))]
        if return_image_bytes:
            results, segments = self._with_bytes(library_name, results, segments)
        return ImageQueryResult(results=results, segments=segments)

    def by_text(
        self,
        library_name: str,
        query_text: str,
        top_k: int = 10,
        tag_filter: object = None,
        return_image_bytes: bool = False,
    ) -> list[SearchResult]:
        """Images that match a text description (``general_search`` libraries only).

        Raises:
            ModeNotSupported: the library is in ``item_search`` mode, or its model has no
                text tower. Otherwise as ``by_image``.
        """
        check_library_name(library_name)
        top_k = check_top_k(top_k)
        if not isinstance(query_text, str) or not query_text.strip():
            raise InvalidParameter("query_text: must be a non-empty string")
        if len(query_text) > MAX_QUERY_TEXT_CHARS:
            raise InvalidParameter(f"query_text: at most {MAX_QUERY_TEXT_CHARS} characters")
        node = parse_filter(tag_filter)
        library = self._libraries.get(library_name, count=False)
        if library.mode != "general_search":
            raise ModeNotSupported(
                f"Image library '{library_name}' is in {library.mode} mode and does not support text-to-image search."
            )
        model = self._libraries.model_for(library)
        if model.info.text_dim is None or model.info.text_calibration is None:
            raise ModeNotSupported(f"Model '{library.model_id}' of library '{library_name}' has no text search.")
        query = model.embed_texts([query_text.strip()])[0]
        field = "visual" if model.info.shared_space else "semantic"
        hits = self._store.search(library_name, field, query, top_k, node)
        return self._results(library_name, hits, model.info.text_calibration, return_image_bytes)

    def _regions(
        self, picture: Image.Image, mode: str, segmented: bool
    ) -> tuple[Detection | None, list[Detection | None]]:
        """(the plain query's region, the segments' regions); ``None`` is the whole image.

        The plain query's region is the main item in ``item_search`` (whole image when
        nothing is detected), the whole image in ``general_search``. Segments: up to
        ``MAX_SEGMENTS`` detected items, or one whole-image segment; none unless
        ``segmented``. The detector runs (once) only when one of them needs it.
        """
        detections: list[Detection] = []
        if segmented or mode == "item_search":
            detections = self._detector().detect(picture, max_items=MAX_SEGMENTS if segmented else 1)
        main = detections[0] if detections and mode == "item_search" else None
        return main, ((list(detections) or [None]) if segmented else [])

    def _results(self, library: str, hits: list[Hit], calibration, with_bytes: bool) -> list[SearchResult]:
        results = _scored(hits, calibration)
        return self._with_bytes(library, results, None)[0] if with_bytes else results

    def _ranked(self, library: str, query: np.ndarray, top_k: int, node, calibration) -> list[SearchResult]:
        return _scored(self._store.search(library, "visual", query, top_k, node), calibration)

    def _decode(self, data: bytes, field: str) -> Image.Image:
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise InvalidImage(f"{field}: must be a non-empty image file")
        if len(data) > self._settings.max_query_bytes:
            raise InvalidImage(
                f"{field}: image is {len(data)} bytes, larger than the limit of {self._settings.max_query_bytes} bytes"
            )
        return decode_image(bytes(data), field=field, max_pixels=self._settings.max_image_pixels)

    def _with_bytes(
        self, library: str, results: list[SearchResult], segments: list[SegmentMatch] | None
    ) -> tuple[list[SearchResult], list[SegmentMatch] | None]:
        """``results`` and ``segments`` with each result's stored image bytes (one read)."""
        ids = {r.image_id for r in results} | {r.image_id for s in segments or () for r in s.results}
        blobs = self._store.image_bytes(library, sorted(ids)) if ids else {}

        def attach(rs: list[SearchResult]) -> list[SearchResult]:
            return [replace(r, image_bytes=blobs.get(r.image_id)) for r in rs]

        if segments is not None:
            segments = [replace(s, results=attach(s.results)) for s in segments]
        return attach(results), segments


def _scored(hits: list[Hit], calibration) -> list[SearchResult]:
    scores = to_score(np.array([h.similarity for h in hits], dtype=np.float32), calibration)
    return [
        SearchResult(image_id=h.image.image_id, image_uri=h.image.image_uri, score=round(float(s), 6), tags=h.image.tags)
        for h, s in zip(hits, scores)
    ]


def _check_flag(value: object, field: str) -> None:
    if not isinstance(value, bool):
        raise InvalidParameter(f"{field}: must be true or false")


def _scale(data: bytes, picture: Image.Image) -> tuple[float, float]:
    """(x, y) factors from the decoded ``picture`` to the query image as sent: large JPEGs
    are decoded at 1/2..1/8 size (``imaging.DRAFT_MIN_SIDE``); EXIF orientation is applied."""
    with Image.open(io.BytesIO(data)) as raw:
        width, height = raw.size
        if raw.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees: sides swap
            width, height = height, width
    return width / picture.width, height / picture.height


def _segment(
    index: int, detection: Detection | None, picture: Image.Image, scale: tuple[float, float], results: list[SearchResult]
) -> SegmentMatch:
    sx, sy = scale
    if detection is None:  # the whole-image fallback
        box, area, label, score = (0, 0, picture.width, picture.height), picture.width * picture.height, None, 0.0
    else:
        box, area, label, score = detection.bbox, detection.mask_area, detection.label, detection.score
    x, y, w, h = box
    bbox = (round(x * sx), round(y * sy), max(1, round(w * sx)), max(1, round(h * sy)))
    return SegmentMatch(
        index=index, bbox=bbox, mask_area=round(area * sx * sy), label=label, score=round(float(score), 6),
        results=results,
    )
