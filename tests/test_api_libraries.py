"""Library and image management through the HTTP API, including every error path."""

from __future__ import annotations

import json

from conftest import PHOTOS, admin_headers, b64, encode, photo

API = "/api/v1/operators/image-search"
# Every test here runs on the embedded store and on a real Milvus server (conftest.milvus_server).
STORE_BACKENDS = ("embedded", "milvus")


def _create(client, name="lib", mode="general_search", **extra):
    return client.post(f"{API}/libraries", json={"library_name": name, "mode": mode, **extra})


def _import(client, library, images, **extra):
    return client.post(f"{API}/libraries/{library}/images", json={"images": images, **extra})


def test_create_get_list_delete_library(client):
    r = _create(client, "shop_a_tops", "item_search")
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == "SUCCESS" and body["message"] is None
    assert body["data"]["mode"] == "item_search"
    assert body["data"]["model"] == "efficientnet-lite0-multilingual"
    assert body["data"]["dims"] == {"visual": 1280, "semantic": 768}
    assert body["data"]["image_count"] == 0

    assert client.get(f"{API}/libraries/shop_a_tops").json()["data"]["library_name"] == "shop_a_tops"
    assert [lib["library_name"] for lib in client.get(f"{API}/libraries").json()["data"]] == ["shop_a_tops"]
    assert client.delete(f"{API}/libraries/shop_a_tops").status_code == 200
    r = client.get(f"{API}/libraries/shop_a_tops")
    assert r.status_code == 404
    assert r.json() == {"status": "LIBRARY_NOT_FOUND", "message": "Image library 'shop_a_tops' not found.", "data": None}


def test_library_errors(client):
    r = _create(client)
    assert r.status_code == 201, r.text
    r = _create(client)
    assert r.status_code == 409 and r.json()["status"] == "ALREADY_EXISTS"
    r = _create(client, "bad name!")
    assert r.status_code == 400 and "library_name" in r.json()["message"]
    r = _create(client, "x", "fuzzy_search")
    assert r.status_code == 400 and "mode" in r.json()["message"]
    r = _create(client, "y", model="no-such-model")
    assert r.status_code == 400 and r.json()["status"] == "MODEL_UNAVAILABLE"
    assert client.delete(f"{API}/libraries/missing").status_code == 404
    r = client.post(f"{API}/libraries", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["data"] is None


def test_import_with_tags_and_generated_ids(client):
    _create(client)
    images = [
        {"image_id": "cat", "image_uri": "s3://bucket/cat.jpg", "image_base64": b64(encode(photo("chelsea"))),
         "tags": {"animal": True, "legs": 4, "name": "chelsea"}},
        {"image_uri": "https://example.com/coffee.png", "image_base64": b64(encode(photo("coffee"), "PNG"))},
    ]
    r = _import(client, "lib", images)
    assert r.status_code == 201, r.text
    added = r.json()["data"]["added"]
    assert added[0] == "cat" and len(added) == 2 and len(added[1]) == 32
    got = client.get(f"{API}/libraries/lib/images/cat").json()["data"]
    assert got["image_uri"] == "s3://bucket/cat.jpg"
    assert got["tags"] == {"animal": True, "legs": 4, "name": "chelsea"}
    assert client.get(f"{API}/libraries/lib").json()["data"]["image_count"] == 2
    listed = client.get(f"{API}/libraries/lib/images", params={"limit": 1, "offset": 1}).json()["data"]
    assert [i["image_uri"] for i in listed] == ["https://example.com/coffee.png"]


def test_import_is_all_or_nothing(client):
    _create(client)
    good = {"image_id": "a", "image_base64": b64(encode(photo("rocket")))}
    r = _import(client, "lib", [good, {"image_id": "b", "image_base64": "not base64!!"}])
    assert r.status_code == 400
    assert r.json()["message"].startswith("images[1].image_base64")
    r = _import(client, "lib", [good, {"image_id": "c", "image_base64": b64(b"GIF89a not really")}])
    assert r.status_code == 400 and "images[1]" in r.json()["message"]
    r = _import(client, "lib", [good, {"image_id": "d", "image_base64": b64(encode(photo("coffee"))), "tags": {"x": [1]}}])
    assert r.status_code == 400 and "images[1].tags.x" in r.json()["message"]
    r = _import(client, "lib", [{"image_id": "e"}])
    assert r.status_code == 400 and "images[0]" in r.json()["message"]
    assert client.get(f"{API}/libraries/lib").json()["data"]["image_count"] == 0

    assert _import(client, "lib", [good]).status_code == 201
    r = _import(client, "lib", [{"image_id": "z", "image_base64": good["image_base64"]}, good])
    assert r.status_code == 409 and "'a'" in r.json()["message"]
    assert client.get(f"{API}/libraries/lib").json()["data"]["image_count"] == 1
    r = _import(client, "lib", [{"image_id": "z", "image_base64": good["image_base64"]}, good], skip_existing=True)
    assert r.json()["data"] == {"added": ["z"], "skipped": ["a"]}


def test_import_errors(client):
    r = _import(client, "nope", [{"image_base64": b64(encode(photo("rocket")))}])
    assert r.status_code == 404
    _create(client)
    r = _import(client, "lib", [])
    assert r.status_code == 400 and "images" in r.json()["message"]
    r = _import(client, "lib", [{"image_uri": "https://example.com/x.jpg"}])
    assert r.status_code == 400 and "does not fetch remote" in r.json()["message"]
    r = _import(client, "lib", [{"image_id": "", "image_base64": b64(encode(photo("rocket")))}])
    assert r.status_code == 400 and "images[0].image_id" in r.json()["message"]


def test_import_from_local_uri_inside_the_import_roots(settings, models, tmp_path):
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from lookalike.api import create_app
    from lookalike.runtime import Runtime

    path = tmp_path / "rocket.jpg"
    path.write_bytes(encode(photo("rocket")))
    runtime = Runtime.open(replace(settings, import_roots=(tmp_path.resolve(),)), models=models)
    with TestClient(create_app(runtime), headers=admin_headers(runtime)) as client:
        _create(client)
        r = _import(client, "lib", [{"image_id": "r", "image_uri": str(path)}, {"image_id": "f", "image_uri": path.as_uri()}])
        assert r.status_code == 201, r.text
        assert client.get(f"{API}/libraries/lib/images/f").json()["data"]["image_uri"] == path.as_uri()


def test_update_tags_and_delete_image(client):
    _create(client)
    _import(client, "lib", [{"image_id": p, "image_base64": b64(encode(photo(p))), "tags": {"n": i}}
                            for i, p in enumerate(PHOTOS[:3])])
    r = client.patch(f"{API}/libraries/lib/images/coffee", json={"tags": {"drink": "coffee"}})
    assert r.status_code == 200 and r.json()["data"]["tags"] == {"drink": "coffee"}
    r = client.patch(f"{API}/libraries/lib/images/coffee", json={"tags": {"bad": None}})
    assert r.status_code == 400 and "tags.bad" in r.json()["message"]
    query = {"library_name": "lib", "image_base64": b64(encode(photo("coffee"))),
             "tag_filter": {"field": "drink", "op": "=", "value": "coffee"}}
    hits = client.post(f"{API}/search/by-image", json=query).json()["data"]["results"]
    assert [h["image_id"] for h in hits] == ["coffee"]

    assert client.delete(f"{API}/libraries/lib/images/coffee").status_code == 200
    assert client.get(f"{API}/libraries/lib/images/coffee").status_code == 404
    assert client.delete(f"{API}/libraries/lib/images/coffee").json()["status"] == "IMAGE_NOT_FOUND"
    assert client.patch(f"{API}/libraries/lib/images/coffee", json={"tags": {}}).status_code == 404
    hits = client.post(f"{API}/search/by-image", json={**query, "tag_filter": None}).json()["data"]["results"]
    assert "coffee" not in [h["image_id"] for h in hits] and len(hits) == 2


def test_web_page_and_docs_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'src="/web/images.js"' in page.text and 'id="search"' in page.text
    script = client.get("/web/common.js")
    assert script.status_code == 200 and "/api/v1/operators/image-search" in script.text
    spec = client.get("/openapi.json").json()
    assert f"{API}/search/by-image" in spec["paths"] and f"{API}/search/by-text" in spec["paths"]
    r = client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["status"] == "NOT_FOUND" and r.json()["data"] is None


def test_oversized_request_body_is_a_413(settings, models):
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from lookalike.api import create_app
    from lookalike.runtime import Runtime

    runtime = Runtime.open(replace(settings, max_request_bytes=10_000), models=models)
    with TestClient(create_app(runtime), headers=admin_headers(runtime)) as small:
        r = small.post(f"{API}/search/by-image", json={"library_name": "x", "image_base64": "A" * 20_000})
        assert r.status_code == 413
        assert r.json() == {"status": "REQUEST_TOO_LARGE",
                            "message": "request body is larger than the limit of 10000 bytes", "data": None}

        def chunks():  # no Content-Length: the limit applies as the body streams in
            for _ in range(5):
                yield b"x" * 4000

        r = small.post(f"{API}/search/by-image", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert small.get(f"{API}/libraries").status_code == 200


def test_import_roots_confine_server_side_file_reads(settings, models, tmp_path):
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from lookalike.api import create_app
    from lookalike.runtime import Runtime

    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    for folder in (allowed, other):
        (folder / "coffee.jpg").write_bytes(encode(photo("coffee")))
    runtime = Runtime.open(replace(settings, import_roots=(allowed.resolve(),)), models=models)
    with TestClient(create_app(runtime), headers=admin_headers(runtime)) as c:
        _create(c)
        assert _import(c, "lib", [{"image_id": "in", "image_uri": str(allowed / "coffee.jpg")}]).status_code == 201
        for uri in (str(other / "coffee.jpg"), str(allowed / ".." / "other" / "coffee.jpg")):
            r = _import(c, "lib", [{"image_id": "out", "image_uri": uri}])
            assert r.status_code == 400 and "inside this server's import folders" in r.json()["message"]


def test_lone_surrogates_are_a_400_not_a_500(client):
    # JSON's "\ud800" escape decodes to a lone surrogate, which no UTF-8 store can hold.
    def send(method, path, body):
        return client.request(method, f"{API}{path}", content=json.dumps(body),  # ensure_ascii: \ud800 escapes
                              headers={"content-type": "application/json"})

    r = _create(client)
    assert r.status_code == 201, r.text
    pixels = b64(encode(photo("coffee")))
    for image in ({"image_id": "a", "image_base64": pixels, "tags": {"k": "\ud800"}},
                  {"image_id": "a", "image_base64": pixels, "tags": {"\udfff": 1}},
                  {"image_id": "x\ud800", "image_base64": pixels}):
        r = send("POST", "/libraries/lib/images", {"images": [image]})
        assert r.status_code == 400, r.text
        assert r.json()["status"] == "INVALID_PARAMETER" and "valid Unicode" in r.json()["message"]
    assert client.get(f"{API}/libraries/lib/images").json()["data"] == []
    assert _import(client, "lib", [{"image_id": "a", "image_base64": pixels, "tags": {"k": "ok"}}]).status_code == 201
    r = send("PATCH", "/libraries/lib/images/a", {"tags": {"k": "\ud800"}})
    assert r.status_code == 400 and "tags.k" in r.json()["message"]
