"""The server and the CLI share one data dir: writes by one are seen by the other."""

from __future__ import annotations

from conftest import b64, encode, photo
from lookalike.runtime import Runtime
from lookalike.service.importer import ImportItem


def test_writes_from_another_runtime_are_seen_without_restart(settings, models):
    server = Runtime.open(settings, models=models)
    cli = Runtime.open(settings, models=models)
    try:
        cli.libraries.create("lib")
        assert server.search.by_image("lib", encode(photo("coffee"))) == []
        cli.importer.import_items("lib", [ImportItem(image_id=n, image_base64=b64(encode(photo(n))), tags={"n": n})
                                          for n in ("coffee", "rocket")])
        assert [r.image_id for r in server.search.by_image("lib", encode(photo("coffee")))] == ["coffee", "rocket"]
        cli.libraries.update_tags("lib", "rocket", {"n": "launch"})
        cli.libraries.delete_image("lib", "coffee")
        results = server.search.by_image("lib", encode(photo("coffee")))
        assert [(r.image_id, r.tags) for r in results] == [("rocket", {"n": "launch"})]
        cli.libraries.delete("lib")
        cli.libraries.create("lib")
        assert server.search.by_image("lib", encode(photo("coffee"))) == []
    finally:
        cli.close()
        server.close()


def test_concurrent_searches_and_imports_through_the_api(client):
    from concurrent.futures import ThreadPoolExecutor

    from conftest import PHOTOS

    api = "/api/v1/operators/image-search"
    client.post(f"{api}/libraries", json={"library_name": "busy"})
    encoded = {n: b64(encode(photo(n))) for n in PHOTOS}

    def do_import(i: int) -> int:
        name = PHOTOS[i % len(PHOTOS)]
        body = {"images": [{"image_id": f"{name}-{i}", "image_base64": encoded[name], "tags": {"i": i}}]}
        return client.post(f"{api}/libraries/busy/images", json=body).status_code

    def do_search(i: int) -> int:
        body = {"library_name": "busy", "image_base64": encoded[PHOTOS[i % len(PHOTOS)]],
                "tag_filter": {"field": "i", "op": "<", "value": 10}}
        r = client.post(f"{api}/search/by-image", json=body)
        assert all(h["tags"]["i"] < 10 for h in r.json()["data"]["results"])
        return r.status_code

    with ThreadPoolExecutor(8) as pool:
        imports = [pool.submit(do_import, i) for i in range(24)]
        searches = [pool.submit(do_search, i) for i in range(48)]
        assert {f.result() for f in imports} == {201}
        assert {f.result() for f in searches} == {200}
    assert client.get(f"{api}/libraries/busy").json()["data"]["image_count"] == 24
    results = client.post(f"{api}/search/by-image", json={"library_name": "busy", "image_base64": encoded["coffee"],
                                                          "top_k": 100}).json()["data"]["results"]
    assert len(results) == 24 and results[0]["image_id"].startswith("coffee-")
