"""Libraries built before the multilingual text space keep working, through the HTTP API.

``efficientnet-lite0`` libraries hold 384-d MiniLM ConSE vectors; since the multilingual space
came as a new id (``efficientnet-lite0-multilingual``, the default for new libraries), an old
library keeps loading its own model: imports and every kind of search answer as before, with
the text score knots that id shipped with.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from conftest import PHOTOS, b64, encode, photo
from lookalike.config import DEFAULT_MODEL
from lookalike.imaging import decode_image
from lookalike.service.creators.access import AccessService

API = "/api/v1/operators/image-search"
OLD, NEW = "efficientnet-lite0", "efficientnet-lite0-multilingual"
# The text knots efficientnet-lite0 shipped with before the multilingual ids (the contract kept).
OLD_TEXT_KNOTS = ((0.0, 0.16, 0.35, 0.48, 0.64, 1.0), (0.0, 0.3, 0.5, 0.7, 0.9, 1.0))


def _import(client, library: str) -> None:
    images = [{"image_id": n, "image_base64": b64(encode(photo(n))), "tags": {"name": n}} for n in PHOTOS]
    r = client.post(f"{API}/libraries/{library}/images", json={"images": images})
    assert r.status_code == 201, r.text
    assert r.json()["data"]["added"] == list(PHOTOS)


def _search(client, kind: str, **body) -> list[dict]:
    r = client.post(f"{API}/search/{kind}", json=body)
    assert r.status_code == 200, r.text
    return r.json()["data"]["results"]


@pytest.fixture
def both(client):
    """An old-id library ``old`` and a default one ``new`` with the same photos, in one server."""
    r = client.post(f"{API}/libraries", json={"library_name": "old", "model": OLD})
    assert r.status_code == 201, r.text
    assert r.json()["data"]["model"] == OLD and r.json()["data"]["dims"] == {"visual": 1280, "semantic": 384}
    r = client.post(f"{API}/libraries", json={"library_name": "new"})
    assert r.status_code == 201, r.text
    assert r.json()["data"]["model"] == NEW == DEFAULT_MODEL and r.json()["data"]["dims"]["semantic"] == 768
    _import(client, "old")
    _import(client, "new")
    return client


def test_old_id_library_searches_by_image_text_and_id(both, models):
    client = both
    query = b64(encode(photo("chelsea").resize((300, 200))))
    old = _search(client, "by-image", library_name="old", image_base64=query, top_k=3)
    new = _search(client, "by-image", library_name="new", image_base64=query, top_k=3)
    assert old[0]["image_id"] == "chelsea" and old[0]["score"] >= 0.9
    # The image embedding is the same under both ids, so image search answers the same.
    assert [(r["image_id"], r["score"]) for r in old] == [(r["image_id"], r["score"]) for r in new]

    for text, expected in (("a cat", "chelsea"), ("a cup of coffee", "coffee")):
        hits = _search(client, "by-text", library_name="old", query_text=text, top_k=len(PHOTOS))
        assert hits[0]["image_id"] == expected, (text, hits)
        # Scores on the knots the old id shipped with, from its own 384-d MiniLM cosines.
        legacy = models(OLD)
        q = legacy.embed_texts([text])[0]
        sem = legacy.embed_images([decode_image(encode(photo(h["image_id"]))) for h in hits]).semantic
        expected_scores = np.clip(np.interp(sem @ q, *OLD_TEXT_KNOTS), 0, 1)
        np.testing.assert_allclose([h["score"] for h in hits], expected_scores, atol=1e-4)

    # Any language is accepted (MiniLM alone reads it as best it can), never a 400 or 500.
    assert len(_search(client, "by-text", library_name="old", query_text="一只猫", top_k=2)) == 2
    hybrid = _search(client, "by-image", library_name="old", image_base64=query, query_text="a cat", top_k=2)
    assert hybrid[0]["image_id"] == "chelsea"
    more = _search(client, "by-image-id", library_name="old", image_id="coffee", top_k=2, collapse_duplicates=True)
    assert "coffee" not in [r["image_id"] for r in more] and len(more) == 2


def test_old_id_library_keeps_importing_and_listing(both):
    client = both
    r = client.post(f"{API}/libraries/old/images",
                    json={"images": [{"image_id": "camera", "image_base64": b64(encode(photo("camera").convert("RGB")))}]})
    assert r.status_code == 201, r.text
    libs = {lib["library_name"]: lib for lib in client.get(f"{API}/libraries").json()["data"]}
    assert (libs["old"]["model"], libs["old"]["image_count"]) == (OLD, len(PHOTOS) + 1)
    assert (libs["new"]["model"], libs["new"]["image_count"]) == (NEW, len(PHOTOS))
    hits = _search(client, "by-image", library_name="old", image_base64=b64(encode(photo("camera").convert("RGB"))),
                   top_k=1)
    assert hits[0]["image_id"] == "camera"


def test_new_creator_store_records_the_image_only_id(runtime, client):
    """Creator posts hold only the image embedding, the same under both ids: a new creator store
    takes the id without the text space (``efficientnet-lite0``, as every store before the
    upgrade), so creator data from before and after shares one id and e5 is never loaded for it."""
    from test_modash_api import IG, IG_SEARCH, IMPORT, creator_line

    jpegs = {n: encode(photo(n)) for n in ("chelsea", "coffee")}
    lines = [creator_line("instagram", uid, dict(IG["ig02"], posts=[(image, 1)]), jpegs, time.time())
             for uid, image in (("cat01", "chelsea"), ("cup01", "coffee"))]
    r = client.post(IMPORT, json={"platform": "instagram", "creators": lines})
    assert r.status_code == 200 and r.json()["data"]["imported"] == ["cat01", "cup01"], r.text
    assert runtime.settings.default_model == NEW and runtime.creators.model_id() == OLD

    runtime.access = AccessService(runtime.tokens, interval_s=0.0)
    _, secret = runtime.tokens.create(10_000, "test")
    query = b64(encode(photo("chelsea").resize((320, 240))))
    r = client.post(IG_SEARCH, json={"imageType": "image/jpeg", "base64Image": query, "page": 0, "filters": {}},
                    headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200, r.text
    assert [p["userId"] for p in r.json()["profiles"]] == ["cat01"]
