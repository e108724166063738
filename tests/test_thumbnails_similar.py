"""The routes the web page needs, through HTTP: thumbnails of stored images and "more like this"
(search by a stored image's id)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from conftest import PHOTOS, b64, encode, photo

API = "/api/v1/operators/image-search"


@pytest.fixture
def library(client):
    client.post(f"{API}/libraries", json={"library_name": "photos"})
    images = [
        # ids with "/" as a folder import makes them
        {"image_id": f"sky/{name}.jpg" if name in ("astronaut", "rocket", "hubble_deep_field") else f"{name}.jpg",
         "image_base64": b64(encode(photo(name), quality=95)),
         "tags": {"name": name, "kind": "space" if name in ("astronaut", "rocket", "hubble_deep_field") else "earth"}}
        for name in PHOTOS
    ]
    # A large photo: 2048 px wide, as a phone would make it.
    big = photo("chelsea").resize((2048, 1556))
    images.append({"image_id": "big/chelsea.jpg", "image_base64": b64(encode(big, quality=95)), "tags": {"name": "big"}})
    assert client.post(f"{API}/libraries/photos/images", json={"images": images}).status_code == 201
    return "photos"


def _thumb(client, image_id: str, **params):
    return client.get(f"{API}/libraries/photos/images/{image_id}/thumbnail", params=params)


def test_thumbnail_is_small_jpeg_fitted_to_size(client, library):
    r = _thumb(client, "big/chelsea.jpg", size=128)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    picture = Image.open(io.BytesIO(r.content))
    assert picture.format == "JPEG" and max(picture.size) == 128
    assert picture.size == (128, 97)  # aspect kept: 2048 x 1556
    assert len(r.content) < 20_000  # the original is hundreds of KB
    assert "max-age" in r.headers["cache-control"] and r.headers["etag"].startswith('"')


def test_thumbnail_webp_and_default_size_and_never_enlarged(client, library):
    r = _thumb(client, "big/chelsea.jpg", format="webp")
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(r.content)).format == "WEBP"
    assert max(Image.open(io.BytesIO(r.content)).size) == 256
    small = _thumb(client, "coffee.jpg", size=1024)  # coffee is 600 x 400: not enlarged
    assert Image.open(io.BytesIO(small.content)).size == photo("coffee").size


def test_thumbnail_etag_revalidates_with_304(client, library):
    first = _thumb(client, "sky/rocket.jpg", size=64)
    again = client.get(
        f"{API}/libraries/photos/images/sky/rocket.jpg/thumbnail", params={"size": 64},
        headers={"If-None-Match": first.headers["etag"]},
    )
    assert again.status_code == 304 and again.content == b""
    other_size = _thumb(client, "sky/rocket.jpg", size=65)
    assert other_size.headers["etag"] != first.headers["etag"]


def test_thumbnail_follows_a_reimported_id(client, library):
    before = _thumb(client, "coffee.jpg", size=64)
    assert client.delete(f"{API}/libraries/photos/images/coffee.jpg").status_code == 200
    body = {"images": [{"image_id": "coffee.jpg", "image_base64": b64(encode(photo("astronaut")))}]}
    assert client.post(f"{API}/libraries/photos/images", json=body).status_code == 201
    after = _thumb(client, "coffee.jpg", size=64)
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
    assert Image.open(io.BytesIO(after.content)).size == (64, 64)  # astronaut is square, coffee is not


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"size": 8}, 400, "size: must be an integer from 16 to 1024"),
        ({"size": 5000}, 400, "size: must be an integer from 16 to 1024"),
        ({"size": "big"}, 400, "size"),
        ({"format": "gif"}, 400, "format: must be one of jpeg, webp"),
    ],
)
def test_thumbnail_bad_parameters(client, library, params, status, needle):
    r = _thumb(client, "coffee.jpg", **params)
    assert r.status_code == status and needle in r.json()["message"]
    assert r.json()["status"] == "INVALID_PARAMETER"


def test_thumbnail_unknown_image_and_library(client, library):
    r = _thumb(client, "sky/nope.jpg")
    assert r.status_code == 404 and r.json()["status"] == "IMAGE_NOT_FOUND"
    r = client.get(f"{API}/libraries/nolib/images/coffee.jpg/thumbnail")
    assert r.status_code == 404 and r.json()["status"] == "LIBRARY_NOT_FOUND"


def _similar(client, **body):
    return client.post(f"{API}/search/by-image-id", json={"library_name": "photos", **body})


def test_more_like_this_excludes_the_query_and_ranks_the_near_duplicate_first(client, library):
    r = _similar(client, image_id="chelsea.jpg", top_k=3)
    assert r.status_code == 200 and r.json()["status"] == "SUCCESS"
    results = r.json()["data"]["results"]
    ids = [x["image_id"] for x in results]
    assert len(ids) == 3 and "chelsea.jpg" not in ids
    assert ids[0] == "big/chelsea.jpg" and results[0]["score"] > 0.9  # the same photo, larger
    scores = [x["score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert results[0]["image_base64"] is None


def test_more_like_this_matches_an_image_query_with_the_same_picture(client, library):
    by_id = _similar(client, image_id="sky/rocket.jpg", top_k=6).json()["data"]["results"]
    stored = client.post(f"{API}/search/by-image", json={
        "library_name": "photos", "image_base64": b64(encode(photo("rocket"), quality=95)), "top_k": 7,
    }).json()["data"]["results"]
    assert stored[0]["image_id"] == "sky/rocket.jpg"
    assert [x["image_id"] for x in by_id] == [x["image_id"] for x in stored[1:]]
    for a, b in zip(by_id, stored[1:]):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)


def test_more_like_this_with_filter_and_image_base64(client, library):
    flt = [{"field": "kind", "op": "=", "value": "space"}]
    r = _similar(client, image_id="sky/astronaut.jpg", tag_filter=flt, return_image_base64=True)
    results = r.json()["data"]["results"]
    assert sorted(x["image_id"] for x in results) == ["sky/hubble_deep_field.jpg", "sky/rocket.jpg"]
    assert all(x["image_base64"] for x in results)


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        ({"image_id": "nope.jpg"}, 404, "IMAGE_NOT_FOUND", "nope.jpg"),
        ({"image_id": "coffee.jpg", "library_name": "nolib"}, 404, "LIBRARY_NOT_FOUND", "nolib"),
        ({"image_id": ""}, 400, "INVALID_PARAMETER", "image_id"),
        ({"image_id": "coffee.jpg", "top_k": 0}, 400, "INVALID_PARAMETER", "top_k"),
        ({}, 400, "INVALID_PARAMETER", "image_id"),
        ({"image_id": "coffee.jpg", "tag_filter": {"field": "kind", "op": "=="}}, 400, "INVALID_TAG_FILTER", "tag_filter"),
    ],
)
def test_more_like_this_errors(client, library, body, status, code, needle):
    r = _similar(client, **body)
    assert r.status_code == status, r.text
    assert r.json()["status"] == code and needle in r.json()["message"]
