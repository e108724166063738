"""Hybrid (image + text) queries and near-duplicate collapse, through the HTTP API."""

from __future__ import annotations

import pytest
from PIL import ImageOps

from conftest import b64, encode, photo

API = "/api/v1/operators/image-search"
NAMES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")


def _reencoded(name: str) -> bytes:
    """The same photo at 80 % size, saved again as JPEG at quality 70."""
    im = photo(name)
    return encode(im.resize((im.width * 4 // 5, im.height * 4 // 5)), quality=70)


@pytest.fixture
def library(client):
    client.post(f"{API}/libraries", json={"library_name": "photos"})
    images = [{"image_id": name, "image_base64": b64(encode(photo(name)))} for name in NAMES]
    images.append({"image_id": "chelsea_copy", "image_base64": b64(_reencoded("chelsea"))})
    # Another photo whose embedding is as close as a copy's (cosine ~0.98), pixels mirrored.
    images.append({"image_id": "chelsea_mirrored", "image_base64": b64(encode(ImageOps.mirror(photo("chelsea"))))})
    assert client.post(f"{API}/libraries/photos/images", json={"images": images}).status_code == 201
    return "photos"


def _search(client, kind: str, **body):
    r = client.post(f"{API}/search/{kind}", json={"library_name": "photos", **body})
    assert r.status_code == 200, r.json()
    return r.json()["data"]["results"]


def test_collapse_folds_a_reencoded_copy_into_the_original(client, library):
    query = b64(encode(photo("chelsea")))
    plain = _search(client, "by-image", image_base64=query)
    assert [h["image_id"] for h in plain[:2]] == ["chelsea", "chelsea_copy"]
    assert plain[2]["image_id"] == "chelsea_mirrored" and plain[2]["score"] > 0.9
    assert all("duplicates" not in h for h in plain)

    collapsed = _search(client, "by-image", image_base64=query, collapse_duplicates=True)
    ids = [h["image_id"] for h in collapsed]
    assert ids[0] == "chelsea" and collapsed[0]["duplicates"] == ["chelsea_copy"]
    assert "chelsea_copy" not in ids and len(ids) == len(NAMES) + 1
    # The mirrored photo embeds like a copy but its pixels differ: it stays a result of its own.
    assert ids[1] == "chelsea_mirrored"
    assert all(h["duplicates"] == [] for h in collapsed[1:])
    assert collapsed[0]["score"] == plain[0]["score"]


def test_collapse_still_fills_top_k_and_works_for_text(client, library):
    query = b64(encode(photo("chelsea")))
    collapsed = _search(client, "by-image", image_base64=query, top_k=2, collapse_duplicates=True)
    assert len(collapsed) == 2 and collapsed[0]["duplicates"] == ["chelsea_copy"]
    assert collapsed[1]["image_id"] not in ("chelsea", "chelsea_copy")

    text = _search(client, "by-text", query_text="a cat", top_k=3, collapse_duplicates=True)
    cat = next(h for h in text if h["image_id"] in ("chelsea", "chelsea_copy"))
    assert text[0]["image_id"] in ("chelsea", "chelsea_copy", "chelsea_mirrored")
    assert {cat["image_id"], *cat["duplicates"]} == {"chelsea", "chelsea_copy"}


def test_collapse_on_more_like_this(client, library):
    plain = _search(client, "by-image-id", image_id="coffee")
    assert "coffee" not in [h["image_id"] for h in plain]
    assert {"chelsea", "chelsea_copy"} <= {h["image_id"] for h in plain}
    collapsed = _search(client, "by-image-id", image_id="coffee", collapse_duplicates=True)
    cats = [h for h in collapsed if h["image_id"] in ("chelsea", "chelsea_copy")]
    assert len(cats) == 1 and len(cats[0]["duplicates"]) == 1
    assert len(collapsed) == len(plain) - 1


def test_hybrid_query_blends_image_and_text(client, library):
    coffee = b64(encode(photo("coffee")))
    plain = _search(client, "by-image", image_base64=coffee)
    image_only = _search(client, "by-image", image_base64=coffee, query_text="a cat", text_weight=0)
    assert [(h["image_id"], h["score"]) for h in image_only] == [(h["image_id"], h["score"]) for h in plain]

    text_only = _search(client, "by-image", image_base64=coffee, query_text="a cat", text_weight=1)
    by_text = _search(client, "by-text", query_text="a cat")
    assert [h["image_id"] for h in text_only] == [h["image_id"] for h in by_text]
    assert [h["score"] for h in text_only] == pytest.approx([h["score"] for h in by_text], abs=1e-5)

    # "this, but a cat": the coffee photo alone no longer wins; the cats rise above the
    # photos that match neither the image nor the text.
    blended = _search(client, "by-image", image_base64=coffee, query_text="eine Katze", text_weight=0.5)
    ids = [h["image_id"] for h in blended]
    assert set(ids[:4]) == {"coffee", "chelsea", "chelsea_copy", "chelsea_mirrored"}
    scores = [h["score"] for h in blended]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    coffee_score = next(h["score"] for h in blended if h["image_id"] == "coffee")
    assert coffee_score < plain[0]["score"]


@pytest.mark.parametrize("extra, status, where", [
    ({"query_text": "a cat", "text_weight": 1.5}, "INVALID_PARAMETER", "text_weight"),
    ({"query_text": "a cat", "text_weight": -0.1}, "INVALID_PARAMETER", "text_weight"),
    ({"text_weight": 0.3}, "INVALID_PARAMETER", "text_weight"),
    ({"query_text": "  "}, "INVALID_PARAMETER", "query_text"),
    ({"query_text": "x" * 1001}, "INVALID_PARAMETER", "query_text"),
    ({"collapse_duplicates": "yes"}, "INVALID_PARAMETER", "collapse_duplicates"),
])
def test_hybrid_and_collapse_errors_are_400_naming_the_field(client, library, extra, status, where):
    body = {"library_name": "photos", "image_base64": b64(encode(photo("coffee"))), **extra}
    r = client.post(f"{API}/search/by-image", json=body)
    assert r.status_code == 400, r.json()
    assert r.json()["status"] == status and where in r.json()["message"], r.json()


def test_hybrid_query_on_item_search_library_is_mode_not_supported(client):
    client.post(f"{API}/libraries", json={"library_name": "shop", "mode": "item_search"})
    body = {"library_name": "shop", "image_base64": b64(encode(photo("coffee"))), "query_text": "red"}
    r = client.post(f"{API}/search/by-image", json=body)
    assert r.status_code == 400 and r.json()["status"] == "MODE_NOT_SUPPORTED"
    assert "does not support text-to-image search" in r.json()["message"]
