"""Library-adaptive ranking (``service/adaptation.py``) through the HTTP API, on real photos.

A library of oxford17 flower photos (every photo a flower: the library's mean is a large shared
component, which is what centring removes) is grown past the fitting threshold and past the
refit rule; the expected rankings are computed here from the model's own embeddings of the same
photos, independently of the service.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import admin_headers, b64, shared_set
from lookalike.api import create_app
from lookalike.imaging import decode_image
from lookalike.runtime import Runtime
from lookalike.scoring import to_score
from lookalike.service.adapter import MIN_IMAGES, REFIT_CHANGE

API = "/api/v1/operators/image-search"
MODEL = "efficientnet-lite0"
QUERIES = 25


@pytest.fixture(scope="module")
def flowers(models):
    """(ids, labels, encoded bytes, (n, 1280) float32 embeddings) of 470 oxford17 photos, every
    species, in a fixed order."""
    root = shared_set("oxford17")
    with (root / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))[::2][:470]
    data = [(root / r["path"]).read_bytes() for r in rows]
    vectors = models(MODEL).embed_images([decode_image(d) for d in data]).visual
    return [r["path"] for r in rows], [r["label"] for r in rows], data, vectors


def _open(settings, models) -> TestClient:
    """A client of a freshly opened runtime over ``settings`` (the app's lifespan closes it)."""
    rt = Runtime.open(settings, models=models)
    return TestClient(create_app(rt), raise_server_exceptions=False, headers=admin_headers(rt))


def _import(client: TestClient, flowers, start: int, stop: int) -> None:
    ids, labels, data, _ = flowers
    images = [{"image_id": ids[i], "image_base64": b64(data[i]), "tags": {"label": labels[i], "half": i % 2}}
              for i in range(start, stop)]
    r = client.post(f"{API}/libraries/flowers/images", json={"images": images})
    assert r.status_code == 201, r.json()


def _by_id(client: TestClient, image_id: str, **options) -> list[dict]:
    r = client.post(f"{API}/search/by-image-id", json={"library_name": "flowers", "image_id": image_id, **options})
    assert r.status_code == 200, r.json()
    return r.json()["data"]["results"]


def _centred(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    z = vectors - mean
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def _check_order(results: list[dict], key: dict[str, float]) -> None:
    """Scores in 0..1 and non-increasing, and the ids sorted by ``key`` (float noise allowed:
    the service embedded the photos in other batches)."""
    scores = [h["score"] for h in results]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    sims = [key[h["image_id"]] for h in results]
    assert all(a >= b - 1e-4 for a, b in zip(sims, sims[1:])), sims


def _precision(client: TestClient, flowers, n: int) -> float:
    ids, labels, _, _ = flowers
    label = dict(zip(ids, labels))
    hits = [[label[h["image_id"]] == label[ids[q]] for h in _by_id(client, ids[q])] for q in range(0, n, n // 40)]
    return float(np.mean([np.mean(h) for h in hits]))


def test_library_grows_into_adapted_ranking_and_refits(settings, models, flowers):
    ids, _, _, vectors = flowers
    calibration = models(MODEL).info.image_calibration
    client = _open(settings, models)
    with client:
        assert client.post(f"{API}/libraries", json={"library_name": "flowers", "model": MODEL}).status_code == 201
        small = MIN_IMAGES - 20
        _import(client, flowers, 0, small)
        plain_p10 = _precision(client, flowers, small)
        # Below the threshold: plain cosine, scores from the model's knots, exactly as before.
        for q in range(0, small, small // QUERIES):
            results = _by_id(client, ids[q])
            cosines = dict(zip(ids[:small], (vectors[:small] @ vectors[q]).tolist()))
            _check_order(results, cosines)
            expected = to_score(np.array([cosines[h["image_id"]] for h in results]), calibration)
            assert np.allclose([h["score"] for h in results], expected, atol=1e-4)

        # Past the threshold: the import's end fits the library's mean; searches re-rank by it.
        first = 340
        _import(client, flowers, small, first)
        mean = vectors[:first].mean(axis=0)
        centred = _centred(vectors[:first], mean)
        changed = 0
        for q in range(0, first, first // QUERIES):
            results = _by_id(client, ids[q])
            _check_order(results, dict(zip(ids[:first], (centred @ centred[q]).tolist())))
            plain = np.argsort(-(vectors[:first] @ vectors[q]), kind="stable")
            changed += [h["image_id"] for h in results] != [ids[i] for i in plain if i != q][:10]
        assert changed >= 3, "centring on the library's mean should reorder some of the top 10s"

        # Growth within REFIT_CHANGE keeps serving the fit of 340 images...
        grown = first + int(REFIT_CHANGE * first) - 10
        _import(client, flowers, first, grown)
        reference = _by_id(client, ids[7])
        _check_order(reference, dict(zip(ids[:grown], (_centred(vectors[:grown], mean) @ centred[7]).tolist())))

    # ... and the fit survives a restart: the first search after it answers the same, from the saved fit.
    client = _open(settings, models)
    with client:
        assert _by_id(client, ids[7]) == reference
        # Growth past REFIT_CHANGE refits at the import's end: the new mean ranks.
        _import(client, flowers, grown, len(ids))
        mean = vectors.mean(axis=0)
        centred = _centred(vectors, mean)
        for q in range(0, len(ids), len(ids) // QUERIES):
            _check_order(_by_id(client, ids[q]), dict(zip(ids, (centred @ centred[q]).tolist())))
        assert _precision(client, flowers, len(ids)) >= plain_p10 - 0.05


def test_filters_paging_collapse_and_hybrid_keep_working_when_adapted(settings, models, flowers):
    ids, _, data, vectors = flowers
    client = _open(settings, models)
    with client:
        assert client.post(f"{API}/libraries", json={"library_name": "flowers", "model": MODEL}).status_code == 201
        n = 300
        _import(client, flowers, 0, n)
        # A re-encoded copy of a photo (the same bytes under another id) for the collapse.
        copy = {"image_id": "copy", "image_base64": b64(data[5]), "tags": {"label": "copy", "half": 1}}
        assert client.post(f"{API}/libraries/flowers/images", json={"images": [copy]}).status_code == 201
        centred = _centred(vectors[:n], vectors[:n].mean(axis=0))
        key = dict(zip(ids[:n], (centred @ centred[5]).tolist()))

        top10 = _by_id(client, ids[5], top_k=10)
        top3 = _by_id(client, ids[5], top_k=3)
        assert top3 == top10[:3]
        assert top10[0]["image_id"] == "copy" and top10[0]["score"] >= 0.9  # the same photo scores as one

        odd = _by_id(client, ids[5], tag_filter={"field": "half", "op": "=", "value": 1})
        assert odd and all(h["tags"]["half"] == 1 for h in odd)
        _check_order([h for h in odd if h["image_id"] != "copy"], key)

        by_image = client.post(f"{API}/search/by-image", json={
            "library_name": "flowers", "image_base64": b64(data[5]), "collapse_duplicates": True})
        assert by_image.status_code == 200
        head = by_image.json()["data"]["results"][0]
        assert {head["image_id"], *head["duplicates"]} == {ids[5], "copy"}

        hybrid = client.post(f"{API}/search/by-image", json={
            "library_name": "flowers", "image_base64": b64(data[5]), "query_text": "a yellow flower",
            "text_weight": 0.3, "top_k": 10})
        assert hybrid.status_code == 200, hybrid.json()
        scores = [h["score"] for h in hybrid.json()["data"]["results"]]
        assert len(scores) == 10 and scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


class _NoItems:
    """An item detector that finds nothing: an ``item_search`` import then embeds whole photos
    (the documented fallback), so the library fills fast and its vectors are known here."""

    def detect(self, image, max_items=1):
        return []


def test_item_search_library_ranks_by_whitened_cosine(settings, models, flowers):
    ids, _, _, vectors = flowers
    n = 260
    rt = Runtime.open(settings, models=models, detector=lambda: _NoItems())
    with TestClient(create_app(rt), raise_server_exceptions=False, headers=admin_headers(rt)) as client:
        body = {"library_name": "flowers", "model": MODEL, "mode": "item_search"}
        assert client.post(f"{API}/libraries", json=body).status_code == 201
        _import(client, flowers, 0, n)
        # The whitening of Radenovic et al. 2018 with the covariance shrunk by its mean
        # eigenvalue, on the top 256 axes, computed here from the photos' own embeddings.
        x = vectors[:n].astype(np.float64)
        z = x - x.mean(axis=0)
        eigenvalues, axes = np.linalg.eigh(z.T @ z / n)
        eigenvalues, axes = np.clip(eigenvalues[::-1], 0, None), axes[:, ::-1]
        w = z @ (axes[:, :256] / np.sqrt(eigenvalues[:256] + eigenvalues.mean()))
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        centred = _centred(vectors[:n], vectors[:n].mean(axis=0))
        differs = 0
        for q in range(0, n, n // 10):
            results = _by_id(client, ids[q])
            _check_order(results, dict(zip(ids[:n], (w @ w[q]).tolist())))
            differs += [h["image_id"] for h in results] != [ids[i] for i in np.argsort(-(centred @ centred[q])) if i != q][:10]
        assert differs >= 3, "whitening should rank unlike centring alone"
