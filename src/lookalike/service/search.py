"""Search a library by an image or by a text.

Image queries may be segmented: the item detector finds up to ``MAX_SEGMENTS`` items in the
query, each item's crop is searched on its own, and the ranked lists are merged by
``interleave`` (de-duplicated, round-robin over the segments, so no item starves the others).

An image query may carry a text (hybrid query, ``general_search`` only): each candidate's
score is ``(1 - text_weight) * image score + text_weight * text score``, both calibrated
scores of ``lookalike.scoring``, so the blend keeps their meaning. Candidates are the union of
the image search's and the text search's top ``HYBRID_CANDIDATES``; both cosines are then
computed exactly for each. Any search may collapse near-duplicates (``duplicates.collapse``).

Image ranking adapts to the library (``service.adaptation``, kept fitted by
``service.adapter``): once a library is adapted, an image query takes the top
``rerank_size(top_k)`` candidates by plain cosine from the store and orders them by the
adapted cosine, scored through its plain-cosine equivalent, so scores keep their bands and
stay monotone with the order. A library below ``adapter.MIN_IMAGES`` ranks by plain cosine.
Text queries are not adapted.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from ..config import Settings
from ..crops import check_crop_type
from ..errors import ImageNotFound, InvalidImage, InvalidParameter, ModeNotSupported
from ..filters import parse_filter
from ..imaging import decode_image
from ..models import Embedder, ScoreCalibration
from ..models.detector import Detection
from ..scoring import to_score
from ..store import Hit, Store
from .adaptation import Adaptation, plain_equivalent, similarity
from .adapter import Adapter
from .detection import DetectorProvider, default_detector, item_crop
from .duplicates import DUPLICATE_COSINE, collapse, same_pixels, thumbnail
from .libraries import LibraryRecord, LibraryService
from .metrics import observe_search
from .validation import check_image_id, check_library_name, check_top_k

MAX_QUERY_TEXT_CHARS = 1000
#: Most items a segmented query searches (the detector's main items, largest first).
MAX_SEGMENTS = 5
#: Largest ``top_k`` of ``search_image`` (the Constructor-style endpoint pages through
#: results); ``by_image`` and ``by_text`` keep 1..100.
MAX_IMAGE_TOP_K = 1000
#: Candidates each side of a hybrid query contributes (at least; ``4 * top_k`` when larger).
HYBRID_CANDIDATES = 100
#: With ``collapse_duplicates``, searches fetch this many times ``top_k`` so that the
#: collapsed list still fills ``top_k``.
COLLAPSE_OVERFETCH = 3
#: Plain-cosine candidates an adapted library re-ranks (at least; ``4 * top_k`` when larger):
#: 200 measured like 400 or a full re-rank on the shared sets, 100 lost ~1 mAP point.
RERANK_CANDIDATES = 200

#: Stored ``visual`` vectors already read during a search, by image id (reused by the collapse).
Vectors = dict[str, np.ndarray]


@dataclass(frozen=True)
class SearchResult:
    """One ranked image. ``score`` in 0..1 (see ``lookalike.scoring``); ``image_bytes``
    (the stored image, encoded as imported) is set only when asked for; ``segment``: index of the query segment whose search found
    it (``SegmentMatch.index``), ``None`` for a query without segments; ``duplicates``: with
    ``collapse_duplicates``, the ids of the near-duplicates folded into this result (in rank
    order, possibly empty), else ``None``."""

    image_id: str
    image_uri: str | None
    score: float
    tags: dict[str, object]
    image_bytes: bytes | None = None
    segment: int | None = None
    duplicates: tuple[str, ...] | None = None


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
        adapter: the libraries' ranking adaptations (default: a private ``Adapter`` over
            ``store``, which fits in the background only).
    """

    def __init__(
        self, libraries: LibraryService, store: Store, settings: Settings, detector: DetectorProvider | None = None,
        adapter: Adapter | None = None,
    ) -> None:
        self._libraries = libraries
        self._store = store
        self._settings = settings
        self._detector = detector or default_detector
        self._adapter = adapter or Adapter(store)

    def by_image(
        self,
        library_name: str,
        image: bytes,
        top_k: int = 10,
        tag_filter: object = None,
        return_image_bytes: bool = False,
        *,
        field: str = "image",
        query_text: str | None = None,
        text_weight: float | None = None,
        collapse_duplicates: bool = False,
    ) -> list[SearchResult]:
        """Images most similar to a query image: ``search_image`` without segmentation.

        Args:
            image: encoded JPEG / PNG / WebP / GIF, at most ``max_query_bytes`` bytes.
            top_k: 1..100 results.
            tag_filter: the filter language of ``lookalike.filters`` (raw JSON).
            field: the request field or option that carried ``image``, named in errors.
            query_text, text_weight, collapse_duplicates: as ``search_image``.

        Raises:
            as ``search_image``.
        """
        check_library_name(library_name)
        top_k = check_top_k(top_k)
        found = self.search_image(
            library_name, image, field=field, top_k=top_k, tag_filter=tag_filter,
            return_image_bytes=return_image_bytes, query_text=query_text, text_weight=text_weight,
            collapse_duplicates=collapse_duplicates,
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
        query_text: str | None = None,
        text_weight: float | None = None,
        collapse_duplicates: bool = False,
    ) -> ImageQueryResult:
        """Images most similar to a query image, optionally item by item.

        The plain query embeds the main item's ``crop_type`` crop in an ``item_search``
        library and the whole image in a ``general_search`` one. ``use_segmentation``: the
        detector finds up to ``MAX_SEGMENTS`` items; each one's crop is embedded (one batch)
        and searched with the same ``tag_filter``; ``results`` merges them by ``interleave``.
        When nothing is detected: in a ``general_search`` library one segment covers the whole
        image (label ``None``, score 0.0); in an ``item_search`` library there is no item to
        search for, so ``results`` (and ``segments``) are empty.
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
            query_text: makes it a hybrid query (see the module docstring); at most
                ``MAX_QUERY_TEXT_CHARS`` characters; ``general_search`` libraries with a text
                model only. Every searched crop (plain query and segments) is blended with it.
            text_weight: 0..1, the text's share of the blended score; default 0.5 with
                ``query_text``; not allowed without it.
            collapse_duplicates: fold near-duplicate results into the best-ranked one
                (``SearchResult.duplicates``); applies to ``results`` (segments' own lists are
                cut to ``top_k`` as they are).

        Raises:
            InvalidParameter (400: naming ``top_k``, ``search_crop_type``,
            ``use_segmentation``, ``query_text``, ``text_weight``, ...), InvalidImage (400,
            naming ``field``), InvalidFilter (400), LibraryNotFound (404), ModeNotSupported
            (400: ``query_text`` on an ``item_search`` library or a model without text),
            ModelMismatch, ModelUnavailable (400: the embedding model or, when detection is
            needed, the detector weights missing).
        """
        started = time.perf_counter()
        check_library_name(library_name)
        top_k = check_top_k(top_k, maximum=MAX_IMAGE_TOP_K)
        for name, flag in (("use_segmentation", use_segmentation), ("return_segments", return_segments),
                           ("return_image_bytes", return_image_bytes), ("collapse_duplicates", collapse_duplicates)):
            _check_flag(flag, name)
        check_crop_type(crop_type)
        weight = _check_text_weight(query_text, text_weight)
        node = parse_filter(tag_filter)
        library = self._libraries.get(library_name, count=False)
        model = self._libraries.model_for(library)
        text = None
        if query_text is not None:
            text = self._text_query(library, model, query_text)
        picture = self._decode(image, field)
        main, regions = self._regions(picture, library.mode, use_segmentation or return_segments)
        # An item_search library holds items: a query in which no item is detected has nothing
        # to search for, and answers no results (the imports' whole-image fallback does not apply).
        no_item = library.mode == "item_search" and main is None
        plain = [] if use_segmentation or no_item else [main]
        queries = [*plain, *regions]  # the plain query first
        vectors = model.embed_images([item_crop(picture, d, crop_type) for d in queries]).visual if queries else ()
        fetch = _fetch_size(top_k, collapse_duplicates)
        adaptation = self._adapter.current(library)
        seen: Vectors = {}
        ranked = [self._ranked(library_name, v, fetch, node, model, text, weight, adaptation, seen) for v in vectors]
        per_segment = [[replace(r, segment=i) for r in rs] for i, rs in enumerate(ranked[len(plain):])]
        results = interleave(per_segment, fetch) if use_segmentation else (ranked[0] if plain else [])
        if collapse_duplicates:
            results = self._collapsed(library_name, results, seen)
        results = results[:top_k]
        per_segment = [rs[:top_k] for rs in per_segment]
        segments = None
        if return_segments:
            scale = _scale(image, picture)
            segments = [_segment(i, d, picture, scale, rs) for i, (d, rs) in enumerate(zip(regions, per_segment))]
        if return_image_bytes:
            results, segments = self._with_bytes(library_name, results, segments)
        observe_search(library_name, "image", started)
        return ImageQueryResult(results=results, segments=segments)

    def by_text(
        self,
        library_name: str,
        query_text: str,
        top_k: int = 10,
        tag_filter: object = None,
        return_image_bytes: bool = False,
        collapse_duplicates: bool = False,
    ) -> list[SearchResult]:
        """Images that match a text description (``general_search`` libraries only).

        Args:
            collapse_duplicates: fold near-duplicate results into the best-ranked one
                (``SearchResult.duplicates``).

        Raises:
            ModeNotSupported: the library is in ``item_search`` mode, or its model has no
                text tower. Otherwise as ``by_image``.
        """
        started = time.perf_counter()
        check_library_name(library_name)
        top_k = check_top_k(top_k)
        _check_flag(collapse_duplicates, "collapse_duplicates")
        node = parse_filter(tag_filter)
        library = self._libraries.get(library_name, count=False)
        model = self._libraries.model_for(library)
        field, query, calibration = self._text_query(library, model, query_text)
        fetch = _fetch_size(top_k, collapse_duplicates)
        results = _scored(self._store.search(library_name, field, query, fetch, node), calibration)
        if collapse_duplicates:
            results = self._collapsed(library_name, results)
        results = results[:top_k]
        results = self._with_bytes(library_name, results, None)[0] if return_image_bytes else results
        observe_search(library_name, "text", started)
        return results

    def _text_query(
        self, library: LibraryRecord, model: Embedder, query_text: object
    ) -> tuple[str, np.ndarray, ScoreCalibration]:
        """(field to search, (dim,) float32 query vector, score knots) of a checked ``query_text``.

        Raises:
            InvalidParameter: not a non-empty string of at most ``MAX_QUERY_TEXT_CHARS``.
            ModeNotSupported: an ``item_search`` library, or a model without text search.
        """
        if not isinstance(query_text, str) or not query_text.strip():
            raise InvalidParameter("query_text: must be a non-empty string")
        if len(query_text) > MAX_QUERY_TEXT_CHARS:
            raise InvalidParameter(f"query_text: at most {MAX_QUERY_TEXT_CHARS} characters")
        if library.mode != "general_search":
            raise ModeNotSupported(
                f"Image library '{library.name}' is in {library.mode} mode and does not support text-to-image search."
            )
        if model.info.text_dim is None or model.info.text_calibration is None:
            raise ModeNotSupported(f"Model '{library.model_id}' of library '{library.name}' has no text search.")
        field = "visual" if model.info.shared_space else "semantic"
        calibration = model.text_calibration_for(query_text)
        assert calibration is not None  # refused above: models without text search
        return field, model.embed_texts([query_text.strip()])[0], calibration

    def by_image_id(
        self,
        library_name: str,
        image_id: str,
        top_k: int = 10,
        tag_filter: object = None,
        return_image_bytes: bool = False,
        collapse_duplicates: bool = False,
    ) -> list[SearchResult]:
        """"More like this": images most similar to a stored image, the image itself excluded.

        The query is the image's stored embedding (in an ``item_search`` library that of its
        main item), so nothing is decoded or embedded again and the scores are those an image
        query with the same picture would get.

        Args:
            image_id: an image of the library.
            top_k: 1..100 results, none of them ``image_id``.
            tag_filter: the filter language of ``lookalike.filters`` (raw JSON).
            return_image_bytes: set each result's ``image_bytes``.
            collapse_duplicates: fold near-duplicate results into the best-ranked one
                (``SearchResult.duplicates``).

        Raises:
            InvalidParameter (400, naming ``image_id``, ``top_k``, ...), InvalidFilter (400),
            LibraryNotFound, ImageNotFound (404), ModelMismatch, ModelUnavailable (400).
        """
        started = time.perf_counter()
        check_library_name(library_name)
        check_image_id(image_id)
        top_k = check_top_k(top_k)
        _check_flag(return_image_bytes, "return_image_base64")
        _check_flag(collapse_duplicates, "collapse_duplicates")
        node = parse_filter(tag_filter)
        library = self._libraries.get(library_name, count=False)
        query = self._store.vectors(library_name, "visual", [image_id]).get(image_id)
        if query is None:  # one read: a missing image has no vector either
            raise ImageNotFound(library_name, image_id)
        model = self._libraries.model_for(library)
        fetch = _fetch_size(top_k, collapse_duplicates)
        seen: Vectors = {}
        results = self._ranked(library_name, query, fetch, node, model, adaptation=self._adapter.current(library),
                               seen=seen, exclude=image_id)
        if collapse_duplicates:
            results = self._collapsed(library_name, results, seen)
        results = results[:top_k]
        results = self._with_bytes(library_name, results, None)[0] if return_image_bytes else results
        observe_search(library_name, "image_id", started)
        return results

    def _regions(
        self, picture: Image.Image, mode: str, segmented: bool
    ) -> tuple[Detection | None, list[Detection | None]]:
        """(the plain query's region, the segments' regions); ``None`` is the whole image.

        The plain query's region is the main item in ``item_search`` (``None`` also when
        nothing is detected: the caller answers no results then), the whole image in
        ``general_search``. Segments: up to ``MAX_SEGMENTS`` detected items, else one
        whole-image segment in ``general_search`` and none in ``item_search``; none unless
        ``segmented``. The detector runs (once) only when one of them needs it.
        """
        detections: list[Detection] = []
        if segmented or mode == "item_search":
            detections = self._detector().detect(picture, max_items=MAX_SEGMENTS if segmented else 1)
        main = detections[0] if detections and mode == "item_search" else None
        whole: list[Detection | None] = [] if mode == "item_search" else [None]  # item_search: no item, no segment
        return main, ((list(detections) or whole) if segmented else [])

    def _ranked(
        self, library: str, query: np.ndarray, top_k: int, node, model: Embedder,
        text: tuple[str, np.ndarray, ScoreCalibration] | None = None, weight: float = 0.0,
        adaptation: Adaptation | None = None, seen: Vectors | None = None, exclude: str | None = None,
    ) -> list[SearchResult]:
        """The top ``top_k`` for one (dim,) float32 image vector, re-ranked by ``adaptation``
        when given and blended with ``text`` (field, vector, score knots) when given.

        ``seen`` collects the ``visual`` vectors read on the way (for the collapse);
        ``exclude``: an image id left out of the results (the query image of ``by_image_id``).
        """
        calibration = model.info.image_calibration
        extra = 1 if exclude is not None else 0  # the query image is (almost always) its own best match
        if text is None and adaptation is None:
            hits = [h for h in self._store.search(library, "visual", query, top_k + extra, node)
                    if h.image.image_id != exclude]
            return _scored(hits[:top_k], calibration)
        n = rerank_size(top_k) if adaptation is not None else top_k
        if text is not None:
            n = max(n, min(MAX_IMAGE_TOP_K, max(HYBRID_CANDIDATES, 4 * top_k)))
        images = {h.image.image_id: h.image for h in self._store.search(library, "visual", query, n + extra, node)}
        if text is not None:
            for h in self._store.search(library, text[0], text[1], n + extra, node):
                images.setdefault(h.image.image_id, h.image)
        if exclude is not None:
            images.pop(exclude, None)
        ids = list(images)
        visual = self._store.vectors(library, "visual", ids)
        if seen is not None:
            seen.update(visual)
        # A shared-space model (CLIP) searches text in ``visual`` too: read once.
        textual = self._store.vectors(library, text[0], ids) if text is not None and text[0] != "visual" else visual
        ids = [i for i in ids if i in visual and i in textual]  # deleted meanwhile: dropped
        if not ids:
            return []
        candidates = np.stack([visual[i] for i in ids])
        if adaptation is None:
            image_scores = to_score(candidates @ query, calibration)
        else:
            adapted = similarity(query, candidates, adaptation)
            # Sorted first, so that scores tied by the map (flat below its lowest knot) keep the
            # adapted order through the stable sort below.
            order = np.argsort(-adapted, kind="stable")
            ids = [ids[k] for k in order]
            image_scores = to_score(plain_equivalent(adapted[order], adaptation), calibration)
        if text is None:
            blended = image_scores
        else:
            field, text_vector, text_calibration = text
            text_scores = to_score(np.stack([textual[i] for i in ids]) @ text_vector, text_calibration)
            blended = (1.0 - weight) * image_scores + weight * text_scores
        order = np.argsort(-blended, kind="stable")[:top_k]
        return [
            SearchResult(image_id=ids[k], image_uri=images[ids[k]].image_uri, score=round(float(blended[k]), 6),
                         tags=images[ids[k]].tags)
            for k in order
        ]

    def _collapsed(self, library: str, results: list[SearchResult], seen: Vectors | None = None) -> list[SearchResult]:
        """``results`` with near-duplicates folded into the best-ranked one (``duplicates``);
        ``seen``: ``visual`` vectors already read by the search (only the others are read)."""
        seen = seen or {}
        ids = [r.image_id for r in results]
        missing = [i for i in ids if i not in seen]
        stored = {**{i: seen[i] for i in ids if i in seen},
                  **(self._store.vectors(library, "visual", missing) if missing else {})}
        present = [r for r in results if r.image_id in stored]
        if not present:
            return []
        vectors = np.stack([stored[r.image_id] for r in present])
        # Only images in a pair close enough to be copies are read and hashed (one read).
        close = np.argwhere(np.triu(vectors @ vectors.T >= DUPLICATE_COSINE, k=1))
        wanted = sorted({present[int(k)].image_id for k in close.ravel()})
        blobs = self._store.image_bytes(library, wanted) if wanted else {}
        thumbs = {image_id: self._thumbnail(data) for image_id, data in blobs.items()}

        def alike(i: int, j: int) -> bool:
            a, b = thumbs.get(present[i].image_id), thumbs.get(present[j].image_id)
            return a is not None and b is not None and same_pixels(a, b)

        groups = collapse(vectors, alike)
        return [
            replace(present[g.head], duplicates=tuple(present[m].image_id for m in g.members)) for g in groups
        ]

    def _thumbnail(self, data: bytes) -> np.ndarray | None:
        """``duplicates.thumbnail`` of a stored image; ``None`` when it no longer decodes (then
        it is nobody's copy)."""
        try:
            return thumbnail(decode_image(data, field="image", max_pixels=self._settings.max_image_pixels))
        except InvalidImage:
            return None

    def _decode(self, data: bytes, field: str) -> Image.Image:
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise InvalidImage(f"{field}: must be a non-empty image file")
        if len(data) > self._settings.max_query_bytes:
            raise InvalidImage(
                f"{field}: image is {len(data)} bytes, larger than the limit of {self._settings.max_query_bytes} bytes"
            )
        return decode_image(bytes(data), field=field, max_pixels=self._settings.max_query_pixels,
                            wait=self._settings.decode_wait_s)

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


def rerank_size(top_k: int) -> int:
    """Plain-cosine candidates an adapted library re-ranks for ``top_k`` results."""
    return min(MAX_IMAGE_TOP_K, max(RERANK_CANDIDATES, 4 * top_k))


def _fetch_size(top_k: int, collapse_duplicates: bool) -> int:
    """Results to fetch for ``top_k``: ``COLLAPSE_OVERFETCH`` times more when collapsing, so
    that the collapsed list still fills ``top_k``."""
    return min(MAX_IMAGE_TOP_K, top_k * COLLAPSE_OVERFETCH) if collapse_duplicates else top_k


def _check_text_weight(query_text: object, text_weight: object) -> float:
    """The text's share of a hybrid score: 0.5 by default with ``query_text``, 0 without.

    Raises:
        InvalidParameter: ``text_weight`` not a number in 0..1, or given without ``query_text``.
    """
    if text_weight is None:
        return 0.5 if query_text is not None else 0.0
    if query_text is None:
        raise InvalidParameter("text_weight: only with query_text")
    if isinstance(text_weight, bool) or not isinstance(text_weight, (int, float)) or not 0.0 <= text_weight <= 1.0:
        raise InvalidParameter("text_weight: must be a number from 0 to 1")
    return float(text_weight)


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
