"""``lookalike eval multi-item`` on real composed images of ../shared/datasets/sop_subset products.

Skips without that set or without the U²-Netp weights (``bash scripts/setup.sh`` installs them).
The run is small (6 composed images, a 60-photo library) so the figures themselves are not
asserted: only what must hold whatever the model finds.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import shared_set
from lookalike.cli import app
from lookalike.errors import ModelUnavailable
from lookalike.evaluation.multi_item import (
    detection_recall,
    evaluate_multi_item,
    load_composed,
)
from lookalike.models import load_detector
from lookalike.store import EmbeddedStore

SEED, IMAGES, LIMIT = 5, 6, 60
FRACTIONS = ("items_found_top10_plain", "items_found_top10_segmented", "items_found_top10_per_segment",
             "items_found_top10_any_segment", "detection_recall", "items_found_top10_true_box",
             "items_found_top10_true_boxes_merged")


@pytest.fixture(scope="module")
def detector():
    try:
        return load_detector()
    except ModelUnavailable as exc:
        pytest.skip(f"needs the U²-Netp item detector weights ({exc.message})")


@pytest.fixture(scope="module")
def run(tmp_path_factory, model_cache, detector):
    """The CLI run: (its exit result, the figures it wrote, its data dir)."""
    sop = shared_set("sop_subset")
    where = tmp_path_factory.mktemp("multi")
    out = where / "figures.json"
    args = ["eval", "multi-item", str(sop), "--images", str(IMAGES), "--seed", str(SEED), "--library-limit",
            str(LIMIT), "--json", str(out), "--data-dir", str(where / "state")]
    result = CliRunner().invoke(app, args, env={"LOOKALIKE_MODEL_CACHE": str(model_cache)})
    assert result.exit_code == 0, result.output
    return result, json.loads(out.read_text()), where / "state"


def test_report_has_every_figure_in_range(run):
    result, figures, _ = run
    assert "lookalike eval multi-item sop_subset" in result.output
    for key in FRACTIONS:
        assert 0.0 <= figures[key] <= 1.0, key
    assert (figures["n_images"], figures["n_items"]) == (IMAGES, 15)  # 2, 3, 2, 3, 2, 3 items
    assert (figures["mode"], figures["crop_type"], figures["top_k"], figures["seed"]) == (
        "general_search", "bbox", 10, SEED)
    assert figures["detections_per_image"] >= 0
    # The segmented query runs the detector and embeds every segment on top of what the plain one does.
    assert 0 < figures["plain_p50_ms"] < figures["segmented_p50_ms"]
    assert figures["plain_p50_ms"] <= figures["plain_p95_ms"]


def test_splits_partition_the_items(run):
    _, figures, _ = run
    for group, names in (("by_background", {"neutral", "busy"}), ("by_item_count", {"2", "3"})):
        parts = figures[group]
        assert set(parts) == names
        assert sum(p["n_items"] for p in parts.values()) == figures["n_items"]
        for key in FRACTIONS:  # the overall share is the item-weighted mean of the parts
            mean = sum(p[key] * p["n_items"] for p in parts.values()) / figures["n_items"]
            assert figures[key] == pytest.approx(mean, abs=1e-3), (group, key)
    assert figures["by_item_count"]["2"]["n_items"] == 6 and figures["by_item_count"]["3"]["n_items"] == 9


def test_item_rules_are_consistent(run):
    _, figures, _ = run
    for scope in (figures, *figures["by_background"].values(), *figures["by_item_count"].values()):
        # An item found by its own segment was detected; every list a segment returns is searched
        # by "any segment", and the merged list only holds results of those lists.
        assert scope["items_found_top10_per_segment"] <= scope["detection_recall"]
        assert scope["items_found_top10_per_segment"] <= scope["items_found_top10_any_segment"]
        assert scope["items_found_top10_segmented"] <= scope["items_found_top10_any_segment"]


def test_detection_recall_is_the_detectors_on_the_same_set(run, detector):
    _, figures, state = run
    composed = load_composed(state / f"composed-s{SEED}-n{IMAGES}")
    direct = detection_recall(detector, composed, iou=0.5)
    assert figures["detection_recall"] == pytest.approx(direct["recall"], abs=1e-4)
    assert figures["detections_per_image"] == pytest.approx(direct["detections_per_image"], abs=1e-4)
    for kind, part in direct["by_background"].items():
        assert figures["by_background"][kind]["detection_recall"] == pytest.approx(part["recall"], abs=1e-4)


def test_library_holds_the_other_photos_never_the_pasted_ones(run):
    _, figures, state = run
    composed = load_composed(state / f"composed-s{SEED}-n{IMAGES}")
    pasted = {it.source.name for img in composed.images for it in img.items}
    labels = {it.label for img in composed.images for it in img.items}
    store = EmbeddedStore(state / "data" / "lookalike.db", state / "data" / "index")
    try:
        library = f"multi-general_search-s{SEED}-n{IMAGES}-l{LIMIT}"
        stored = {r.image_id: r.tags["label"] for r in store.list_images(library, limit=1000)}
    finally:
        store.close()
    assert len(stored) == figures["library_size"] == LIMIT
    assert not pasted & set(stored)
    own = [r for r in composed.library if r.label in labels]
    assert {r.path.name for r in own} <= set(stored)  # every other photo of every pasted product
    assert labels <= set(stored.values())


def test_rerun_on_the_kept_data_dir_reuses_the_library_and_gives_the_same_figures(run, model_cache):
    _, figures, state = run
    from lookalike.config import Settings

    seen: list[tuple[str, int, int]] = []
    again = evaluate_multi_item(shared_set("sop_subset"), settings=Settings(models_dir=model_cache), n_images=IMAGES,
                                seed=SEED, library_limit=LIMIT, data_dir=state,
                                progress=lambda *a: seen.append(a))
    for key in (*FRACTIONS, "n_items", "library_size", "detections_per_image"):
        assert again[key] == figures[key], key
    assert seen[-1] == ("search", IMAGES, IMAGES) and ("import", LIMIT, LIMIT) in seen


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--crop-type", "diamond"], "crop_type"), (["--mode", "fuzzy"], "mode"), (["--images", "400"], "products")],
)
def test_bad_options_fail_with_a_clear_message(tmp_path, extra, message):
    sop = shared_set("sop_subset")
    result = CliRunner().invoke(app, ["eval", "multi-item", str(sop), "--data-dir", str(tmp_path), *extra])
    assert result.exit_code == 2
    assert message in result.output


def test_missing_set_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["eval", "multi-item", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "labels.csv" in result.output
