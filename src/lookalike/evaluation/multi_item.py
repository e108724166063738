"""Multi-item evaluation set: composed images of 2-3 real product photos, and detection recall.

``compose_set`` pastes photos of distinct products from a labelled instance set (e.g.
``../shared/datasets/sop_subset``, labels = product ids) side by side or in a grid, with
gaps, at scale 0.6-1.0, onto a neutral or a busy background, and records where each one
went. The pasted photo of a product is its *query item*; every other photo of the set
(the product's other photos included) forms the *library*, so retrieval of an item can be
scored by whether its product appears in the top k (``ComposedSet.library``).

Backgrounds:
    ``neutral``: flat white, light grey or mid grey.
    ``busy``: a real scikit-image photo (``coffee``, ``chelsea``, ``astronaut``, ``rocket``),
    Gaussian-blurred (radius 3 px) like an out-of-focus room, or a real texture
    (``grass``, ``gravel``, ``brick``) tiled and tinted. The photos still hold their own
    salient objects (a cup, a cat, a person), which a detector may report as extra items.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFilter

from ..config import Settings
from ..crops import check_crop_type
from ..errors import InvalidParameter, LibraryNotFound
from ..models.detector import Detection, Detector
from ..runtime import Runtime
from ..service.importer import ImportItem
from ..service.search import MAX_IMAGE_TOP_K, ImageQueryResult, SearchService
from ..service.validation import check_mode
from .datasets import LabelledImage, load_labels

Background = Literal["neutral", "busy"]
BACKGROUNDS: tuple[Background, ...] = ("neutral", "busy")
MANIFEST = "composed.json"
SCALE_RANGE = (0.6, 1.0)
GAP_RANGE = (16, 64)  # pixels between items and around them
_NEUTRAL_COLOURS = ((255, 255, 255), (236, 236, 236), (200, 200, 200))
_BUSY_PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")
_BUSY_TEXTURES = ("grass", "gravel", "brick")
_BLUR_RADIUS = 3.0


@dataclass(frozen=True)
class PastedItem:
    """One product photo pasted into a composed image.

    Attributes:
        label: the product id (``labels.csv`` label).
        source: absolute path of the pasted photo (excluded from the library).
        bbox: (x, y, width, height) of the pasted photo in the composed image, pixels.
    """

    label: str
    source: Path
    bbox: tuple[int, int, int, int]


@dataclass(frozen=True)
class ComposedImage:
    """A composed query image: ``path`` (JPEG), its ``background`` kind and its ``items``
    in paste order (left to right, top to bottom)."""

    path: Path
    background: Background
    items: tuple[PastedItem, ...]


@dataclass(frozen=True)
class ComposedSet:
    """The composed query images and the library they are searched in.

    Attributes:
        images: the composed images, in generation order.
        library: every photo of the source set except the pasted ones; each pasted
            product keeps at least one photo here.
        seed: the seed that generated the set (same seed, same set).
    """

    images: tuple[ComposedImage, ...]
    library: tuple[LabelledImage, ...]
    seed: int

    def with_background(self, background: Background) -> ComposedSet:
        """The same set restricted to the composed images on ``background``."""
        return ComposedSet(tuple(i for i in self.images if i.background == background), self.library, self.seed)


def compose_set(sop_dir: Path, out_dir: Path, n_images: int, seed: int) -> ComposedSet:
    """Compose ``n_images`` multi-item images from the labelled set at ``sop_dir`` into
    ``out_dir/images/NNNN.jpg`` and write the manifest ``out_dir/composed.json``.

    Image i has 2 items when i is even, 3 when odd; backgrounds alternate in pairs
    (neutral, neutral, busy, busy, ...), so both kinds get both item counts. Products
    are drawn without replacement among those with at least 2 photos.

    Raises:
        FileNotFoundError: no ``labels.csv`` in ``sop_dir``.
        ValueError: ``n_images`` < 1, or the set has too few products with 2+ photos.
    """
    if n_images < 1:
        raise ValueError("n_images must be at least 1")
    rows = [r for r in load_labels(Path(sop_dir)) if r.label]
    by_label: dict[str, list[LabelledImage]] = {}
    for r in rows:
        by_label.setdefault(r.label, []).append(r)
    eligible = sorted(lab for lab, photos in by_label.items() if len(photos) >= 2)
    counts = [2 + i % 2 for i in range(n_images)]
    if sum(counts) > len(eligible):
        raise ValueError(f"{n_images} images need {sum(counts)} products with 2+ photos; {sop_dir} has {len(eligible)}")
    rng = np.random.default_rng(seed)
    products = iter(rng.permutation(eligible).tolist())
    images_dir = Path(out_dir) / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    composed: list[ComposedImage] = []
    for i, n in enumerate(counts):
        picks = [by_label[next(products)] for _ in range(n)]
        sources = [photos[int(rng.integers(len(photos)))] for photos in picks]
        background: Background = BACKGROUNDS[(i // 2) % 2]
        canvas, items = _compose(sources, background, rng)
        path = images_dir / f"{i:04d}.jpg"
        canvas.save(path, quality=90)
        composed.append(ComposedImage(path.resolve(), background, items))
    used = {it.source for img in composed for it in img.items}
    result = ComposedSet(tuple(composed), tuple(r for r in rows if r.path.resolve() not in used), seed)
    _write_manifest(result, Path(out_dir) / MANIFEST)
    return result


def load_composed(out_dir: Path) -> ComposedSet:
    """The set that :func:`compose_set` wrote to ``out_dir``.

    Raises:
        FileNotFoundError: no manifest there.
    """
    data = json.loads((Path(out_dir) / MANIFEST).read_text())
    images = tuple(
        ComposedImage(
            Path(img["path"]),
            img["background"],
            tuple(PastedItem(it["label"], Path(it["source"]), tuple(it["bbox"])) for it in img["items"]),
        )
        for img in data["images"]
    )
    library = tuple(LabelledImage(Path(r["path"]), r["label"], r["split"]) for r in data["library"])
    return ComposedSet(images, library, int(data["seed"]))


def _write_manifest(cs: ComposedSet, path: Path) -> None:
    data = {
        "seed": cs.seed,
        "images": [asdict(img) for img in cs.images],
        "library": [asdict(r) for r in cs.library],
    }
    path.write_text(json.dumps(data, default=str, indent=1))


# --- layout -------------------------------------------------------------------------------


def _compose(
    sources: list[LabelledImage], background: Background, rng: np.random.Generator
) -> tuple[Image.Image, tuple[PastedItem, ...]]:
    photos = []
    for src in sources:
        im = Image.open(src.path).convert("RGB")
        s = rng.uniform(*SCALE_RANGE)
        photos.append(im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.LANCZOS))
    rows = [photos] if len(photos) == 2 or rng.random() < 0.5 else [photos[:2], photos[2:]]
    positions, size = _layout(rows, rng)
    canvas = _background(background, size, rng)
    items = []
    for src, im, (x, y) in zip(sources, photos, positions):
        canvas.paste(im, (x, y))
        items.append(PastedItem(src.label, src.path.resolve(), (x, y, im.width, im.height)))
    return canvas, tuple(items)


def _gap(rng: np.random.Generator) -> int:
    return int(rng.integers(GAP_RANGE[0], GAP_RANGE[1] + 1))


def _layout(rows: list[list[Image.Image]], rng: np.random.Generator) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Top-left corners of the photos, row by row, and the canvas (width, height).

    Each row is centred; within a row a photo sits at a random height (vertical jitter)."""
    row_sizes = []
    for row in rows:
        gaps = [_gap(rng) for _ in row[1:]]
        row_sizes.append((sum(im.width for im in row) + sum(gaps), max(im.height for im in row), gaps))
    margin_x, margin_y = _gap(rng), _gap(rng)
    row_gap = _gap(rng)
    width = max(w for w, _, _ in row_sizes) + 2 * margin_x
    height = sum(h for _, h, _ in row_sizes) + row_gap * (len(rows) - 1) + 2 * margin_y
    positions, y = [], margin_y
    for row, (row_w, row_h, gaps) in zip(rows, row_sizes):
        x = margin_x + (width - 2 * margin_x - row_w) // 2
        for j, im in enumerate(row):
            positions.append((x, y + int(rng.integers(0, row_h - im.height + 1))))
            x += im.width + (gaps[j] if j < len(gaps) else 0)
        y += row_h + row_gap
    return positions, (width, height)


def _background(kind: Background, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    if kind == "neutral":
        colour = _NEUTRAL_COLOURS[int(rng.integers(len(_NEUTRAL_COLOURS)))]
        return Image.new("RGB", size, colour)
    import skimage.data

    if rng.random() < 0.5:
        name = _BUSY_PHOTOS[int(rng.integers(len(_BUSY_PHOTOS)))]
        im = Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB")
        return _cover(im, size).filter(ImageFilter.GaussianBlur(_BLUR_RADIUS))
    name = _BUSY_TEXTURES[int(rng.integers(len(_BUSY_TEXTURES)))]
    grey = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
    tint = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
    texture = Image.fromarray((grey[..., None] * tint * 255).astype(np.uint8), "RGB")
    tiled = Image.new("RGB", size)
    for ty in range(0, size[1], texture.height):
        for tx in range(0, size[0], texture.width):
            tiled.paste(texture, (tx, ty))
    return tiled


def _cover(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``im`` scaled to cover ``size`` and centre-cropped to it."""
    s = max(size[0] / im.width, size[1] / im.height)
    big = im.resize((max(size[0], round(im.width * s)), max(size[1], round(im.height * s))), Image.Resampling.BILINEAR)
    left, top = (big.width - size[0]) // 2, (big.height - size[1]) // 2
    return big.crop((left, top, left + size[0], top + size[1]))


# --- detection recall ---------------------------------------------------------------------


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x, y, width, height) boxes, in 0..1."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def match_items(detections: list[Detection], items: tuple[PastedItem, ...], iou: float = 0.5) -> list[int | None]:
    """For each pasted item, the index of the detection with the highest IoU when that IoU
    is at least ``iou``, else ``None``. (Pasted boxes are disjoint, so with ``iou`` >= 0.5
    no detection can match two items.)"""
    matches: list[int | None] = []
    for it in items:
        ious = [box_iou(d.bbox, it.bbox) for d in detections]
        best = int(np.argmax(ious)) if ious else -1
        matches.append(best if best >= 0 and ious[best] >= iou else None)
    return matches


def isolates(box: tuple[int, int, int, int], item: tuple[int, int, int, int]) -> bool:
    """True when ``box`` finds the product inside a pasted photo ``item`` without spilling
    onto its neighbours: at least 80 % of ``box`` lies inside ``item`` and the overlap is
    at least 10 % of ``item``. (A tight box around a product that fills a small part of
    its photo has IoU < 0.5 with the photo yet is a good crop to search with.)"""
    ix = max(0, min(box[0] + box[2], item[0] + item[2]) - max(box[0], item[0]))
    iy = max(0, min(box[1] + box[3], item[1] + item[3]) - max(box[1], item[1]))
    inter = ix * iy
    return inter >= 0.8 * box[2] * box[3] and inter >= 0.1 * item[2] * item[3] > 0


def detection_recall(detector: Detector, composed: ComposedSet, iou: float = 0.5, max_items: int = 5) -> dict:
    """Detection quality of ``detector`` on the composed images.

    Returns:
        ``{"images", "items", "recall" (share of pasted items matched by a detection with
        IoU >= ``iou``), "recall_isolated" (share matched that way or by a detection that
        :func:`isolates` the item), "detections_per_image" (mean), "ms_per_image" (mean wall
        time of ``detect``, decoding excluded), "by_background": {kind: the same keys}}``.
    """
    rows = []
    for img in composed.images:
        image = Image.open(img.path).convert("RGB")
        started = time.perf_counter()
        dets = detector.detect(image, max_items=max_items)
        ms = (time.perf_counter() - started) * 1000
        matched = match_items(dets, img.items, iou)
        hits = sum(m is not None for m in matched)
        isolated = sum(
            m is not None or any(isolates(d.bbox, it.bbox) for d in dets) for m, it in zip(matched, img.items)
        )
        rows.append((img.background, len(img.items), hits, isolated, len(dets), ms))
    summary = _summarise(rows)
    summary["by_background"] = {
        b: _summarise([r for r in rows if r[0] == b]) for b in BACKGROUNDS if any(r[0] == b for r in rows)
    }
    return summary


def _summarise(rows: list[tuple[str, int, int, int, int, float]]) -> dict:
    n_items = sum(r[1] for r in rows)
    return {
        "images": len(rows),
        "items": n_items,
        "recall": sum(r[2] for r in rows) / n_items if n_items else 0.0,
        "recall_isolated": sum(r[3] for r in rows) / n_items if n_items else 0.0,
        "detections_per_image": float(np.mean([r[4] for r in rows])) if rows else 0.0,
        "ms_per_image": float(np.mean([r[5] for r in rows])) if rows else 0.0,
    }


# --- retrieval of composed items: ``lookalike eval multi-item`` -----------------------------
#
# Protocol: the composed images (``compose_set``) query a temporary library holding
# ``ComposedSet.library`` (tags: ``label`` = product id). Every composed image is searched
# twice through ``SearchService.search_image``: plain (``use_segmentation`` false) and
# segmented (``use_segmentation`` and ``return_segments`` true); a third, untimed, segmented
# query replaces the detector by the pasted boxes (the ceiling of any detector with this
# embedding model, crop and merge rule). An item counts as found
# when its product's label appears among ``top_k`` results:
# - ``plain``: the plain query's list;
# - ``segmented``: the merged list of the segmented query (its ``top_k`` results are shared
#   by all segments: no item gets a budget of its own);
# - ``per_segment``: the own list of the segment matched to the item (``match_items``,
#   IoU >= 0.5); an item without a matching segment is a miss;
# - ``any_segment`` (diagnostic): the own list of any segment; ``any_segment`` minus
#   ``segmented`` is what the merge's shared budget costs;
# - ``true_box`` / ``true_boxes_merged`` (ceilings): the own list of the item's pasted box,
#   and the merged list of all pasted boxes.
# Detection recall comes from the segmented query's segments (the whole-image fallback
# segment, score 0.0, is no detection), so it is the figure ``detection_recall`` gives.

#: IoU at which a segment matches a pasted item.
MATCH_IOU = 0.5


@dataclass(frozen=True)
class _ItemOutcome:
    """Whether one pasted item was found, per rule, and whether a segment matched it."""

    background: str
    n_items: int
    plain: bool
    segmented: bool
    per_segment: bool
    any_segment: bool
    detected: bool
    true_box: bool
    true_boxes_merged: bool


def evaluate_multi_item(
    sop_dir: Path,
    *,
    settings: Settings,
    models: Callable[[str], Any] | None = None,
    detector: Detector | None = None,
    n_images: int = 60,
    seed: int = 11,
    mode: str = "general_search",
    crop_type: str = "bbox",
    top_k: int = 10,
    progress: Callable[[str, int, int], None] | None = None,
    data_dir: Path | None = None,
    library_limit: int | None = None,
) -> dict[str, Any]:
    """Compose ``n_images`` multi-item images from ``sop_dir`` and measure how often each
    item's product is retrieved, with and without segmentation (protocol above).

    Args:
        sop_dir: a labelled instance set (``images/`` + ``labels.csv``, label = product id).
        settings: ``lookalike.config.Settings``: the ONNX model cache, the default model and
            the limits; the data dir is ``data_dir`` when given, else a temporary one.
        models: model id -> model (default: loaded from ``settings.model_cache_dir``).
        detector: the item detector (default ``lookalike.models.load_detector()``).
        mode: ``general_search`` or ``item_search`` (the library's mode).
        crop_type: ``bbox`` or ``segment``, the crops the queries embed.
        top_k: results judged per list (merged and per segment), 1..1000.
        progress: ``progress(phase, done, total)``; phase ``import`` counts library photos,
            ``search`` composed images.
        data_dir: compose into ``data_dir/composed-s{seed}-n{n_images}`` and keep the
            library there (named after seed, size, mode and limit; a re-run embeds only what
            is missing); default: a temporary folder, removed afterwards.
        library_limit: at most this many library photos: every other photo of the pasted
            products, then distractors spread evenly over the rest (for short test runs);
            the pasted products' photos are kept even when they exceed it.

    Returns:
        ``items_found_top10_plain``, ``items_found_top10_segmented``,
        ``items_found_top10_per_segment``, ``items_found_top10_any_segment``,
        ``items_found_top10_true_box``, ``items_found_top10_true_boxes_merged`` (fractions of
        the pasted items in 0..1; the ``top10`` names hold for the default ``top_k``),
        ``detection_recall`` (items matched by a detected segment at IoU >= 0.5),
        ``detections_per_image`` (mean), ``by_background`` and ``by_item_count``
        (``neutral`` / ``busy``, ``2`` / ``3``: the same fractions and ``n_items``),
        ``plain_p50_ms``, ``plain_p95_ms``, ``segmented_p50_ms``, ``segmented_p95_ms``
        (wall time of one whole ``search_image`` call, image bytes to results, after an
        untimed warm-up of each), ``n_images``, ``n_items``, ``library_size``, ``mode``,
        ``crop_type``, ``top_k``, ``seed``. Fractions rounded to 4 places, times to 0.01 ms.

    Raises:
        InvalidParameter: bad ``mode``, ``crop_type``, ``top_k``, ``n_images`` or
            ``library_limit``. FileNotFoundError: no ``labels.csv`` in ``sop_dir``.
            ValueError: too few products for ``n_images``. ModelUnavailable: the embedding
            model or the detector weights are missing.
    """
    _check_eval_args(mode, crop_type, top_k, n_images, library_limit)
    with contextlib.ExitStack() as stack:
        root = Path(data_dir) if data_dir is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="lookalike-multi-item-")))
        composed = compose_set(Path(sop_dir), root / f"composed-s{seed}-n{n_images}", n_images, seed)
        library = _library_photos(composed, library_limit)
        name = f"multi-{mode}-s{seed}-n{n_images}" + (f"-l{library_limit}" if library_limit else "")
        rt = stack.enter_context(_eval_runtime(settings, models, detector, root / "data"))
        _import_library(rt, name, mode, library, progress)
        outcomes, detections, times = _search_all(rt, name, composed, crop_type, top_k, progress)
    out = _fractions(outcomes)
    out["detections_per_image"] = round(float(np.mean(detections)), 4)
    out["by_background"] = {b: _fractions([o for o in outcomes if o.background == b])
                            for b in BACKGROUNDS if any(o.background == b for o in outcomes)}
    out["by_item_count"] = {str(n): _fractions([o for o in outcomes if o.n_items == n])
                            for n in (2, 3) if any(o.n_items == n for o in outcomes)}
    for kind in ("plain", "segmented"):
        out[f"{kind}_p50_ms"] = round(float(np.percentile(times[kind], 50)), 2)
        out[f"{kind}_p95_ms"] = round(float(np.percentile(times[kind], 95)), 2)
    out |= {"n_images": len(composed.images), "library_size": len(library), "mode": mode, "crop_type": crop_type,
            "top_k": top_k, "seed": seed}
    return out


def _check_eval_args(mode: str, crop_type: str, top_k: int, n_images: int, library_limit: int | None) -> None:
    check_mode(mode)
    check_crop_type(crop_type, field="crop_type")
    if not isinstance(top_k, int) or not 1 <= top_k <= MAX_IMAGE_TOP_K:
        raise InvalidParameter(f"top_k: must be an integer in 1..{MAX_IMAGE_TOP_K}")
    if not isinstance(n_images, int) or n_images < 1:
        raise InvalidParameter("n_images: must be an integer of at least 1")
    if library_limit is not None and (not isinstance(library_limit, int) or library_limit < 1):
        raise InvalidParameter("library_limit: must be an integer of at least 1")


def _library_photos(composed: ComposedSet, limit: int | None) -> list[LabelledImage]:
    """``composed.library``, or with ``limit`` the pasted products' photos plus distractors
    spread evenly over the others, up to ``limit`` in all."""
    rows = list(composed.library)
    if limit is None or limit >= len(rows):
        return rows
    pasted = {it.label for img in composed.images for it in img.items}
    own = [r for r in rows if r.label in pasted]
    others = [r for r in rows if r.label not in pasted]
    n = max(0, min(len(others), limit - len(own)))
    picks = np.unique(np.linspace(0, len(others) - 1, n).round().astype(int)) if n else []
    return own + [others[i] for i in picks]


@contextlib.contextmanager
def _eval_runtime(
    settings: Settings, models: Callable[[str], Any] | None, detector: Detector | None, data_dir: Path
) -> Iterator[Runtime]:
    """A Runtime over ``data_dir`` that shares ``settings``' model cache, closed on exit."""
    provider = (lambda: detector) if detector is not None else None
    rt = Runtime.open(dataclasses.replace(settings, data_dir=data_dir, models_dir=settings.model_cache_dir),
                      models=models, detector=provider)
    try:
        yield rt
    finally:
        rt.close()


def _import_library(rt: Runtime, name: str, mode: str, photos: list[LabelledImage],
                    progress: Callable[[str, int, int], None] | None) -> None:
    """Create ``name`` (or reuse it: same name, same photos) and import what is missing;
    image ids are the photos' file names, tags ``{"label": product id}``."""
    try:
        record = rt.libraries.get(name, count=False)
        if record.mode != mode:
            raise InvalidParameter(f"data_dir: library {name} exists in {record.mode} mode, not {mode}")
    except LibraryNotFound:
        rt.libraries.create(name, mode)
    items = [ImportItem(image_id=r.path.name, path=str(r.path), tags={"label": r.label}, where=str(r.path))
             for r in photos]
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress("import", done, len(items))

    outcome = rt.importer.import_items(name, items, skip_existing=True, atomic=False, progress=step, local_files=True)
    if outcome.failed:
        raise InvalidParameter(f"{outcome.failed[0][0]}: could not be imported ({outcome.failed[0][1]})")


class _TrueBoxes:
    """A stand-in detector that returns the pasted boxes of the image being searched (set
    ``items`` before each query): the segmented pipeline with a perfect detector."""

    model_id = "true-boxes"

    def __init__(self) -> None:
        self.items: tuple[PastedItem, ...] = ()

    def detect(self, image: Image.Image, max_items: int = 5) -> list[Detection]:
        found = []
        for it in self.items[:max_items]:
            x, y, w, h = it.bbox
            mask = np.zeros((image.height, image.width), bool)
            mask[y : y + h, x : x + w] = True
            found.append(Detection(bbox=it.bbox, mask=mask, mask_area=w * h, score=1.0))
        return found


def _search_all(
    rt: Runtime, name: str, composed: ComposedSet, crop_type: str, top_k: int,
    progress: Callable[[str, int, int], None] | None,
) -> tuple[list[_ItemOutcome], list[int], dict[str, list[float]]]:
    """The queries of every composed image: (item outcomes, detections per image, times in ms)."""
    truth = _TrueBoxes()
    oracle = SearchService(rt.libraries, rt.store, rt.settings, detector=lambda: truth, adapter=rt.adapter)
    search = rt.search
    options = {"top_k": top_k, "crop_type": crop_type}
    warm = composed.images[0].path.read_bytes()
    search.search_image(name, warm, **options)  # loads the model and the index
    search.search_image(name, warm, **options, use_segmentation=True)  # and the detector
    outcomes: list[_ItemOutcome] = []
    detections: list[int] = []
    times: dict[str, list[float]] = {"plain": [], "segmented": []}
    for i, img in enumerate(composed.images):
        data = img.path.read_bytes()
        started = time.perf_counter()
        plain = search.search_image(name, data, **options)
        times["plain"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        seg = search.search_image(name, data, **options, use_segmentation=True, return_segments=True)
        times["segmented"].append((time.perf_counter() - started) * 1000)
        truth.items = img.items
        true = oracle.search_image(name, data, **options, use_segmentation=True, return_segments=True)
        found, n_detected = _judge(img, plain, seg, true)
        outcomes += found
        detections.append(n_detected)
        if progress is not None:
            progress("search", i + 1, len(composed.images))
    return outcomes, detections, times


def _labels(results: list) -> set[object]:
    return {r.tags.get("label") for r in results}


def _judge(img: ComposedImage, plain: ImageQueryResult, seg: ImageQueryResult,
           true: ImageQueryResult) -> tuple[list[_ItemOutcome], int]:
    """Item outcomes of one composed image and its number of detected segments, from the
    plain, the segmented and the true-box ``ImageQueryResult``."""
    segments = seg.segments or []
    detected = [s for s in segments if s.score > 0.0]  # score 0.0: the whole-image fallback
    boxes = [Detection(bbox=s.bbox, mask=np.zeros((0, 0), bool), mask_area=s.mask_area, score=s.score)
             for s in detected]
    matches = match_items(boxes, img.items, MATCH_IOU)
    plain_labels, merged_labels, true_merged = _labels(plain.results), _labels(seg.results), _labels(true.results)
    own = [_labels(s.results) for s in detected]
    every = set().union(*(_labels(s.results) for s in segments))
    outcomes = [
        _ItemOutcome(img.background, len(img.items), it.label in plain_labels, it.label in merged_labels,
                     m is not None and it.label in own[m], it.label in every, m is not None,
                     it.label in _labels(t.results), it.label in true_merged)
        for it, m, t in zip(img.items, matches, true.segments or [])
    ]
    return outcomes, len(detected)


def _fractions(outcomes: list[_ItemOutcome]) -> dict[str, Any]:
    def share(key: str) -> float:
        return round(sum(getattr(o, key) for o in outcomes) / len(outcomes), 4) if outcomes else 0.0

    return {"items_found_top10_plain": share("plain"), "items_found_top10_segmented": share("segmented"),
            "items_found_top10_per_segment": share("per_segment"),
            "items_found_top10_any_segment": share("any_segment"), "detection_recall": share("detected"),
            "items_found_top10_true_box": share("true_box"),
            "items_found_top10_true_boxes_merged": share("true_boxes_merged"),
            "n_items": len(outcomes)}
