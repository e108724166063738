"""item_search libraries and multi-item (segmented) image queries, through the HTTP API.

The end-to-end tests use the real U²-Netp detector on scenes composed from real photos
(scikit-image and mvtb-data): products pasted at known boxes onto real texture photos. They
skip when the detector weights are not installed (``bash scripts/setup.sh`` installs them).
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import admin_headers, b64, encode, photo
from lookalike.api import create_app
from lookalike.demo import demo_photos
from lookalike.errors import InvalidParameter, ModelUnavailable
from lookalike.models.detector import Detection, U2NetpDetector, u2netp_path
from lookalike.runtime import Runtime
from lookalike.service.search import SearchResult, interleave

API = "/api/v1/operators/image-search"

# A small catalogue of real photos: products, scenes and the textures the queries are
# composed on (so a whole-image query of a busy scene has its background to match).
CATALOGUE = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "brick", "grass",
    "horse", "butterfly", "church", "penguins", "lab-scene", "monalisa",
)  # fmt: skip


def _iou(a: tuple, b: tuple) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def scene(background: str, items: list[tuple[str, tuple[int, int, int, int]]], size=(640, 480)) -> Image.Image:
    """A real texture photo resized to ``size`` with each product photo pasted at its (x, y, w, h)."""
    canvas = photo(background).resize(size)
    for name, (x, y, w, h) in items:
        canvas.paste(photo(name).resize((w, h)), (x, y))
    return canvas


def _search(client, library: str, image: Image.Image, **extra) -> dict:
    r = client.post(f"{API}/search/by-image", json={"library_name": library, "image_base64": b64(encode(image)), **extra})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def _ids(results: list[dict]) -> list[str]:
    return [h["image_id"] for h in results]


# -- the merge rule ----------------------------------------------------------------------------


def _r(image_id: str, score: float, segment: int) -> SearchResult:
    return SearchResult(image_id=image_id, image_uri=None, score=score, tags={}, segment=segment)


def test_interleave_deduplicates_and_takes_turns():
    strong = [_r("a", 0.99, 0), _r("b", 0.98, 0), _r("c", 0.97, 0), _r("shared", 0.60, 0)]
    weak = [_r("shared", 0.80, 1), _r("x", 0.50, 1), _r("y", 0.40, 1)]
    merged = interleave([strong, weak], top_k=10)
    # each round: one result of every segment, ordered by score; "shared" stays with segment 1
    assert [(r.image_id, r.segment) for r in merged] == [
        ("a", 0), ("shared", 1), ("b", 0), ("x", 1), ("c", 0), ("y", 1)
    ]
    assert next(r for r in merged if r.image_id == "shared").score == 0.80
    assert [r.image_id for r in interleave([strong, weak], top_k=3)] == ["a", "shared", "b"]
    # a score-sorted merge would have given segment 0 the whole top 3
    assert interleave([], top_k=5) == [] and interleave([[], weak], top_k=1)[0].image_id == "shared"


# -- validation and errors (no detection needed) -----------------------------------------------


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"search_crop_type": "circle"}, "search_crop_type"),
        ({"search_crop_type": None}, "search_crop_type"),
        ({"use_segmentation": "yes"}, "use_segmentation"),
        ({"use_segmentation": 1}, "use_segmentation"),
        ({"return_segments": "true"}, "return_segments"),
        ({"use_segmentation": True, "top_k": 101}, "top_k"),
    ],
)
def test_invalid_segmentation_parameters_are_400_naming_the_field(client, extra, field):
    client.post(f"{API}/libraries", json={"library_name": "photos"})
    body = {"library_name": "photos", "image_base64": b64(encode(photo("coffee"))), **extra}
    r = client.post(f"{API}/search/by-image", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == "INVALID_PARAMETER" and r.json()["message"].startswith(field)


def test_text_search_on_item_search_is_mode_not_supported(client):
    client.post(f"{API}/libraries", json={"library_name": "tops", "mode": "item_search"})
    r = client.post(f"{API}/search/by-text", json={"library_name": "tops", "query_text": "a red top"})
    assert r.status_code == 400 and r.json()["status"] == "MODE_NOT_SUPPORTED"
    assert "item_search" in r.json()["message"]


def test_service_top_k_goes_to_1000_for_paging(runtime):
    runtime.libraries.create("lib")
    data = encode(photo("coffee"))
    assert runtime.search.search_image("lib", data, top_k=1000).results == []
    for bad in (0, 1001, True, "5"):
        with pytest.raises(InvalidParameter, match="^top_k"):
            runtime.search.search_image("lib", data, top_k=bad)
    with pytest.raises(InvalidParameter, match="^upload: image is"):
        runtime.search.search_image("lib", b"\xff" * (runtime.settings.max_query_bytes + 1), field="upload")


@pytest.fixture
def no_detector_client(settings, models, tmp_path):
    """A server whose detector weights are missing (the real loader, pointed at no file)."""
    runtime = Runtime.open(settings, models=models, detector=lambda: U2NetpDetector(tmp_path / "missing.onnx"))
    with TestClient(create_app(runtime), raise_server_exceptions=False, headers=admin_headers(runtime)) as c:
        yield c


def test_missing_detector_model_fails_only_requests_that_need_it(no_detector_client):
    client = no_detector_client
    images = [{"image_id": n, "image_base64": b64(encode(photo(n)))} for n in ("coffee", "rocket")]
    for name, mode in (("general", "general_search"), ("items", "item_search")):
        assert client.post(f"{API}/libraries", json={"library_name": name, "mode": mode}).status_code == 201
    assert client.post(f"{API}/libraries/general/images", json={"images": images}).status_code == 201
    assert _ids(_search(client, "general", photo("coffee"))["results"])[0] == "coffee"

    r = client.post(f"{API}/libraries/items/images", json={"images": images})
    assert r.status_code == 400 and r.json()["status"] == "MODEL_UNAVAILABLE"
    assert "item detector weights not found" in r.json()["message"] and "setup.sh" in r.json()["message"]
    assert client.get(f"{API}/libraries/items").json()["data"]["image_count"] == 0  # nothing half-written
    query = {"image_base64": b64(encode(photo("coffee")))}
    for body in ({"library_name": "items"}, {"library_name": "general", "use_segmentation": True},
                 {"library_name": "general", "return_segments": True}):
        r = client.post(f"{API}/search/by-image", json={**body, **query})
        assert r.status_code == 400 and r.json()["status"] == "MODEL_UNAVAILABLE", (body, r.text)


# -- segments with a scripted detector: exact boxes, scaling, fallback ---------------------------


class BoxDetector:
    """A stand-in detector that finds fixed boxes given as fractions of the image it is shown
    (so the service's scaling back to the pixels of the image as sent can be checked exactly)."""

    model_id = "boxes"

    def __init__(self, boxes: list[tuple[float, float, float, float]]) -> None:
        self.boxes = boxes
        self.seen: list[tuple[int, int]] = []

    def detect(self, image: Image.Image, max_items: int = 5) -> list[Detection]:
        self.seen.append(image.size)
        found = []
        for fx, fy, fw, fh in self.boxes[:max_items]:
            x, y, w, h = round(fx * image.width), round(fy * image.height), round(fw * image.width), round(fh * image.height)
            mask = np.zeros((image.height, image.width), bool)
            mask[y : y + h, x : x + w] = True
            found.append(Detection(bbox=(x, y, w, h), mask=mask, mask_area=w * h, score=0.9, label="thing"))
        return found


@pytest.fixture
def scripted(settings, models):
    detector = BoxDetector([(0.05, 0.1, 0.3, 0.3), (0.5, 0.6, 0.35, 0.3)])
    runtime = Runtime.open(settings, models=models, detector=lambda: detector)
    with TestClient(create_app(runtime), raise_server_exceptions=False, headers=admin_headers(runtime)) as c:
        c.post(f"{API}/libraries", json={"library_name": "general"})
        images = [{"image_id": n, "image_base64": b64(encode(photo(n)))} for n in ("coffee", "chelsea", "rocket", "astronaut")]
        assert c.post(f"{API}/libraries/general/images", json={"images": images}).status_code == 201
        yield c, detector


def test_segment_boxes_are_in_pixels_of_the_image_as_sent(scripted):
    client, detector = scripted
    big = scene("brick", [("coffee", (100, 150, 600, 450)), ("chelsea", (1000, 900, 700, 450))], size=(2000, 1500))
    data = _search(client, "general", big, return_segments=True, top_k=3)
    assert detector.seen[-1] == (1000, 750)  # the JPEG was decoded at half size (draft mode)
    boxes = [s["bbox"] for s in data["segments"]]
    assert boxes == [{"x": 100, "y": 150, "width": 600, "height": 450}, {"x": 1000, "y": 900, "width": 700, "height": 450}]
    assert [s["mask_area"] for s in data["segments"]] == [600 * 450, 700 * 450]
    assert [(s["index"], s["label"], s["score"]) for s in data["segments"]] == [(0, "thing", 0.9), (1, "thing", 0.9)]
    assert all(h["segment"] == s["index"] for s in data["segments"] for h in s["results"])
    assert all("segment" not in h for h in data["results"])  # without use_segmentation: the plain query
    assert data["results"] == _search(client, "general", big, top_k=3)["results"]


def test_nothing_detected_falls_back_to_one_whole_image_segment(scripted):
    client, detector = scripted
    detector.boxes = []
    query = photo("rocket").resize((300, 400))
    data = _search(client, "general", query, use_segmentation=True, return_segments=True, top_k=2)
    assert len(data["segments"]) == 1
    seg = data["segments"][0]
    assert seg["bbox"] == {"x": 0, "y": 0, "width": 300, "height": 400} and seg["mask_area"] == 300 * 400
    assert seg["label"] is None and seg["score"] == 0.0
    plain = _search(client, "general", query, top_k=2)["results"]
    assert [(h["image_id"], h["score"]) for h in data["results"]] == [(h["image_id"], h["score"]) for h in plain]
    assert _ids(data["results"])[0] == "rocket" and {h["segment"] for h in data["results"]} == {0}


def test_plain_response_shape_is_unchanged(scripted):
    client, detector = scripted
    for path, query in (("by-image", {"image_base64": b64(encode(photo("coffee")))}), ("by-text", {"query_text": "a cup"})):
        body = client.post(f"{API}/search/{path}", json={"library_name": "general", "top_k": 1, **query}).json()
        assert body["status"] == "SUCCESS" and set(body["data"]) == {"results"}, body
        assert set(body["data"]["results"][0]) == {"image_id", "image_uri", "image_base64", "score", "tags"}
        assert body["data"]["results"][0]["image_id"] == "coffee"
    assert detector.seen == []  # a general_search library's plain query runs no detection


# -- end to end with the real detector on composed real photos ------------------------------------


def _detector_installed() -> None:
    try:
        u2netp_path()
    except ModelUnavailable as exc:
        pytest.skip(f"needs the U²-Netp item detector weights ({exc})")


@pytest.fixture(scope="module")
def shop(tmp_path_factory, models):
    """One server with the same catalogue in an item_search and a general_search library."""
    _detector_installed()
    from lookalike.config import Settings

    runtime = Runtime.open(Settings(data_dir=tmp_path_factory.mktemp("shop")), models=models)
    paths = {p.stem: p for p, _ in demo_photos()}
    images = [{"image_id": n, "image_base64": b64(paths[n].read_bytes()), "tags": {"name": n}} for n in CATALOGUE if n in paths]
    assert {"coffee", "chelsea", "brick", "grass"} <= {i["image_id"] for i in images}
    with TestClient(create_app(runtime), raise_server_exceptions=False, headers=admin_headers(runtime)) as client:
        for name, mode in (("items", "item_search"), ("general", "general_search")):
            assert client.post(f"{API}/libraries", json={"library_name": name, "mode": mode}).status_code == 201
            r = client.post(f"{API}/libraries/{name}/images", json={"images": images})
            assert r.status_code == 201, r.text
        yield client


COFFEE_BOX = (30, 60, 200, 133)
CHELSEA_BOX = (380, 280, 200, 152)


@pytest.mark.parametrize("background", ["brick", "grass"])
def test_item_search_finds_a_small_product_in_a_busy_scene(shop, background):
    query = scene(background, [("coffee", (420, 300, 160, 107))])  # the cup fills 6% of the photo
    items = _search(shop, "items", query, top_k=5)["results"]
    general = _search(shop, "general", query, top_k=5)["results"]
    assert items[0]["image_id"] == "coffee" and items[0]["score"] >= 0.7
    # the whole-image embedding is dominated by the background: its own texture wins there
    assert general[0]["image_id"] == background
    general_coffee = next((h["score"] for h in general if h["image_id"] == "coffee"), 0.0)
    assert items[0]["score"] - general_coffee >= 0.2, (items, general)


def test_segmentation_finds_every_item_where_the_plain_query_misses_one(shop):
    query = scene("brick", [("coffee", COFFEE_BOX), ("chelsea", CHELSEA_BOX)])
    plain = _ids(_search(shop, "items", query, top_k=5)["results"])
    assert plain[0] in ("coffee", "chelsea") and not {"coffee", "chelsea"} <= set(plain)
    for library in ("items", "general"):
        merged = _search(shop, library, query, use_segmentation=True, top_k=2)["results"]
        assert set(_ids(merged)) == {"coffee", "chelsea"}, (library, merged)
        assert {h["segment"] for h in merged} == {0, 1}
    # every segment's search applies the same tag_filter
    flt = {"field": "name", "op": "not_in", "value": ["coffee"]}
    filtered = _search(shop, "items", query, use_segmentation=True, return_segments=True, top_k=4, tag_filter=flt)
    assert "coffee" not in _ids(filtered["results"]) and "chelsea" in _ids(filtered["results"])
    assert all("coffee" not in _ids(s["results"]) for s in filtered["segments"])


def test_return_segments_gives_boxes_masks_and_per_segment_results(shop):
    # sent as a large JPEG, which the server decodes at reduced size: boxes must come back in sent pixels
    big = scene("brick", [("coffee", (75, 150, 500, 333)), ("chelsea", (950, 700, 500, 380))], size=(1600, 1200))
    pasted = {"coffee": (75, 150, 500, 333), "chelsea": (950, 700, 500, 380)}
    data = _search(shop, "items", big, use_segmentation=True, return_segments=True, top_k=6, return_image_base64=True)
    segments = data["segments"]
    assert [s["index"] for s in segments] == list(range(len(segments))) and 2 <= len(segments) <= 5
    by_item = {}
    for s in segments[:2]:
        top = s["results"][0]["image_id"]
        by_item[top] = s
        box = tuple(s["bbox"][k] for k in ("x", "y", "width", "height"))
        assert _iou(box, pasted[top]) >= 0.5, (top, box)
        assert 0 < s["mask_area"] <= box[2] * box[3] and 0 <= s["score"] <= 1 and s["label"] is None
        assert all(h["segment"] == s["index"] for h in s["results"]) and len(s["results"]) == 6
        assert s["results"][0]["score"] >= 0.7
    assert set(by_item) == {"coffee", "chelsea"}
    merged = data["results"]
    assert len(merged) == 6 and len(set(_ids(merged))) == 6
    # fair interleaving: the first round holds one result of each segment
    assert {h["segment"] for h in merged[: len(segments)]} == set(range(len(segments)))
    assert Image.open(io.BytesIO(base64.b64decode(merged[0]["image_base64"]))).size[0] > 0
    assert all(h["image_base64"] for s in segments for h in s["results"])


def test_return_segments_without_segmentation_keeps_the_plain_results(shop):
    query = scene("brick", [("coffee", COFFEE_BOX), ("chelsea", CHELSEA_BOX)])
    plain = _search(shop, "items", query, top_k=4)
    with_segments = _search(shop, "items", query, top_k=4, return_segments=True)
    assert with_segments["results"] == plain["results"] and "segments" not in plain
    tops = {s["results"][0]["image_id"] for s in with_segments["segments"]}
    assert {"coffee", "chelsea"} <= tops


def test_segment_crop_type(shop):
    query = scene("grass", [("coffee", COFFEE_BOX), ("chelsea", CHELSEA_BOX)])
    segment = _search(shop, "items", query, use_segmentation=True, return_segments=True, search_crop_type="segment", top_k=2)
    bbox = _search(shop, "items", query, use_segmentation=True, return_segments=True, top_k=2)
    assert set(_ids(segment["results"])) == {"coffee", "chelsea"}
    # the same boxes, but other pixels embedded: the background around the item is neutral grey
    assert [s["bbox"] for s in segment["segments"]] == [s["bbox"] for s in bbox["segments"]]
    assert [h["score"] for h in segment["results"]] != [h["score"] for h in bbox["results"]]
