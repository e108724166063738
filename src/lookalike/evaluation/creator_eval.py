"""``lookalike eval creators``: relevance and latency of creator search on a labelled demo.

Protocol:
- Import: the JSONL file is imported into a temporary data dir (or a given one, kept; the import
  is resumable, so a second run over the same file embeds nothing and reuses the store).
- Queries: held-out photos with a label. By default the demo's sidecar ``<jsonl>.queries.csv``
  (``lookalike creators demo``: photos never used as a post). With ``queries_dir`` (``images/`` +
  ``labels.csv``), its labelled rows: only the ``split == query`` rows when the file has any,
  else every labelled row; photos that are themselves a post of the JSONL (same resolved
  ``image_path``) are left out, since they would find themselves (``n_queries_skipped``).
- Searches: every query photo searches each platform separately, the first page of 6 profiles
  (Instagram's page; TikTok asked with ``pageSize`` 6), with the search clock at the reference
  date (the demo's dates count back from it, so ``lastPostedInDays`` means what it says).
- Relevance: a returned profile is relevant when one of its niches (``<jsonl>.niches.csv``)
  matches the query's label and, under a filter, the creator passes that
  filter by ``FilterCase.passes``, which reads the creator's own JSONL line, not the search's
  mask (so the check is not circular; a returned profile that fails it counts in
  ``filter_violations``, which should be 0).
- Label matching (``niche_matches``): niches carry their set's name (``corel1k/beaches``), as do
  the sidecar's labels, which must then be equal. A folder's ``labels.csv`` has plain labels
  (``beaches``): such a label matches a niche by the part after the set name, so any folder
  labelled with the same class names works, whatever it is called (no prefix option needed).
- Metrics: precision@6 (missing ranks count as not relevant) and nDCG@6 with binary gains
  (Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques", TOIS 2002), the
  ideal DCG from R = the creators on that platform that are relevant (niche and filter), so a
  filter that leaves few relevant creators is not penalised. A (photo, platform) search counts
  only with R >= 1; averages are over the searches that count. ``p6_ceiling`` is the mean of
  min(R, 6) / 6: the best precision@6 any ranking could reach.
- Latency: wall time of one whole unfiltered search call (decode the photo's bytes, embed,
  filter, rank, read back the page's profiles and posts), p50 / p95 in ms over every query
  photo and platform, after one untimed warm-up search per platform (it builds the store's
  snapshot and runs the model once). Filtered searches reuse the photo's embedding and are not
  timed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..config import Settings
from ..errors import InvalidParameter
from ..imaging import decode_image
from ..runtime import Runtime
from ..service.creators.dictionaries import Locations
from ..service.creators.filters import parse_filters
from ..service.creators.importer import count_lines, creator_model_id
from ..service.creators.search import CreatorSearchService
from ..store.creator_types import PLATFORMS
from .creator_demo import REFERENCE_DATE, read_niches, read_queries, sidecar_paths
from .datasets import load_labels

#: Profiles judged per search: one Instagram page (``filters.INSTAGRAM_PAGE_SIZE``).
CUTOFF = 6
SECONDS_PER_DAY = 86400.0

#: ``progress(phase, done, total)``: phase ``import`` counts JSONL lines, ``search`` query photos.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class FilterCase:
    """A named search filter and an independent check of it.

    Attributes:
        name: key in the report's ``filtered``.
        filters: the request's ``filters`` object (Modash spelling), valid on every platform.
        passes: creator JSONL line (a dict) -> whether that creator satisfies the filter, computed
            from the line's own facts (not from the search's mask).
    """

    name: str
    filters: dict[str, Any]
    passes: Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class EvalQuery:
    """A query photo: ``path`` absolute, ``label`` as read (``corel1k/beaches`` or ``beaches``)."""

    path: Path
    label: str


def default_filters(reference_date: datetime = REFERENCE_DATE, locations: Locations | None = None) -> list[FilterCase]:
    """Five filters over the demo's audience facts, each with its own check.

    ``followers>=10k`` (10,000 is a TikTok snapping step, so both platforms apply exactly it),
    ``female_18-34`` (gender FEMALE, age groups 18-24 and 25-34), ``country_US`` (the United States:
    creators located in a US city or state match through the dictionary's parents),
    ``engagement>=3%``, ``posted_30d`` (newest post at most 30 days before ``reference_date``).
    """
    locations = locations or Locations.load()
    us = locations.by_code("US")
    reference_ts = reference_date.timestamp()

    def in_us(line: dict[str, Any]) -> bool:
        places = line.get("locations") or ()
        return any(i == us.id or (i in locations and us.id in locations.ancestors(i)) for i in places)

    def posted_within(line: dict[str, Any], days: int) -> bool:
        newest = max((_post_time(p) for p in line.get("posts") or ()), default=-math.inf)
        return newest >= reference_ts - days * SECONDS_PER_DAY

    return [
        FilterCase("followers>=10k", {"followersCount": {"min": 10_000}},
                   lambda c: c["followersCount"] >= 10_000),
        FilterCase("female_18-34", {"gender": "FEMALE", "age": {"min": 18, "max": 35}},
                   lambda c: c.get("gender") == "FEMALE" and c.get("ageGroup") in ("18-24", "25-34")),
        FilterCase("country_US", {"locations": [us.id]}, in_us),
        FilterCase("engagement>=3%", {"engagementRate": {"min": 0.03}},
                   lambda c: (c.get("engagementRate") or 0.0) >= 0.03),
        FilterCase("posted_30d", {"lastPostedInDays": 30}, lambda c: posted_within(c, 30)),
    ]  # fmt: skip


def niche_matches(label: str, niches: Sequence[str]) -> bool:
    """Whether a query label names one of a creator's niches.

    Niches carry their set's name (``corel1k/beaches``). A label with a ``/`` must equal a niche;
    a plain label (``beaches``, as in a labelled folder's ``labels.csv``) matches any niche whose
    part after the first ``/`` equals it, whatever its set.
    """
    if "/" in label:
        return label in niches
    return any(n.split("/", 1)[-1] == label for n in niches)


def ndcg_at(relevant: Sequence[bool], n_relevant: int, k: int = CUTOFF) -> float:
    """nDCG@k with binary gains: DCG = sum of 1 / log2(rank + 1) over relevant ranks <= k,
    divided by the DCG of min(n_relevant, k) relevant results on top. 0 when ``n_relevant`` is 0."""
    if n_relevant <= 0:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 1) for rank, rel in enumerate(relevant[:k], start=1) if rel)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(n_relevant, k) + 1))
    return dcg / ideal


def load_queries(jsonl: Path, queries_dir: Path | None = None, limit: int | None = None) -> tuple[list[EvalQuery], int]:
    """The query photos (see the module docstring) and how many were left out as posts.

    Args:
        limit: keep at most this many, evenly spaced over the list (sorted by label), so every
            label stays represented.

    Raises:
        InvalidParameter: no sidecar / no ``labels.csv``, or no labelled query photo left.
    """
    skipped = 0
    if queries_dir is None:
        sidecar, _ = sidecar_paths(Path(jsonl).resolve())
        if not sidecar.is_file():
            raise InvalidParameter(f"queries: {sidecar} not found; give --queries DIR or evaluate a file written "
                                   "by 'lookalike creators demo'")
        found = [EvalQuery(path, label) for path, label in read_queries(jsonl)]
    else:
        try:
            rows = load_labels(Path(queries_dir))
        except (FileNotFoundError, ValueError) as exc:
            raise InvalidParameter(f"queries: {queries_dir} needs images/ and labels.csv (path,label,split): {exc}") from None
        if any(r.split == "query" for r in rows):
            rows = [r for r in rows if r.split == "query"]
        posts = _post_paths(jsonl)
        kept = [r for r in rows if r.label and r.path.resolve() not in posts]
        skipped = sum(1 for r in rows if r.label) - len(kept)
        found = [EvalQuery(r.path.resolve(), r.label) for r in kept]
    if limit is not None and 0 < limit < len(found):
        found = [found[i] for i in np.unique(np.linspace(0, len(found) - 1, limit).round().astype(int))]
    if not found:
        raise InvalidParameter("queries: no labelled query photo to search with")
    return found, skipped


def evaluate_creators(
    jsonl: Path,
    *,
    queries: Path | None = None,
    settings: Settings,
    models: Callable[[str], Any] | None = None,
    filters: Sequence[FilterCase] | None = None,
    progress: Progress | None = None,
    data_dir: Path | None = None,
    reference_date: datetime = REFERENCE_DATE,
    limit_queries: int | None = None,
) -> dict[str, Any]:
    """Import ``jsonl`` and measure creator search on its held-out queries (module docstring).

    Args:
        queries: a labelled folder of query photos; None: the demo's ``<jsonl>.queries.csv``.
        settings: the ONNX model cache, the default model and the limits; the data dir is
            ``data_dir`` when given (kept), else a temporary one (removed afterwards).
        models: model id -> model (default: loaded from ``settings.model_cache_dir``).
        filters: filter cases (default ``default_filters(reference_date)``).
        reference_date: the search clock (timezone-aware); the demo's dates count back from it.
        limit_queries: search with at most this many query photos.

    Returns:
        ``creator_p6``, ``creator_ndcg6``, ``p6_ceiling``, ``n_searches`` (unfiltered, both
        platforms), ``query_p50_ms``, ``query_p95_ms``, ``platforms`` (the same per platform,
        with ``n_creators``, ``n_posts``), ``sets`` (unfiltered figures per labelled set, from the
        labels' ``set/`` part; empty for plain labels), ``filtered`` (name -> ``filters``, ``creator_p6``,
        ``creator_ndcg6``, ``p6_ceiling``, ``n_queries``, ``n_searches``, ``platforms``),
        ``filter_violations``, ``n_creators``, ``n_posts``, ``n_queries`` (query photos),
        ``n_queries_skipped``, ``n_unknown_creators`` (stored but not in the niches file),
        ``import_seconds``, ``posts_embedded``, ``import_images_per_s`` (None when nothing
        was embedded), ``import_failed``, ``reference_date``. Figures are rounded to 4 places,
        times to 0.01 ms; a metric without a counted search is None.

    Raises:
        InvalidParameter: a missing sidecar, no query photo, no creator imported, a bad filter.
        OSError: the JSONL file cannot be read. Model errors propagate.
    """
    jsonl = Path(jsonl).resolve()
    if reference_date.tzinfo is None:
        raise InvalidParameter("reference_date: must carry a timezone (e.g. UTC)")
    niches = _niches(jsonl)
    found, skipped = load_queries(jsonl, queries, limit_queries)
    cases = list(filters) if filters is not None else default_filters(reference_date)
    with _runtime(settings, models, data_dir) as rt:
        out: dict[str, Any] = {"reference_date": reference_date.date().isoformat()}
        out |= _import(rt, jsonl, progress)
        judge = _Judge(rt, jsonl, niches, cases)
        search = _search_service(rt, reference_date.timestamp())
        out |= judge.counts()
        out |= {"n_queries": len(found), "n_queries_skipped": skipped}
        out |= _run_queries(search, judge, found, cases, progress)
    return out


# --- setup ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _runtime(settings: Settings, models: Callable[[str], Any] | None, data_dir: Path | None) -> Iterator[Runtime]:
    with contextlib.ExitStack() as stack:
        where = Path(data_dir) if data_dir is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="lookalike-creator-eval-")))
        rt = Runtime.open(dataclasses.replace(settings, data_dir=where, models_dir=settings.model_cache_dir),
                          models=models)
        try:
            yield rt
        finally:
            rt.close()


def _niches(jsonl: Path) -> dict[tuple[str, str], tuple[str, ...]]:
    _, path = sidecar_paths(jsonl)
    if not path.is_file():
        raise InvalidParameter(f"niches: {path} not found; the evaluation needs the creators' niches, written by "
                               "'lookalike creators demo' beside its JSONL file")
    return read_niches(jsonl)


def _import(rt: Runtime, jsonl: Path, progress: Progress | None) -> dict[str, Any]:
    total, done = count_lines(jsonl), 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress("import", done, total)

    start = time.perf_counter()
    outcome = rt.creator_importer.import_jsonl(jsonl, progress=step)
    seconds = time.perf_counter() - start
    if not outcome.imported and not outcome.unchanged:
        first = outcome.failed[0][1] if outcome.failed else "the file holds no creator"
        raise InvalidParameter(f"{jsonl}: no creator could be imported ({first})")
    rate = outcome.posts_embedded / seconds if outcome.posts_embedded else None
    return {"import_seconds": round(seconds, 2), "posts_embedded": outcome.posts_embedded,
            "import_images_per_s": None if rate is None else round(rate, 2), "import_failed": len(outcome.failed)}


def _search_service(rt: Runtime, reference_ts: float) -> CreatorSearchService:
    """Creator search as ``Runtime.creator_search`` wires it, but with the clock at the reference date
    and the query embedding computed once per decoded photo (``_EmbedOnce``)."""
    model = rt.models(creator_model_id(rt.creators.model_id(), rt.settings.default_model))
    return CreatorSearchService(rt.creators, _EmbedOnce(model), rt.locations.expand, clock=lambda: reference_ts,
                                calibration=model.info.image_calibration)


class _EmbedOnce:
    """Image -> (d,) float32 ``visual`` embedding, remembered for the last image object: a photo's
    filtered searches reuse the embedding of its timed search (which decoded a fresh image)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._image: Image.Image | None = None
        self._vector: np.ndarray | None = None

    def __call__(self, image: Image.Image) -> np.ndarray:
        if image is not self._image:
            self._vector = self._model.embed_images([image]).visual[0]
            self._image = image
        return self._vector


# --- judging -------------------------------------------------------------------------------------


class _Judge:
    """Ground truth per platform: the stored creators' niches and, per filter case, who passes it
    by the creator's own JSONL line."""

    def __init__(self, rt: Runtime, jsonl: Path, niches: dict[tuple[str, str], tuple[str, ...]],
                 cases: Sequence[FilterCase]) -> None:
        lines = _lines(jsonl)
        self.stored: dict[str, list[str]] = {}
        self.n_posts: dict[str, int] = {}
        for platform in PLATFORMS:
            snap = rt.creators.snapshot(platform)
            self.stored[platform] = [str(u) for u in snap.creators.user_ids]
            self.n_posts[platform] = len(snap.posts)
        self.niches = niches
        self.unknown = sum(1 for p, ids in self.stored.items() for u in ids if (p, u) not in niches)
        self.passing: dict[str | None, set[tuple[str, str]]] = {
            None: {(p, u) for p, ids in self.stored.items() for u in ids}}
        for case in cases:
            self.passing[case.name] = {key for key in self.passing[None] if key in lines and case.passes(lines[key])}
        self._r: dict[tuple[str | None, str, str], int] = {}

    def counts(self) -> dict[str, Any]:
        return {"n_creators": sum(len(v) for v in self.stored.values()), "n_posts": sum(self.n_posts.values()),
                "n_unknown_creators": self.unknown}

    def relevant(self, case: str | None, platform: str, user_id: str, label: str) -> bool:
        key = (platform, user_id)
        return key in self.passing[case] and niche_matches(label, self.niches.get(key, ()))

    def n_relevant(self, case: str | None, platform: str, label: str) -> int:
        """R: creators on ``platform`` relevant to ``label`` under ``case`` (cached per label)."""
        key = (case, platform, label)
        if key not in self._r:
            self._r[key] = sum(self.relevant(case, platform, u, label) for u in self.stored[platform])
        return self._r[key]


def _lines(jsonl: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(platform, userId) -> the creator's JSONL line; lines that are not a creator object are skipped
    (the import reported them)."""
    found = {}
    with jsonl.open("rb") as fh:
        for raw in fh:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if isinstance(line, dict) and line.get("platform") in PLATFORMS and "userId" in line:
                    found[(line["platform"], str(line["userId"]))] = line
    return found


def _post_paths(jsonl: Path) -> set[Path]:
    base = Path(jsonl).resolve().parent
    return {(base / p["image_path"]).resolve() for line in _lines(Path(jsonl)).values()
            for p in line.get("posts") or () if isinstance(p, dict) and isinstance(p.get("image_path"), str)}


def _post_time(post: object) -> float:
    """A post's ``created_at`` in Unix seconds, read the way the importer reads it (UTC without offset)."""
    value = post.get("created_at") if isinstance(post, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return -math.inf
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# --- searching -----------------------------------------------------------------------------------


@dataclass
class _Tally:
    """Per-search figures of one (filter case, platform): precision@6, nDCG@6, ceiling, query photo."""

    p6: list[float] = dataclasses.field(default_factory=list)
    ndcg: list[float] = dataclasses.field(default_factory=list)
    ceiling: list[float] = dataclasses.field(default_factory=list)
    photos: set[int] = dataclasses.field(default_factory=set)

    def add(self, photo: int, ranked: list[bool], n_relevant: int) -> None:
        self.p6.append(sum(ranked[:CUTOFF]) / CUTOFF)
        self.ndcg.append(ndcg_at(ranked, n_relevant, CUTOFF))
        self.ceiling.append(min(n_relevant, CUTOFF) / CUTOFF)
        self.photos.add(photo)


def _run_queries(search: CreatorSearchService, judge: _Judge, found: list[EvalQuery], cases: Sequence[FilterCase],
                 progress: Progress | None) -> dict[str, Any]:
    parsed = {(c.name, p): parse_filters(p, c.filters) for c in cases for p in PLATFORMS}
    plain = {p: parse_filters(p, None) for p in PLATFORMS}
    tallies: dict[tuple[str | None, str], _Tally] = {(n, p): _Tally() for n in [None, *(c.name for c in cases)]
                                                      for p in PLATFORMS}
    by_set: dict[str, _Tally] = {}  # unfiltered, per labelled set (the label's part before "/")
    times: dict[str, list[float]] = {p: [] for p in PLATFORMS}
    violations = 0
    warm = decode_image(found[0].path.read_bytes(), field=str(found[0].path))
    for platform in PLATFORMS:  # untimed: the first call loads the snapshot and warms the model
        search.search(platform, warm, plain[platform], 0, CUTOFF)
    for i, query in enumerate(found):
        data = query.path.read_bytes()
        for platform in PLATFORMS:
            start = time.perf_counter()
            image = decode_image(data, field=str(query.path))
            page = search.search(platform, image, plain[platform], 0, CUTOFF)
            times[platform].append((time.perf_counter() - start) * 1000)
            _judge_page(judge, tallies[None, platform], None, platform, query, i, page)
            if "/" in query.label:
                _judge_page(judge, by_set.setdefault(query.label.split("/", 1)[0], _Tally()), None, platform,
                            query, i, page)
            for case in cases:
                page = search.search(platform, image, parsed[case.name, platform], 0, CUTOFF)
                violations += sum((platform, m.creator.user_id) not in judge.passing[case.name] for m in page.profiles)
                _judge_page(judge, tallies[case.name, platform], case.name, platform, query, i, page)
        if progress is not None:
            progress("search", i + 1, len(found))
    return _report(tallies, by_set, times, judge, cases, violations)


def _judge_page(judge: _Judge, tally: _Tally, case: str | None, platform: str, query: EvalQuery, photo: int,
                page: Any) -> None:
    n_relevant = judge.n_relevant(case, platform, query.label)
    if n_relevant:
        ranked = [judge.relevant(case, platform, m.creator.user_id, query.label) for m in page.profiles]
        tally.add(photo, ranked, n_relevant)


def _report(tallies: dict[tuple[str | None, str], _Tally], by_set: dict[str, _Tally], times: dict[str, list[float]],
            judge: _Judge, cases: Sequence[FilterCase], violations: int) -> dict[str, Any]:
    def summary(parts: list[_Tally]) -> dict[str, Any]:
        merged = _Tally([x for t in parts for x in t.p6], [x for t in parts for x in t.ndcg],
                        [x for t in parts for x in t.ceiling], {x for t in parts for x in t.photos})
        return {"creator_p6": _mean(merged.p6), "creator_ndcg6": _mean(merged.ndcg),
                "p6_ceiling": _mean(merged.ceiling), "n_queries": len(merged.photos), "n_searches": len(merged.p6)}

    out = summary([tallies[None, p] for p in PLATFORMS])
    out.pop("n_queries")  # the top level's n_queries counts the query photos searched
    out |= _latency([t for p in PLATFORMS for t in times[p]])
    out["platforms"] = {p: {**summary([tallies[None, p]]), **_latency(times[p]), "n_creators": len(judge.stored[p]),
                            "n_posts": judge.n_posts[p]} for p in PLATFORMS}
    out["sets"] = {name: summary([tally]) for name, tally in sorted(by_set.items())}
    out["filtered"] = {c.name: {"filters": c.filters, **summary([tallies[c.name, p] for p in PLATFORMS]),
                                "platforms": {p: summary([tallies[c.name, p]]) for p in PLATFORMS}} for c in cases}
    out["filter_violations"] = violations
    return out


def _latency(times: list[float]) -> dict[str, float | None]:
    if not times:
        return {"query_p50_ms": None, "query_p95_ms": None}
    return {"query_p50_ms": round(float(np.percentile(times, 50)), 2),
            "query_p95_ms": round(float(np.percentile(times, 95)), 2)}


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None
