"""``lookalike eval creators``: precision@6 / nDCG@6 of creator search on a demo built from real photos."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

from conftest import photo, shared_set
from lookalike.cli import app
from lookalike.config import Settings
from lookalike.evaluation.creator_demo import DemoReport, build_demo, read_niches, read_queries
from lookalike.evaluation.creator_eval import evaluate_creators, load_queries, ndcg_at, niche_matches

LABELS = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket", "astronaut": "astronaut"}
PER_LABEL = 22  # build_demo needs >= 20 photos per label; 10% of 22 is held out (2 per label)
KEYS = {"creator_p6", "creator_ndcg6", "query_p50_ms", "query_p95_ms", "p6_ceiling", "n_searches", "platforms",
        "filtered", "filter_violations", "n_creators", "n_posts", "n_queries", "n_queries_skipped",
        "import_images_per_s", "import_seconds", "posts_embedded", "import_failed", "reference_date"}
FILTERS = {"followers>=10k", "female_18-34", "country_US", "engagement>=3%", "posted_30d"}


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random crop (55-90% of each side), maybe mirrored, rotated by up to 15 degrees, brightness and
    colour jittered by up to 25%, at 128 x 128 pixels."""
    w, h = image.size
    cw, ch = int(w * rng.uniform(0.55, 0.9)), int(h * rng.uniform(0.55, 0.9))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = image.crop((left, top, left + cw, top + ch)).resize((128, 128))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = out.rotate(float(rng.uniform(-15, 15)))
    out = ImageEnhance.Brightness(out).enhance(float(rng.uniform(0.75, 1.25)))
    return ImageEnhance.Color(out).enhance(float(rng.uniform(0.75, 1.25)))


def write_set(root: Path, seed: int, split: str = "") -> Path:
    """``root/images`` + ``labels.csv``: PER_LABEL augmented copies of one scikit-image photo per label."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = [("path", "label", "split")]
    for label, name in LABELS.items():
        base = photo(name)
        for k in range(PER_LABEL):
            rel = f"images/{label}_{k:02d}.jpg"
            augment(base, rng).save(root / rel, quality=90)
            rows.append((rel, label, split))
    with (root / "labels.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root


def random_p6(jsonl: Path, labels: list[str]) -> float:
    """Expected precision@6 of a random first page, from the demo files alone: a random page of
    min(6, N) of a platform's N creators holds R / N relevant ones on average. Mean over the
    (query, platform) pairs with R >= 1, as the evaluation averages."""
    niches = read_niches(jsonl)
    by_platform: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for (platform, _), creator_niches in niches.items():
        by_platform[platform].append(creator_niches)
    values = []
    for label in labels:
        for creators in by_platform.values():
            r = sum(any(n.split("/", 1)[-1] == label.split("/", 1)[-1] for n in c) for c in creators)
            if r:
                values.append(min(6, len(creators)) / 6 * r / len(creators))
    return float(np.mean(values))


def run_eval(tmp: Path, model_cache: Path, jsonl: Path, *extra: str, data_dir: Path | None = None):
    out = tmp / f"eval-{len(list(tmp.glob('eval-*.json')))}.json"
    args = ["eval", "creators", str(jsonl), "--json", str(out), *extra]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    result = CliRunner().invoke(app, args, env={"LOOKALIKE_MODEL_CACHE": str(model_cache)}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


@dataclass(frozen=True)
class Tiny:
    root: Path
    photos: Path
    jsonl: Path
    report: DemoReport
    figures: dict
    output: str


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, model_cache) -> Tiny:
    """A 24-creator demo over four labels of real photos, evaluated once through the CLI into a kept data dir."""
    root = tmp_path_factory.mktemp("creator-eval")
    photos = write_set(root / "photos", seed=1)
    jsonl = root / "demo.jsonl"
    report = build_demo([photos], jsonl, creators=24, seed=5)
    figures, output = run_eval(root, model_cache, jsonl, data_dir=root / "data")
    return Tiny(root, photos, jsonl, report, figures, output)


def check_figures(figures: dict) -> None:
    for scope in [figures, *figures["platforms"].values(), *figures["filtered"].values(),
                  *(p for f in figures["filtered"].values() for p in f["platforms"].values())]:
        for key in ("creator_p6", "creator_ndcg6", "p6_ceiling"):
            if scope["n_searches"]:
                assert 0.0 <= scope[key] <= 1.0, (key, scope)
            else:
                assert scope[key] is None
        if scope["n_searches"]:
            assert scope["creator_p6"] <= scope["p6_ceiling"] + 1e-9  # no page beats an ideal one


def test_eval_on_a_tiny_demo_beats_random_ranking(tiny):
    jsonl, report, figures = tiny.jsonl, tiny.report, tiny.figures
    assert KEYS <= set(figures) and set(figures["filtered"]) == FILTERS
    check_figures(figures)
    assert figures["n_creators"] == 24 and figures["n_posts"] == report.posts
    assert figures["n_queries"] == report.held_out == 8 and figures["n_queries_skipped"] == 0
    assert figures["posts_embedded"] == report.posts and figures["import_images_per_s"] > 0
    assert figures["import_failed"] == 0 and figures["filter_violations"] == 0
    assert figures["platforms"]["instagram"]["n_creators"] + figures["platforms"]["tiktok"]["n_creators"] == 24
    assert set(figures["sets"]) == {"photos"} and figures["sets"]["photos"]["n_searches"] == figures["n_searches"]
    baseline = random_p6(jsonl, [label for _, label in read_queries(jsonl)])
    assert figures["creator_p6"] > baseline + 0.15, (figures["creator_p6"], baseline)
    assert figures["creator_ndcg6"] > 0.8
    assert 0 < figures["query_p50_ms"] <= figures["query_p95_ms"]
    assert "nDCG@6" in tiny.output and "followers>=10k" in tiny.output


def test_filters_count_creators_by_their_own_facts(tiny):
    figures = tiny.figures
    plain = figures["n_searches"]
    for name, f in figures["filtered"].items():
        assert f["n_searches"] <= plain, name  # a filter never adds relevant creators
        assert set(f["platforms"]) == {"instagram", "tiktok"}
    # the search clock is the demo's reference date: creators who posted in its last 30 days exist
    # (by their JSONL dates), and the search finds them; with today's clock it would find none
    recent = figures["filtered"]["posted_30d"]
    assert recent["n_searches"] > 0 and recent["creator_p6"] > 0


def test_reuses_the_import_and_honours_the_reference_date(tiny, model_cache):
    figures, _ = run_eval(tiny.root, model_cache, tiny.jsonl, "--reference-date", "2030-01-01",
                          data_dir=tiny.root / "data")
    assert figures["posts_embedded"] == 0 and figures["import_images_per_s"] is None  # resumed import
    assert figures["creator_p6"] == tiny.figures["creator_p6"] and figures["reference_date"] == "2030-01-01"
    # nobody posted in the 30 days before 2030: no relevant creator, nothing counted
    assert figures["filtered"]["posted_30d"]["n_searches"] == 0
    assert figures["filtered"]["posted_30d"]["creator_p6"] is None


def test_queries_from_a_labelled_folder_match_plain_labels(tiny, model_cache, tmp_path):
    jsonl = tiny.jsonl
    queries = write_set(tmp_path / "queries", seed=2)  # fresh augmentations, labels without a set name
    figures, _ = run_eval(tmp_path, model_cache, jsonl, "--queries", str(queries), "--limit-queries", "12",
                          data_dir=tiny.root / "data")
    check_figures(figures)
    assert figures["n_queries"] == 12 and figures["n_queries_skipped"] == 0 and figures["sets"] == {}
    picked, _ = load_queries(jsonl, queries, 12)
    assert {q.label for q in picked} == set(LABELS)  # spread over every label
    assert figures["creator_p6"] > random_p6(jsonl, [q.label for q in picked]) + 0.15


def test_a_folder_of_the_posts_themselves_leaves_them_out(tiny):
    jsonl = tiny.jsonl
    found, skipped = load_queries(jsonl, tiny.photos)
    assert skipped == tiny.report.post_images  # the photos used as posts would find themselves
    assert len(found) + skipped == len(LABELS) * PER_LABEL
    held_out = {p.resolve() for p, _ in read_queries(jsonl)}
    assert held_out <= {q.path for q in found}


def test_only_query_split_rows_are_queries(tiny, tmp_path):
    jsonl = tiny.jsonl
    queries = write_set(tmp_path / "queries", seed=3)
    lines = (queries / "labels.csv").read_text().splitlines()
    lines = [lines[0]] + [line + ("query" if i % 11 == 0 else "db") for i, line in enumerate(lines[1:])]
    (queries / "labels.csv").write_text("\n".join(lines) + "\n")
    found, skipped = load_queries(jsonl, queries)
    assert len(found) == math.ceil(len(LABELS) * PER_LABEL / 11) and skipped == 0
    assert {q.label for q in found} <= set(LABELS) and all(q.path.is_file() for q in found)


def test_missing_sidecars_and_bad_folders_are_clear_errors(tiny, tmp_path, model_cache):
    jsonl = tiny.jsonl
    bare = tmp_path / "bare.jsonl"
    bare.write_bytes(jsonl.read_bytes())  # no .queries.csv / .niches.csv beside it
    env = {"LOOKALIKE_MODEL_CACHE": str(model_cache)}
    result = CliRunner().invoke(app, ["eval", "creators", str(bare)], env=env)
    assert result.exit_code == 2 and "niches" in result.output and "bare.niches.csv" in result.output
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["eval", "creators", str(jsonl), "--queries", str(tmp_path / "empty")], env=env)
    assert result.exit_code == 2 and "queries" in result.output and "labels.csv" in result.output
    result = CliRunner().invoke(app, ["eval", "creators", str(jsonl), "--reference-date", "30/06/2025"], env=env)
    assert result.exit_code == 2 and "--reference-date" in result.output


def test_ndcg_and_label_matching():
    assert ndcg_at([True, True, False], 2) == 1.0
    assert ndcg_at([False, True], 1) == pytest.approx(1 / math.log2(3))
    assert ndcg_at([True], 10) == pytest.approx(1 / sum(1 / math.log2(r + 1) for r in range(1, 7)))  # ideal: 6 on top
    assert ndcg_at([], 3) == 0.0 and ndcg_at([True], 0) == 0.0
    assert niche_matches("beaches", ("corel1k/beaches",)) and niche_matches("corel1k/beaches", ("corel1k/beaches",))
    assert not niche_matches("other/beaches", ("corel1k/beaches",)) and not niche_matches("beach", ("corel1k/beaches",))


def test_eval_on_corel1k_demo(tmp_path, model_cache, models):
    corel = shared_set("corel1k")
    jsonl = tmp_path / "demo.jsonl"
    build_demo([corel], jsonl, creators=40, seed=11)
    figures = evaluate_creators(jsonl, settings=Settings(data_dir=tmp_path / "unused", models_dir=model_cache),
                                models=models, limit_queries=10)
    check_figures(figures)
    assert figures["n_creators"] == 40 and figures["n_queries"] == 10 and figures["filter_violations"] == 0
    picked, _ = load_queries(jsonl, None, 10)
    baseline = random_p6(jsonl, [q.label for q in picked])
    assert figures["creator_p6"] > 2 * baseline and figures["creator_ndcg6"] > 0.7, (figures, baseline)
    assert datetime.fromisoformat(figures["reference_date"]).replace(tzinfo=UTC).year == 2025
