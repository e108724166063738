"""The Constructor-compatible ``POST /v2/image_search`` through HTTP, and the ``keys`` CLI.

Libraries and images go in through the operator API, with real photos; every query
parameter has a test that shows its effect, and every error path its status and message.
"""

from __future__ import annotations

import json
import logging
import uuid
from contextlib import closing

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from conftest import admin_headers, b64, encode, photo
from lookalike.api import create_app
from lookalike.cli import app as cli_app
from lookalike.config import Settings
from lookalike.runtime import Runtime

API = "/api/v1/operators/image-search"
URL = "/v2/image_search"

#: name -> tags. Colours, prices and kinds are made up so that filters have known answers.
SHOP = {
    "astronaut": {"color": "red", "price": 10, "kind": "space", "sale": True, "url": "https://shop.test/astronaut"},
    "rocket": {"color": "red", "price": 25.5, "kind": "space", "sale": False},
    "hubble_deep_field": {"color": "blue", "price": 40, "kind": "space", "sale": False},
    "chelsea": {"color": "blue", "price": 10, "kind": "earth", "sale": True},
    "coffee": {"color": "green", "price": 3, "kind": "earth", "sale": False},
    "retina": {"color": "red", "price": 7, "kind": "earth", "sale": False},
    "camera": {"color": "black", "price": 99, "kind": "earth", "sale": False},
    "coins": {"color": "black", "price": 1, "kind": "earth", "sale": True},
    "clock": {"color": "white", "price": 15, "kind": "earth", "sale": False},
    "moon": {"color": "white", "price": 60, "kind": "space", "sale": False},
    "brick": {"color": "red", "price": 2, "kind": "earth", "sale": False},
    "immunohistochemistry": {"color": "blue", "price": 5, "kind": "earth", "sale": False},
}
OTHER = ("grass", "gravel", "page", "text")


def _import(client: TestClient, library: str, names, tags_of) -> None:
    assert client.post(f"{API}/libraries", json={"library_name": library}).status_code == 201
    images = [{"image_id": f"{library}-{n}", "image_uri": f"https://cdn.test/{n}.jpg",
               "image_base64": b64(encode(photo(n))), "tags": {"name": n, **tags_of(n)}} for n in names]
    assert client.post(f"{API}/libraries/{library}/images", json={"images": images}).status_code == 201


@pytest.fixture(scope="module", params=["embedded", "milvus"])
def api(request, tmp_path_factory, models):
    """(client, key) over a data dir with libraries ``shop`` (12 photos) and ``other`` (4),
    and a key whose section ``Products`` searches shop and ``Other`` searches other; once with
    the embedded store, once with the libraries in a real Milvus server (conftest.milvus_server)."""
    store = "embedded"
    if request.param == "milvus":
        store = f"{request.getfixturevalue('milvus_server').uri}?prefix=test_&timeout=10"
    settings = Settings(data_dir=tmp_path_factory.mktemp("constructor") / "data", store=store)
    runtime = Runtime.open(settings, models=models)
    with TestClient(create_app(runtime), raise_server_exceptions=False, headers=admin_headers(runtime)) as client:
        _import(client, "shop", SHOP, lambda n: SHOP[n])
        _import(client, "other", OTHER, lambda n: {"color": "grey"})
        key = runtime.keys.create({"Products": "shop", "Other": "other"})
        yield client, key
        if store != "embedded":
            for library in ("shop", "other"):
                client.delete(f"{API}/libraries/{library}")


def search(client: TestClient, key: str | None, image: Image.Image | bytes, params=(), **kw):
    """POST the image as JSON ``image_base64``; ``params``: extra query pairs."""
    data = image if isinstance(image, bytes) else encode(image)
    query = ([("key", key)] if key is not None else []) + list(params)
    return client.post(URL, params=query, json={"image_base64": b64(data)}, **kw)


def ids(body: dict) -> list[str]:
    return [r["data"]["id"] for r in body["response"]["results"]]


def near(name: str) -> Image.Image:
    """A near-duplicate of a library photo: resized and cropped."""
    image = photo(name)
    w, h = image.size
    return image.resize((w * 3 // 4, h * 3 // 4)).crop((8, 8, w * 3 // 4 - 8, h * 3 // 4 - 8))


def composed(left: str, right: str) -> tuple[Image.Image, tuple, tuple]:
    """Two real photos pasted apart on white, and their boxes (x, y, width, height)."""
    canvas = Image.new("RGB", (1000, 480), "white")
    a, b = photo(left), photo(right)
    a.thumbnail((380, 380))
    b.thumbnail((380, 380))
    canvas.paste(a, (30, 40))
    canvas.paste(b, (1000 - 30 - b.width, 60))
    return canvas, (30, 40, a.width, a.height), (1000 - 30 - b.width, 60, b.width, b.height)


def iou(a: tuple, b: tuple) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0, w) * max(0, h)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def needs_detector():
    from lookalike.errors import ModelUnavailable
    from lookalike.models.detector import u2netp_path

    try:
        u2netp_path()
    except ModelUnavailable as exc:
        pytest.skip(f"needs the U²-Netp detector weights (bash scripts/setup.sh installs them): {exc.message}")


# --- the answer --------------------------------------------------------------------------


def test_answer_has_constructor_shape(api):
    client, key = api
    r = search(client, key, near("astronaut"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"response", "result_id", "request"}
    assert uuid.UUID(body["result_id"]).version == 4
    results = body["response"]["results"]
    top = results[0]
    assert top["value"] == "astronaut"
    assert top["data"] == {"id": "shop-astronaut", "image_url": "https://cdn.test/astronaut.jpg",
                           "url": "https://shop.test/astronaut", **{k: v for k, v in SHOP["astronaut"].items()}}
    assert top["matched_segment"] is None and top["score"] > 0.9
    scores = [x["score"] for x in results]
    assert scores == sorted(scores, reverse=True) and scores[1] < top["score"]
    assert "url" not in results[1]["data"]  # only the astronaut has a url tag
    # 12 images pass (no filter), 12 < the 1000 cap; the default page holds 20
    assert body["response"]["total_num_results"] == len(SHOP) == len(results)
    assert "segments" not in body["response"]
    assert body["request"] == {
        "section": "Products", "page": 1, "num_results_per_page": 20, "filters": {}, "use_segmentation": False,
        "search_crop_type": "bbox", "return_segments": False, "fmt_options": {}, "variations_map": None,
        "i": None, "s": None, "ui": None, "us": [], "c": None,
    }
    assert body["result_id"] != search(client, key, near("astronaut")).json()["result_id"]


def test_multipart_raw_and_image_field_bodies_give_the_same_answer(api):
    client, key = api
    data = encode(near("coffee"))
    via_json = client.post(URL, params={"key": key}, json={"image_base64": b64(data)}).json()
    via_image_field = client.post(URL, params={"key": key}, json={"image": b64(data)}).json()
    via_form = client.post(URL, params={"key": key}, files={"image": ("q.jpg", data, "image/jpeg")}).json()
    via_raw = client.post(URL, params={"key": key}, content=data,
                          headers={"content-type": "application/octet-stream"}).json()
    assert ids(via_json)[0] == "shop-coffee"
    assert ids(via_json) == ids(via_image_field) == ids(via_form) == ids(via_raw)


# --- parameters --------------------------------------------------------------------------


def test_section_picks_the_library(api):
    client, key = api
    products = search(client, key, photo("grass")).json()
    assert set(ids(products)) == {f"shop-{n}" for n in SHOP}
    other = search(client, key, photo("grass"), [("section", "Other")]).json()
    assert ids(other)[0] == "other-grass" and set(ids(other)) == {f"other-{n}" for n in OTHER}
    assert other["request"]["section"] == "Other"
    missing = search(client, key, photo("grass"), [("section", "Content")])
    assert missing.status_code == 404
    assert missing.json() == {"message": "section: this key has no section 'Content' (its sections: Other, Products)"}
    # a section is a name of 1..100 characters (Constructor's rule): '/' and '..' are just characters
    odd = search(client, key, photo("grass"), [("section", "../Prod/ucts")])
    assert odd.status_code == 404 and "no section '../Prod/ucts'" in odd.json()["message"]
    for bad_name in ("x" * 101, "Prod\nucts", "   "):
        bad = search(client, key, photo("grass"), [("section", bad_name)])
        assert bad.status_code == 400 and bad.json()["message"].startswith("section: must be 1-100 characters"), bad_name


def test_filters_narrow_or_within_a_name_and_across_names(api):
    client, key = api
    query = photo("rocket")

    def found(*pairs):
        body = search(client, key, query, [(f"filters[{n}]", v) for n, v in pairs]).json()
        assert body["response"]["total_num_results"] == len(body["response"]["results"])
        return {i.removeprefix("shop-") for i in ids(body)}

    red = {n for n, t in SHOP.items() if t["color"] == "red"}
    blue = {n for n, t in SHOP.items() if t["color"] == "blue"}
    assert found(("color", "red")) == red
    assert found(("color", "red"), ("color", "blue")) == red | blue  # one name: OR
    assert found(("color", "red"), ("kind", "space")) == {"astronaut", "rocket"}  # names: AND
    assert found(("price", "10")) == {"astronaut", "chelsea"}  # the number form matches number tags
    assert found(("price", "25.50")) == {"rocket"}
    assert found(("sale", "true")) == {"astronaut", "chelsea", "coins"}  # and true/false boolean tags
    assert found(("color", "purple")) == set()
    body = search(client, key, query, [("filters[color]", "red"), ("filters[color]", "blue")]).json()
    assert body["request"]["filters"] == {"color": ["red", "blue"]}
    # qs-style array syntax
    assert found(("color][", "red")) == red
    for name, value, where in [("filters[]", "x", "filters[]"), ("filters", "red", "filters"),
                               ("filters[color]", "", "filters[color]")]:
        r = search(client, key, query, [(name, value)])
        assert r.status_code == 400 and r.json()["message"].startswith(where + ":"), r.text


def test_pages_are_disjoint_slices_of_one_ranking(api):
    client, key = api
    query = near("chelsea")
    everything = ids(search(client, key, query, [("num_results_per_page", "12")]).json())
    assert len(everything) == 12
    pages = []
    for page in (1, 2, 3):
        body = search(client, key, query, [("num_results_per_page", "5"), ("page", str(page))]).json()
        assert body["response"]["total_num_results"] == 12
        assert body["request"]["page"] == page and body["request"]["num_results_per_page"] == 5
        pages.append(ids(body))
    assert [len(p) for p in pages] == [5, 5, 2]
    assert pages[0] + pages[1] + pages[2] == everything
    assert ids(search(client, key, query, [("num_results_per_page", "5"), ("page", "4")]).json()) == []
    # 20 results a page reach result 1000 on page 50; page 51 starts past the cap
    assert search(client, key, query, [("page", "50")]).status_code == 200
    past = search(client, key, query, [("page", "51")])
    assert past.status_code == 400 and past.json()["message"].startswith("page: page 51 of 20 results starts past")
    for name, value in [("page", "0"), ("page", "x"), ("num_results_per_page", "0"),
                        ("num_results_per_page", "201"), ("num_results_per_page", "2.5")]:
        r = search(client, key, query, [(name, value)])
        assert r.status_code == 400 and r.json()["message"].startswith(f"{name}: must be an integer"), r.text


def test_segmentation_finds_both_items_of_a_composed_photo(api):
    needs_detector()
    client, key = api
    image, left_box, right_box = composed("chelsea", "rocket")
    plain = search(client, key, image).json()
    assert all(r["matched_segment"] is None for r in plain["response"]["results"])
    r = search(client, key, image, [("use_segmentation", "true"), ("return_segments", "true"),
                                    ("num_results_per_page", "4")])
    assert r.status_code == 200, r.text
    response = r.json()["response"]
    segments = response["segments"]
    assert len(segments) == 2 and [s["index"] for s in segments] == [0, 1]
    by_item = {}
    for s in segments:
        box = s["bbox"]
        assert set(box) == {"x", "y", "width", "height"} and s["mask_area"] > 0 and 0 <= s["score"] <= 1
        assert "label" in s and len(s["results"]) == 4
        expected = left_box if box["x"] < 500 else right_box
        assert iou((box["x"], box["y"], box["width"], box["height"]), expected) > 0.6, (box, expected)
        by_item["chelsea" if box["x"] < 500 else "rocket"] = s
    assert by_item["chelsea"]["results"][0]["data"]["id"] == "shop-chelsea"
    assert by_item["rocket"]["results"][0]["data"]["id"] == "shop-rocket"
    top = ids({"response": response})
    assert {"shop-chelsea", "shop-rocket"} <= set(top[:2])  # interleaved: each item leads its round
    assert len(top) == len(set(top)) == 4
    for result in response["results"]:
        matched = result["matched_segment"]
        assert matched == {"index": matched["index"], "bbox": segments[matched["index"]]["bbox"]}
    # return_segments alone does nothing (Constructor: it applies with use_segmentation=true only)
    alone = search(client, key, image, [("return_segments", "true")]).json()
    assert "segments" not in alone["response"] and ids(alone) == ids(plain)
    assert alone["request"]["return_segments"] is True
    assert all(r["matched_segment"] is None for r in alone["response"]["results"])
    # use_segmentation alone: merged results with their matched_segment, no segments
    merged = search(client, key, image, [("use_segmentation", "1"), ("num_results_per_page", "4")]).json()
    assert "segments" not in merged["response"] and ids(merged) == top
    assert merged["request"]["use_segmentation"] is True


def test_search_crop_type_is_validated_and_applied(api):
    needs_detector()
    client, key = api
    image, _, _ = composed("chelsea", "rocket")
    params = [("use_segmentation", "true"), ("return_segments", "true")]
    segment = search(client, key, image, params + [("search_crop_type", "segment")])
    assert segment.status_code == 200 and segment.json()["request"]["search_crop_type"] == "segment"
    bbox = search(client, key, image, params).json()
    # the same items, each found first by its own crop whatever the crop type
    for a, b in zip(segment.json()["response"]["segments"], bbox["response"]["segments"]):
        assert a["bbox"] == b["bbox"] and a["results"][0]["data"]["id"] == b["results"][0]["data"]["id"]
    assert [r["score"] for r in segment.json()["response"]["results"]] != [r["score"] for r in bbox["response"]["results"]]
    r = search(client, key, image, [("search_crop_type", "mask")])
    assert r.status_code == 400 and r.json()["message"] == "search_crop_type: must be one of bbox, segment (got 'mask')"


def test_segmentation_flags_are_booleans(api):
    client, key = api
    for name in ("use_segmentation", "return_segments"):
        r = search(client, key, photo("coffee"), [(name, "yes")])
        assert r.status_code == 400 and r.json()["message"] == f"{name}: must be true or false (got 'yes')"


def test_fmt_options_are_validated_echoed_and_fields_trim_data(api):
    client, key = api
    params = [("fmt_options[fields]", "price"), ("fmt_options[fields]", "color"), ("fmt_options[groups_max_depth]", "2"),
              ("fmt_options[show_hidden_fields]", "true"), ("fmt_options[hidden_fields][0]", "sale"),
              ("fmt_options[variations_return_type]", "all"), ("fmt_options[facet_options][color][]", "red")]
    body = search(client, key, near("coins"), params).json()
    assert body["request"]["fmt_options"] == {
        "fields": ["price", "color"], "groups_max_depth": 2, "show_hidden_fields": True, "hidden_fields": ["sale"],
        "variations_return_type": "all", "facet_options": {"color": ["red"]},
    }
    top = body["response"]["results"][0]
    assert top["value"] == "coins" and top["data"] == {"id": "shop-coins", "price": 1, "color": "black", "sale": True}
    for name, value, where in [("fmt_options[colour]", "x", "fmt_options[colour]"),
                               ("fmt_options[groups_max_depth]", "-1", "fmt_options[groups_max_depth]"),
                               ("fmt_options[show_hidden_fields]", "maybe", "fmt_options[show_hidden_fields]"),
                               ("fmt_options[groups_sort_order]", "up", "fmt_options[groups_sort_order]"),
                               ("fmt_options[fields][a]", "x", "fmt_options[fields][a]")]:
        r = search(client, key, near("coins"), [(name, value)])
        assert r.status_code == 400 and r.json()["message"].startswith(where + ":"), r.text


def test_variations_map_groups_results(api):
    client, key = api
    spec = {"group_by": [{"name": "kind", "field": "data.kind"}],
            "values": {"cheapest": {"aggregation": "min", "field": "data.price"},
                       "priciest": {"aggregation": "max", "field": "data.facets.price"},
                       "colors": {"aggregation": "all", "field": "data.color"},
                       "n": {"aggregation": "count", "field": "data.id"},
                       "by_color": {"aggregation": "field_count", "field": "data.color"},
                       "best": {"aggregation": "first", "field": "data.id"}}}
    plain = ids(search(client, key, near("moon"), [("num_results_per_page", "12")]).json())
    body = search(client, key, near("moon"), [("variations_map", json.dumps(spec))]).json()
    results = body["response"]["results"]
    assert body["response"]["total_num_results"] == 2 == len(results)
    assert body["request"]["variations_map"] == spec
    # each group is its best result, groups in the rank of their best result
    first_space = next(i for i in plain if SHOP[i.removeprefix("shop-")]["kind"] == "space")
    first_earth = next(i for i in plain if SHOP[i.removeprefix("shop-")]["kind"] == "earth")
    assert ids(body) == sorted([first_space, first_earth], key=plain.index)
    for result in results:
        kind = result["data"]["kind"]
        members = [i for i in plain if SHOP[i.removeprefix("shop-")]["kind"] == kind]
        tags = [SHOP[i.removeprefix("shop-")] for i in members]
        assert result["variations_map"] == [{
            "kind": kind, "cheapest": min(t["price"] for t in tags), "priciest": max(t["price"] for t in tags),
            "colors": list(dict.fromkeys(t["color"] for t in tags)), "n": len(members),
            "by_color": {c: sum(t["color"] == c for t in tags) for c in dict.fromkeys(t["color"] for t in tags)},
            "best": members[0],
        }]
    spec["dtype"] = "object"
    spec["values"] = {"n": {"aggregation": "count", "field": "data.id"}}
    shaped = search(client, key, near("moon"), [("variations_map", json.dumps(spec))]).json()["response"]["results"]
    assert {json.dumps(r["variations_map"]) for r in shaped} == {'{"space": {"n": 4}}', '{"earth": {"n": 8}}'}


@pytest.mark.parametrize("raw, where", [
    ("{not json", "variations_map: is not valid JSON"),
    ('{"group_by": []}', "variations_map.group_by: must be an array"),
    ('{"group_by": [{"name": "k", "field": "kind"}]}', "variations_map.group_by[0].field: must be 'data.<field>'"),
    ('{"group_by": [{"name": "k", "field": "data.kind"}], "filter_by": {}}', "variations_map.filter_by: not supported"),
    ('{"group_by": [{"name": "k", "field": "data.kind"}], "values": {"p": {"aggregation": "avg", "field": "data.price"}}}',
     "variations_map.values.p.aggregation: must be one of first, min, max, all, count, field_count"),
    ('{"group_by": [{"name": "k", "field": "data.kind"}], "dtype": "list"}', "variations_map.dtype: must be one of"),
])
def test_variations_map_outside_the_supported_form_is_a_400(api, raw, where):
    client, key = api
    r = search(client, key, photo("coffee"), [("variations_map", raw)])
    assert r.status_code == 400 and r.json()["message"].startswith(where), r.text


def test_user_and_session_ids_are_validated_echoed_and_logged(api, caplog):
    client, key = api
    params = [("i", "device-1f3a"), ("s", "3"), ("ui", "user-42"), ("us", "vip"), ("us", "mobile"), ("c", "cio-js-2.35")]
    with caplog.at_level(logging.INFO, logger="lookalike.api.constructor"):
        body = search(client, key, near("clock"), params + [("num_results_per_page", "3")]).json()
    echo = body["request"]
    assert (echo["i"], echo["s"], echo["ui"], echo["us"], echo["c"]) == ("device-1f3a", 3, "user-42", ["vip", "mobile"],
                                                                         "cio-js-2.35")
    records = [r for r in caplog.records if r.name == "lookalike.api.constructor"]
    assert len(records) == 1
    line = records[0].getMessage()
    logged = json.loads(line.removeprefix("image_search "))
    assert logged == records[0].constructor
    assert logged["key"] == key and logged["section"] == "Products" and logged["library"] == "shop"
    assert logged["result_id"] == body["result_id"] and logged["status"] == 200
    assert logged["results"] == 3 and logged["total_num_results"] == len(SHOP) and logged["latency_ms"] > 0
    assert (logged["i"], logged["s"], logged["ui"], logged["us"], logged["c"]) == (
        "device-1f3a", 3, "user-42", ["vip", "mobile"], "cio-js-2.35")
    assert len(line) < 2000 and b64(encode(near("clock")))[:40] not in line  # never the image
    for name, value, rule in [("s", "0", "s: must be an integer from 1"), ("s", "two", "s: must be an integer"),
                              ("i", "x" * 257, "i: must be 1-256 characters"), ("ui", "a\nb", "ui: must be 1-256"),
                              ("us", "", "us: must be 1-256"), ("c", "", "c: must be 1-256")]:
        r = search(client, key, near("clock"), [(name, value)])
        assert r.status_code == 400 and r.json()["message"].startswith(rule), (name, r.text)


def test_failed_requests_are_logged_with_their_status(api, caplog):
    client, _ = api
    with caplog.at_level(logging.INFO, logger="lookalike.api.constructor"):
        assert search(client, "key_unknownunknown00", photo("coffee")).status_code == 401
    (record,) = [r for r in caplog.records if r.name == "lookalike.api.constructor"]
    assert record.constructor["status"] == 401 and record.constructor["key"] == "key_unknownunknown00"


# --- errors ------------------------------------------------------------------------------


def test_missing_or_unknown_key_is_401(api):
    client, _ = api
    missing = search(client, None, photo("coffee"))
    assert missing.status_code == 401 and missing.json()["message"].startswith("key: missing")
    unknown = search(client, "key_0000000000000000", photo("coffee"))
    assert unknown.status_code == 401
    assert unknown.json()["message"].startswith("key: unknown index key 'key_0000000000000000'")
    assert search(client, "x" * 500, photo("coffee")).status_code == 401


@pytest.mark.parametrize("params, rule", [
    ([("colour", "red")], "colour: unknown query parameter"),
    ([("page", "1"), ("page", "2")], "page: given more than once"),
    ([("filter[color]", "red")], "filter[color]: unknown query parameter"),
])
def test_unknown_or_repeated_parameters_are_400(api, params, rule):
    client, key = api
    r = search(client, key, photo("coffee"), params)
    assert r.status_code == 400 and r.json()["message"].startswith(rule), r.text


def test_client_noise_parameters_are_ignored(api):
    client, key = api
    r = search(client, key, near("coffee"), [("_dt", "1654779233399"), ("ef-test-cell", "a"), ("origin_referrer", "x")])
    assert r.status_code == 200 and ids(r.json())[0] == "shop-coffee"


def test_bad_bodies(api):
    client, key = api
    q = {"key": key}
    not_image = client.post(URL, params=q, json={"image_base64": b64(b"this is not an image at all")})
    assert not_image.status_code == 400 and not_image.json()["message"].startswith("image_base64: not a decodable image")
    truncated = encode(photo("coffee"))[:3000]
    r = client.post(URL, params=q, files={"image": ("q.jpg", truncated, "image/jpeg")})
    assert r.status_code == 400 and r.json()["message"].startswith("image: ")
    r = client.post(URL, params=q, json={"image_base64": "@@@"})
    assert r.status_code == 400 and r.json()["message"].startswith(
        "image_base64: is not valid base64: character '@' at position 0 is not in the base64 alphabet")
    r = client.post(URL, params=q, json={"image_base64": "x", "image": "y"})
    assert r.status_code == 400 and r.json()["message"] == "body: give exactly one of image_base64 or image"
    r = client.post(URL, params=q, json={"picture": "y"})
    assert r.status_code == 400 and r.json()["message"].startswith("body.picture: unknown field")
    r = client.post(URL, params=q, content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["message"].startswith("body: is not valid JSON: ")
    assert "line 1, column 2" in r.json()["message"]
    r = client.post(URL, params=q, files={"photo": ("q.jpg", encode(photo("coffee")), "image/jpeg")})
    assert r.status_code == 400 and r.json()["message"].startswith("image: multipart bodies need a file field")
    r = client.post(URL, params=q)
    assert r.status_code == 400 and r.json()["message"].startswith("body: missing the query image")
    r = client.post(URL, params=q, content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json()["message"].startswith("body: Content-Type 'text/plain' is not accepted")


def test_an_image_over_the_size_limit_is_413(api):
    client, key = api
    limit = Settings().max_query_bytes
    big = b"\xff\xd8" + b"\0" * limit
    r = client.post(URL, params={"key": key}, content=big, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 413 and r.json()["message"].startswith("body: image is")
    r = client.post(URL, params={"key": key}, json={"image_base64": b64(big)})
    assert r.status_code == 413 and r.json()["message"].startswith("image_base64: image is larger than the limit")
    r = client.post(URL, params={"key": key}, files={"image": ("q.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and r.json()["message"].startswith("image: image is")


def test_unknown_path_and_method_answer_in_constructor_style(api):
    client, _ = api
    assert client.get("/v2/nope").json() == {"message": "Not Found"}
    r = client.get(URL)
    assert r.status_code == 405 and r.json() == {"message": "Method Not Allowed"}


def test_a_key_whose_library_was_deleted_is_404(client, runtime):
    _import(client, "gone", ["coffee"], lambda n: {})
    key = runtime.keys.create({"Products": "gone"})
    assert search(client, key, photo("coffee")).status_code == 200
    client.delete(f"{API}/libraries/gone")
    r = search(client, key, photo("coffee"))
    assert r.status_code == 404 and r.json()["message"].startswith("section: the library of section 'Products'")
    runtime.keys.delete(key)
    assert search(client, key, photo("coffee")).status_code == 401


# --- the keys CLI ------------------------------------------------------------------------


def test_keys_cli(tmp_path, model_cache):
    env = {"LOOKALIKE_DATA_DIR": str(tmp_path / "data"), "LOOKALIKE_MODEL_CACHE": str(model_cache)}

    def run(*args):
        return CliRunner().invoke(cli_app, list(args), env=env, catch_exceptions=False)

    for name in ("shop", "blog"):
        assert run("library", "create", name).exit_code == 0
    created = run("keys", "create", "--section", "Products=shop", "--section", "Blog Posts=blog")
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()  # only the key on stdout: KEY=$(lookalike keys create ...) works
    assert key.startswith("key_") and len(key) == 20
    listed = run("keys", "list").output
    assert key in listed and "Products = shop" in listed and "Blog Posts = blog" in listed
    assert run("keys", "set-section", key, "Products", "blog").exit_code == 0
    assert run("keys", "remove-section", key, "Blog Posts").exit_code == 0
    with closing(Runtime.open(Settings(data_dir=tmp_path / "data"))) as rt:
        assert rt.keys.get(key) == {"Products": "blog"}
    bad = run("keys", "create", "--section", "Products=nope")
    assert bad.exit_code == 2 and "Image library 'nope' not found" in bad.output
    assert run("keys", "create", "--section", "Products").exit_code == 2
    assert run("keys", "create", "--section", "x" * 101 + "=shop").exit_code == 2
    assert run("keys", "set-section", key, "Products", "nope").exit_code == 2
    assert run("keys", "set-section", "key_missing", "Products", "shop").exit_code == 2
    assert run("keys", "delete", key).exit_code == 0
    assert key not in run("keys", "list").output
    gone = run("keys", "delete", key)
    assert gone.exit_code == 2 and "not found" in gone.output



def test_index_key_store_rules_and_durability(tmp_path):
    from lookalike.errors import InvalidParameter, KeyNotFound, SectionNotFound
    from lookalike.store.index_keys import KEY_PATTERN, IndexKeyStore

    store = IndexKeyStore(tmp_path / "keys.db")
    key = store.create({"Products": "shop", "Search Suggestions": "blog"})
    assert KEY_PATTERN.fullmatch(key) and key != store.create({"Products": "shop"})
    for sections, rule in [({}, "sections: a key needs at least one section"),
                           ({"Pro\tducts": "shop"}, "sections['Pro\\tducts']: must be 1-100 characters"),
                           ({"x" * 101: "shop"}, "sections['" + "x" * 101 + "']: must be 1-100"),
                           ({"Products": ""}, "sections['Products']: must be a library name"),
                           ({f"s{i}": "shop" for i in range(101)}, "sections: at most 100")]:
        with pytest.raises(InvalidParameter) as caught:
            store.create(sections)
        assert caught.value.message.startswith(rule)
    store.set_section(key, "Products", "other")
    store.set_section(key, "Content", "blog")
    store.remove_section(key, "Search Suggestions")
    with pytest.raises(SectionNotFound):
        store.remove_section(key, "Search Suggestions")
    with pytest.raises(KeyNotFound):
        store.get("key_AAAAAAAAAAAAAAAA")
    with pytest.raises(KeyNotFound):
        store.set_section("key_AAAAAAAAAAAAAAAA", "Products", "shop")
    store.close()
    reopened = IndexKeyStore(tmp_path / "keys.db")  # committed changes survive a reopen
    assert reopened.get(key) == {"Content": "blog", "Products": "other"}
    assert reopened.list()[0].key == key and len(reopened.list()) == 2
    reopened.delete(key)
    with pytest.raises(KeyNotFound):
        reopened.get(key)
    assert len(reopened.list()) == 1
    reopened.close()


def test_openapi_of_the_sub_application_lists_the_parameters(api):
    client, _ = api
    spec = client.get("/v2/openapi.json").json()
    operation = spec["paths"]["/image_search"]["post"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"key", "section", "use_segmentation", "search_crop_type", "return_segments", "num_results_per_page",
            "page", "filters[NAME]", "fmt_options[NAME]", "variations_map", "i", "s", "ui", "us", "c"} <= names
    assert set(operation["requestBody"]["content"]) == {"application/json", "multipart/form-data",
                                                        "application/octet-stream"}
