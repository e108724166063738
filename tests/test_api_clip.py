"""A CLIP-style library through the HTTP API (tiny random checkpoint), and model mismatch."""

from __future__ import annotations

import shutil

from fastapi.testclient import TestClient

from conftest import admin_headers, b64, encode, photo
from lookalike.api import create_app
from lookalike.models import load_model
from lookalike.runtime import Runtime
from tiny_clip import make_tiny_clip

API = "/api/v1/operators/image-search"


def test_clip_library_search_and_model_mismatch(tmp_path, settings, models):
    folder = tmp_path / "clip"
    folder.mkdir()
    make_tiny_clip(folder, projection_dim=16)
    model_id = f"clip:{folder}"
    rt = Runtime.open(settings, models=models)
    with TestClient(create_app(rt), headers=admin_headers(rt)) as client:
        r = client.post(f"{API}/libraries", json={"library_name": "c", "model": model_id})
        assert r.status_code == 201 and r.json()["data"]["dims"] == {"visual": 16}
        images = [{"image_id": n, "image_base64": b64(encode(photo(n)))} for n in ("chelsea", "coffee", "rocket")]
        assert client.post(f"{API}/libraries/c/images", json={"images": images}).status_code == 201
        r = client.post(f"{API}/search/by-image", json={"library_name": "c", "image_base64": images[1]["image_base64"]})
        assert r.json()["data"]["results"][0]["image_id"] == "coffee"
        r = client.post(f"{API}/search/by-text", json={"library_name": "c", "query_text": "a photo of a cat"})
        assert r.status_code == 200 and len(r.json()["data"]["results"]) == 3

    # The checkpoint is replaced by one with another embedding size: the library refuses it.
    shutil.rmtree(folder)
    folder.mkdir()
    make_tiny_clip(folder, projection_dim=24)
    fresh_cache = tmp_path / "models2"
    runtime = Runtime.open(settings, models=lambda mid: load_model(mid, fresh_cache))
    with TestClient(create_app(runtime), headers=admin_headers(runtime)) as client:
        r = client.post(f"{API}/search/by-image", json={"library_name": "c", "image_base64": images[0]["image_base64"]})
        assert r.status_code == 400
        body = r.json()
        assert body["status"] == "MODEL_MISMATCH" and model_id in body["message"] and "16" in body["message"]
        r = client.post(f"{API}/libraries/c/images", json={"images": images[:1]})
        assert r.status_code == 400 and r.json()["status"] == "MODEL_MISMATCH"


def test_missing_clip_folder_is_a_clear_400(client, tmp_path):
    r = client.post(f"{API}/libraries", json={"library_name": "c", "model": f"clip:{tmp_path / 'nowhere'}"})
    assert r.status_code == 400 and r.json()["status"] == "MODEL_UNAVAILABLE"
    assert "nowhere" in r.json()["message"]


def test_warm_skips_a_library_whose_model_is_gone(tmp_path, settings, models, caplog):
    folder = tmp_path / "clip"
    folder.mkdir()
    make_tiny_clip(folder)
    runtime = Runtime.open(settings, models=models)
    runtime.libraries.create("a_clip", model_id=f"clip:{folder}")
    runtime.libraries.create("b_default")
    runtime.close()
    shutil.rmtree(folder)
    runtime = Runtime.open(settings, models=lambda mid: load_model(mid, tmp_path / "fresh-cache")
                           if mid.startswith("clip:") else models(mid))
    try:
        runtime.warm()
        assert "could not warm library a_clip" in caplog.text
        assert runtime.search.by_text("b_default", "a cat") == []
    finally:
        runtime.close()
