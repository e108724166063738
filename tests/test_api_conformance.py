"""Conformance of the faces to the documents they implement (issue 11), through HTTP.

Modash (``/v1``): the documents' string ages, "number" typed integers, hidden counts (-1), and
required response fields that are never null. Operator API: an ``item_search`` query with no
item in it answers no results. Constructor (``/v2``): ``fmt_options`` in its object form.
Creators post real photos (scikit-image's cat and others), embedded by the real model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import admin_headers, b64, encode, photo
from lookalike.api import create_app
from lookalike.config import Settings
from lookalike.runtime import Runtime

DAY = 86400.0
IG_SEARCH = "/v1/ai/image-search"
TT_SEARCH = "/v1/ai/tiktok/image-search"
OPS = "/api/v1/operators/image-search"


def _small(name: str) -> bytes:
    image = photo(name)
    image.thumbnail((256, 256))
    return encode(image, quality=90)


def _post(pid: str, image: str, days: float, now: float, **extra) -> dict:
    return {"id": pid, "created_at": now - days * DAY, "image_base64": b64(_small(image)), **extra}


@dataclass
class World:
    runtime: Runtime
    client: TestClient
    query: str

    def search(self, path: str, **body) -> tuple[int, dict]:
        """One search with a fresh token (the rate limit is per token)."""
        _, secret = self.runtime.tokens.create(100_000, "test")
        payload = {"imageType": "image/jpeg", "base64Image": self.query, **body}
        r = self.client.post(path, json=payload, headers={"Authorization": f"Bearer {secret}"})
        return r.status_code, r.json()


@pytest.fixture(scope="module")
def world(tmp_path_factory, models) -> Iterator[World]:
    rt = Runtime.open(Settings(data_dir=tmp_path_factory.mktemp("conformance")), models=models)
    now = time.time()
    instagram = [
        # every field given
        {"userId": "full", "username": "full", "fullName": "Full", "profilePicture": "https://cdn.example/full.jpg",
         "accountCategory": "Pets", "followersCount": 5000, "engagementRate": 0.02, "ageGroup": "18-24",
         "posts": [_post("full-1", "chelsea", 3, now, url="https://example/p/full-1",
                         thumbnail="https://cdn.example/full-1.jpg", stats={"likesCount": 100, "commentsCount": 5})]},
        # none of the optional fields; likes hidden, engagement rate left to be computed
        {"userId": "bare", "username": "bare", "followersCount": 1000, "ageGroup": "25-34",
         "posts": [_post("bare-1", "chelsea", 40, now, stats={"likesCount": -1, "commentsCount": 30}),
                   _post("bare-2", "coffee", 50, now, stats={"likesCount": -1, "commentsCount": -1})]},
    ]
    tiktok = [
        {"userId": "tt", "username": "tt", "followersCount": 20000, "ageGroup": "18-24",
         "posts": [_post("tt-1", "chelsea", 5, now, type="video",
                         stats={"likesCount": -1, "commentsCount": -1, "sharesCount": -1, "playsCount": 900,
                                "collectsCount": -1})]},
    ]
    with TestClient(create_app(rt), raise_server_exceptions=False) as client:
        for platform, lines in (("instagram", instagram), ("tiktok", tiktok)):
            r = client.post("/api/v1/creators/import", json={"platform": platform, "creators": lines},
                            headers=admin_headers(rt))
            assert r.status_code == 200 and r.json()["data"]["failed"] == [], r.text
        yield World(rt, client, b64(encode(photo("chelsea").rotate(3), quality=90)))
    rt.close()


def _ids(data: dict) -> list[str]:
    return [p["userId"] for p in data["profiles"]]


# --- Modash: age ----------------------------------------------------------------------------------


def test_age_bounds_take_the_documents_strings_and_numbers(world):
    for age in ({"min": "18", "max": "25"}, {"min": 18, "max": 25}, {"min": 18.0, "max": "25"}):
        status, data = world.search(IG_SEARCH, filters={"age": age})
        assert status == 200 and _ids(data) == ["full"], (age, data)
    status, data = world.search(IG_SEARCH, filters={"age": {"min": "25"}})
    assert status == 200 and _ids(data) == ["bare"]
    # the TikTok document's own example, verbatim
    status, data = world.search(TT_SEARCH, page=0, filters={"age": {"min": "18"}})
    assert status == 200 and _ids(data) == ["tt"], data
    for bad in ("20", "eighteen", 18.5, True):
        status, data = world.search(IG_SEARCH, filters={"age": {"min": bad}})
        assert status == 400 and data["message"] == "filters.age.min: must be one of 13, 18, 25, 35, 45, 65", bad


# --- Modash: numbers --------------------------------------------------------------------------------


def test_integral_floats_count_as_integers(world):
    status, ints = world.search(IG_SEARCH, page=0, filters={"followersCount": {"min": 1000}, "lastPostedInDays": 90})
    assert status == 200 and set(_ids(ints)) == {"full", "bare"}
    status, floats = world.search(IG_SEARCH, page=0.0,
                                  filters={"followersCount": {"min": 1000.0, "max": 5000.0}, "lastPostedInDays": 90.0})
    assert status == 200 and floats["profiles"] == ints["profiles"]
    status, recent = world.search(IG_SEARCH, filters={"lastPostedInDays": 30.0, "locations": []})
    assert status == 200 and _ids(recent) == ["full"]
    status, page1 = world.search(IG_SEARCH, page=1.0)
    assert status == 200 and page1["profiles"] == []
    status, sized = world.search(TT_SEARCH, page=0.0, pageSize=10.0)
    assert status == 200 and _ids(sized) == ["tt"]


@pytest.mark.parametrize("path, body, message", [
    (IG_SEARCH, {"page": 1.5}, "page: must be an integer >= 0 (got 1.5, not an integer)"),
    (TT_SEARCH, {"pageSize": 2.5}, "pageSize: must be an integer from 1 to 50 (got 2.5, not an integer)"),
    (IG_SEARCH, {"filters": {"followersCount": {"min": 1000.5}}},
     "filters.followersCount.min: must be an integer from 0 to 1000000000000 (got 1000.5, not an integer)"),
    (IG_SEARCH, {"filters": {"lastPostedInDays": 90.5}},
     "filters.lastPostedInDays: must be an integer from 1 to 36500 (days) (got 90.5, not an integer)"),
])
def test_non_integral_numbers_are_a_clear_400(world, path, body, message):
    status, data = world.search(path, **body)
    assert status == 400 and data == {"error": True, "code": "invalid_parameter", "message": message}


# --- Modash: hidden counts and required fields -------------------------------------------------------


def test_hidden_counts_are_imported_returned_and_left_out_of_engagement(world):
    status, data = world.search(TT_SEARCH)
    (tt,) = data["profiles"]
    assert tt["matchedPosts"][0]["stats"] == {"likesCount": -1, "commentsCount": -1, "sharesCount": -1,
                                              "playsCount": 900, "collectsCount": -1}
    # every interaction count hidden: nothing to compute an engagement rate from
    assert tt["engagementRate"] == 0.0
    status, data = world.search(IG_SEARCH)
    bare = next(p for p in data["profiles"] if p["userId"] == "bare")
    assert bare["matchedPosts"][0]["stats"] == {"likesCount": -1, "commentsCount": 30}
    # (30 comments on the one post that shows a count) / 1000 followers; the hidden likes count as unknown
    assert bare["engagementRate"] == pytest.approx(0.03)
    status, data = world.search(IG_SEARCH, filters={"engagementRate": {"min": 0.025}})
    assert status == 200 and _ids(data) == ["bare"]  # "full" imported 0.02


def test_required_response_fields_are_never_null(world):
    for path in (IG_SEARCH, TT_SEARCH):
        status, data = world.search(path)
        assert status == 200 and data["profiles"]
        for profile in data["profiles"]:
            assert isinstance(profile["profilePicture"], str) and isinstance(profile["accountCategory"], str)
            for post in profile["matchedPosts"] + profile["recentPosts"]:
                assert isinstance(post["url"], str) and isinstance(post["thumbnail"], str)
    status, data = world.search(IG_SEARCH)
    by_id = {p["userId"]: p for p in data["profiles"]}
    # imported without them: the documented empty string
    assert (by_id["bare"]["profilePicture"], by_id["bare"]["accountCategory"]) == ("", "")
    assert {(p["url"], p["thumbnail"]) for p in by_id["bare"]["recentPosts"]} == {("", "")}
    # imported with them: as imported
    assert by_id["full"]["profilePicture"] == "https://cdn.example/full.jpg"
    assert by_id["full"]["matchedPosts"][0]["url"] == "https://example/p/full-1"


def test_stats_below_hidden_are_refused_at_import(world):
    line = {"userId": "neg", "username": "neg", "followersCount": 10,
            "posts": [_post("neg-1", "coffee", 1, time.time(), stats={"likesCount": -2})]}
    r = world.client.post("/api/v1/creators/import", json={"platform": "instagram", "creators": [line]},
                          headers=admin_headers(world.runtime))
    assert r.status_code == 400
    assert r.json()["message"] == "creators[0].posts[0].stats.likesCount: must be an integer >= -1"


# --- operator API: item_search with no item -----------------------------------------------------------


@pytest.fixture(scope="module")
def items_client(tmp_path_factory, models) -> Iterator[TestClient]:
    from lookalike.errors import ModelUnavailable
    from lookalike.models.detector import u2netp_path

    try:
        u2netp_path()
    except ModelUnavailable as exc:
        pytest.skip(f"needs the U²-Netp item detector weights ({exc})")
    rt = Runtime.open(Settings(data_dir=tmp_path_factory.mktemp("items")), models=models)
    with TestClient(create_app(rt), raise_server_exceptions=False, headers=admin_headers(rt)) as client:
        assert client.post(f"{OPS}/libraries", json={"library_name": "items", "mode": "item_search"}).status_code == 201
        blank = Image.new("RGB", (320, 240), (128, 128, 128))  # a blank wall: no item in it
        images = [{"image_id": n, "image_base64": b64(_small(n))} for n in ("chelsea", "coffee", "rocket")]
        images.append({"image_id": "blank", "image_base64": b64(encode(blank))})
        r = client.post(f"{OPS}/libraries/items/images", json={"images": images})
        assert r.status_code == 201, r.text  # the blank image imports whole (the imports' fallback)
        yield client
    rt.close()


def test_item_search_query_without_an_item_answers_no_results(items_client):
    blank = b64(encode(Image.new("RGB", (400, 300), (200, 200, 200))))
    for extra in ({}, {"use_segmentation": True, "return_segments": True}):
        r = items_client.post(f"{OPS}/search/by-image", json={"library_name": "items", "image_base64": blank, **extra})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "SUCCESS" and body["data"]["results"] == [], extra
        assert body["data"].get("segments", []) == []
    # a query with an item still finds it
    r = items_client.post(f"{OPS}/search/by-image", json={"library_name": "items", "image_base64": b64(_small("coffee"))})
    assert r.json()["data"]["results"][0]["image_id"] == "coffee"


# --- Constructor: fmt_options as an object --------------------------------------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory, models) -> Iterator[tuple[TestClient, str]]:
    rt = Runtime.open(Settings(data_dir=tmp_path_factory.mktemp("shop")), models=models)
    with TestClient(create_app(rt), raise_server_exceptions=False, headers=admin_headers(rt)) as client:
        client.post(f"{OPS}/libraries", json={"library_name": "shop"})
        images = [{"image_id": n, "image_base64": b64(_small(n)), "tags": {"name": n, "price": i, "color": "red"}}
                  for i, n in enumerate(("chelsea", "coffee", "rocket"))]
        assert client.post(f"{OPS}/libraries/shop/images", json={"images": images}).status_code == 201
        yield client, rt.keys.create({"Products": "shop", "Käse & Wein / Angebote": "shop"})
    rt.close()


def _v2(client: TestClient, key: str, params: list[tuple[str, str]]):
    return client.post("/v2/image_search", params=[("key", key), *params], content=_small("coffee"),
                       headers={"content-type": "image/jpeg"})


def test_fmt_options_in_object_form_equals_the_bracket_form(shop):
    client, key = shop
    brackets = _v2(client, key, [("fmt_options[fields]", "price"), ("fmt_options[groups_max_depth]", "2")]).json()
    obj = _v2(client, key, [("fmt_options", '{"fields": ["price"], "groups_max_depth": 2}')]).json()
    assert obj["response"] == brackets["response"]
    assert obj["request"]["fmt_options"] == brackets["request"]["fmt_options"] == {"fields": ["price"],
                                                                                   "groups_max_depth": 2}
    assert set(obj["response"]["results"][0]["data"]) == {"id", "price"}
    nested = _v2(client, key, [("fmt_options", '{"facet_options": {"color": ["red"]}, "show_hidden_fields": true}')])
    assert nested.status_code == 200
    assert nested.json()["request"]["fmt_options"] == {"facet_options": {"color": ["red"]}, "show_hidden_fields": True}
    for bad, message in (("[1]", "fmt_options: must be a JSON object"), ("{", "fmt_options: must be a JSON object"),
                         ('{"colour": 1}', "fmt_options[colour]: unknown format option"),
                         ('{"fields": [{"a": 1}]}', "fmt_options.fields: must be a string, number, boolean")):
        r = _v2(client, key, [("fmt_options", bad)])
        assert r.status_code == 400 and r.json()["message"].startswith(message), (bad, r.json())


def test_section_names_are_names_of_up_to_100_characters(shop):
    client, key = shop
    r = _v2(client, key, [("section", "Käse & Wein / Angebote")])
    assert r.status_code == 200 and r.json()["request"]["section"] == "Käse & Wein / Angebote"
    assert r.json()["response"]["results"][0]["data"]["id"] == "coffee"
    assert _v2(client, key, [("section", "x" * 100)]).status_code == 404  # well-formed, not a section of the key
    assert _v2(client, key, [("section", "x" * 101)]).status_code == 400
