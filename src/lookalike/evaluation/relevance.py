"""``lookalike eval``: image->image and text->image relevance on a labelled photo set.

Protocol:
- image->image: where ``labels.csv`` defines splits, each labelled ``query`` image searches
  the ``db`` images; otherwise each labelled image searches all the others
  (leave-one-out). Relevant = same label. mAP@100, precision@10, recall@10, averaged over
  the queries that have at least one relevant image (``n_queries`` counts those).
- text->image: each distinct label as "a photo of <label>" ('_' read as a space) searches
  the db images; mAP@100 and precision@10. Skipped when labels are ids, not words. With
  ``languages``, the same per language from a translations CSV (``label,<lang>,...``, one
  query per label and language; ``translations_for`` finds the packaged one for corel1k).
- timings: import throughput (read + decode + embed + store, images/s) and end-to-end
  query latency (decode + embed + search) over up to 100 queries, p50 / p95 in ms.
"""

from __future__ import annotations

import csv
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..config import Settings
from ..runtime import Runtime
from ..service.importer import ImportItem
from .datasets import LabelledImage, labels_are_words, load_labels
from .metrics import average_precision_at, precision_at, recall_at

LIBRARY = "eval"
LATENCY_QUERIES = 100
#: Translated text queries shipped with the package: corel1k's labels in 6 languages.
PACKAGED_TRANSLATIONS = Path(__file__).with_name("data") / "corel1k_queries.csv"


def load_translations(path: Path) -> dict[str, dict[str, str]]:
    """``{language: {label: query}}`` from a CSV with a ``label`` column and one column per
    language code (e.g. ``en,fr,es,de,zh,ru``), UTF-8.

    Raises:
        ValueError: no ``label`` column, or an empty cell.
    """
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "label" not in rows[0]:
        raise ValueError(f"{path}: expected a header 'label,<language>,...'")
    out: dict[str, dict[str, str]] = {}
    for i, row in enumerate(rows, start=2):
        for lang, text in row.items():
            if lang == "label":
                continue
            if not (text or "").strip():
                raise ValueError(f"{path}: line {i}, column '{lang}' is empty")
            out.setdefault(lang, {})[row["label"]] = text.strip()
    return out


def translations_for(labels: set[str], path: Path | None = None) -> dict[str, dict[str, str]] | None:
    """Translations from ``path`` (default: the packaged corel1k file) when they cover every
    label in ``labels``; else ``None``."""
    found = load_translations(path or PACKAGED_TRANSLATIONS)
    return found if all(labels <= set(queries) for queries in found.values()) else None


def evaluate_dataset(
    root: Path,
    *,
    settings: Settings,
    model_id: str | None = None,
    mode: str = "general_search",
    text: bool = True,
    languages: Sequence[str] = (),
    translations: Path | None = None,
    progress: Callable[[int], None] | None = None,
    phase: Callable[[str, int, int], None] | None = None,
) -> dict[str, object]:
    """Evaluate a model on ``root`` (``images/`` + ``labels.csv``) in a temporary library.

    Args:
        settings: supplies the ONNX model cache (reused) and limits; the library itself lives
            in a temporary data dir that is removed afterwards.
        model_id: model to evaluate (default: ``settings.default_model``).
        text: run text->image queries (also needs labels that are words).
        languages: language codes (columns of the translations file) whose queries are also
            run; figures go to ``text_by_language``.
        translations: the translations CSV (default: the packaged corel1k one).
        progress: called with the number of images imported after each batch.
        phase: called as ``phase(name, done, total)`` during the phases after the import
            (``queries``: the image queries; ``latency``: the timed end-to-end queries), so a
            caller can show their progress too.

    Returns:
        ``image_map100``, ``image_p10``, ``image_r10``, ``text_map100``, ``text_p10`` (None
        where not measurable), ``embed_images_per_s``, ``query_p50_ms``, ``query_p95_ms``,
        ``n_images``, ``n_queries``, ``score_bands`` and ``text_score_bands`` (see
        ``score_bands``; the text one over the top 10 of every text query), and with
        ``languages`` ``text_by_language``: ``{lang: {"text_map100", "text_p10", "text_score_bands"}}``.

    Raises:
        ValueError: ``languages`` given but the translations do not cover the set's labels or
            lack one of the languages.
    """
    rows = load_labels(root)
    has_splits = any(r.split == "query" for r in rows) and any(r.split == "db" for r in rows)
    db = [r for r in rows if r.split == "db"] if has_splits else rows
    queries = [r for r in rows if r.split == "query" and r.label] if has_splits else [r for r in db if r.label]
    translated = _translated({r.label for r in db if r.label}, languages, translations) if languages else {}

    with tempfile.TemporaryDirectory(prefix="lookalike-eval-") as tmp:
        rt = Runtime.open(Settings(data_dir=Path(tmp), models_dir=settings.model_cache_dir,
                                   default_model=settings.default_model))
        try:
            rt.libraries.create(LIBRARY, mode, model_id)
            ids = {r.path: str(i) for i, r in enumerate(db)}
            items = [ImportItem(image_id=ids[r.path], path=str(r.path), tags={"label": r.label}, where=str(r.path))
                     for r in db]
            start = time.perf_counter()
            rt.importer.import_items(LIBRARY, items, atomic=False, progress=progress, local_files=True)
            embed_rate = len(db) / (time.perf_counter() - start)

            out: dict[str, object] = {"n_images": len(db)}
            out |= _image_metrics(rt, db, queries, ids, has_splits, phase)
            labels = {r.label for r in db if r.label}
            text_ok = text and labels_are_words(labels) and mode == "general_search"
            no_text = {"text_map100": None, "text_p10": None, "text_score_bands": None}
            out |= _text_metrics(rt, db, _english(labels)) if text_ok else no_text
            if translated and text_ok:
                out["text_by_language"] = {lang: _text_metrics(rt, db, q) for lang, q in translated.items()}
            out["embed_images_per_s"] = round(embed_rate, 2)
            out |= _latency(rt, queries or db, phase)
        finally:
            rt.close()
    return out


def _image_metrics(
    rt: Runtime, db: list[LabelledImage], queries: list[LabelledImage], ids: dict[Path, str], has_splits: bool,
    phase: Callable[[str, int, int], None] | None = None,
) -> dict[str, float | None]:
    """Image->image figures through the search service, so they include the library's ranking
    adaptation (``service.adaptation``) and its scores: a ``split=query`` image is searched
    as an uploaded image, a leave-one-out query by its stored id (itself excluded)."""
    if not queries:
        return {"n_queries": 0, "image_map100": None, "image_p10": None, "image_r10": None, "score_bands": None}
    counts = Counter(r.label for r in db if r.label)
    aps, p10s, r10s, top10 = [], [], [], []
    for done, q in enumerate(queries):
        if phase is not None and done % 50 == 0:
            phase("queries", done, len(queries))
        if has_splits:
            results = rt.search.by_image(LIBRARY, q.path.read_bytes(), top_k=100)
        else:
            results = rt.search.by_image_id(LIBRARY, ids[q.path], top_k=100)
        n_rel = counts[q.label] - (0 if has_splits else 1)
        if n_rel == 0:  # no other image of its label: AP is undefined, so the query is not counted
            continue
        ranked = [r.tags.get("label") == q.label for r in results]
        aps.append(average_precision_at(ranked, n_rel, 100))
        p10s.append(precision_at(ranked, 10))
        r10s.append(recall_at(ranked, n_rel, 10))
        top10 += [(r.score, rel) for r, rel in zip(results[:10], ranked[:10])]
    if phase is not None:
        phase("queries", len(queries), len(queries))
    scores = np.array([s for s, _ in top10], dtype=np.float32)
    return {"n_queries": len(aps), "image_map100": _mean(aps), "image_p10": _mean(p10s), "image_r10": _mean(r10s),
            "score_bands": score_bands(scores, np.array([r for _, r in top10], dtype=bool))}


#: Score bands and their intended meaning (README, "Scores").
SCORE_BANDS = ((">0.9", 0.9, 1.01), ("0.7-0.9", 0.7, 0.9), ("<0.7", -0.01, 0.7))


def score_bands(scores: np.ndarray, relevant: np.ndarray) -> dict[str, dict[str, float | None]]:
    """How well scores read: per band, the share of results in it and the fraction of those
    that are relevant (same label).

    Args:
        scores: (n,) float scores of top-10 results over all queries.
        relevant: (n,) bool, same label as the query.
    """
    out: dict[str, dict[str, float | None]] = {}
    for name, low, high in SCORE_BANDS:
        inside = (scores > low) & (scores <= high)
        share = float(inside.mean()) if scores.size else 0.0
        precision = float(relevant[inside].mean()) if inside.any() else None
        out[name] = {"share": round(share, 4), "precision": None if precision is None else round(precision, 4)}
    return out


def _english(labels: set[str]) -> dict[str, str]:
    return {label: "a photo of " + label.replace("_", " ") for label in labels}


def _translated(labels: set[str], languages: Sequence[str], path: Path | None) -> dict[str, dict[str, str]]:
    """``{lang: {label: query}}`` for ``languages``; raises ValueError naming what is missing."""
    found = translations_for(labels, path)
    if found is None:
        raise ValueError(f"--translations: {path or PACKAGED_TRANSLATIONS} does not translate every label of this set")
    missing = [lang for lang in languages if lang not in found]
    if missing:
        raise ValueError(f"--languages: no column {', '.join(missing)} in the translations (known: {', '.join(found)})")
    return {lang: {lab: found[lang][lab] for lab in labels} for lang in languages}


def _text_metrics(rt: Runtime, db: list[LabelledImage], queries: dict[str, str]) -> dict[str, object]:
    """mAP@100, P@10 and the score bands of the top 10 of each label's text query."""
    counts = Counter(r.label for r in db if r.label)
    aps, p10s, scores, relevant = [], [], [], []
    for label in sorted(queries):
        results = rt.search.by_text(LIBRARY, queries[label], top_k=100)
        ranked = [r.tags.get("label") == label for r in results]
        aps.append(average_precision_at(ranked, counts[label], 100))
        p10s.append(precision_at(ranked, 10))
        scores += [r.score for r in results[:10]]
        relevant += ranked[:10]
    bands = score_bands(np.array(scores, dtype=np.float32), np.array(relevant, dtype=bool))
    return {"text_map100": _mean(aps), "text_p10": _mean(p10s), "text_score_bands": bands}


def _latency(rt: Runtime, sample: list[LabelledImage],
             phase: Callable[[str, int, int], None] | None = None) -> dict[str, float]:
    step = max(1, len(sample) // LATENCY_QUERIES)
    times: list[float] = []
    timed = sample[::step][:LATENCY_QUERIES]
    for row in timed:
        if phase is not None:
            phase("latency", len(times), len(timed))
        data = row.path.read_bytes()
        start = time.perf_counter()
        rt.search.by_image(LIBRARY, data, top_k=10)
        times.append((time.perf_counter() - start) * 1000)
    if phase is not None:
        phase("latency", len(times), len(timed))
    return {"query_p50_ms": round(float(np.percentile(times, 50)), 2),
            "query_p95_ms": round(float(np.percentile(times, 95)), 2)}


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None
