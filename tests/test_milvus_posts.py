"""Creator posts in Milvus: Modash searches (``/v1/ai/image-search``) on a ``LOOKALIKE_STORE``
Milvus runtime return the embedded runtime's pages, with and without profile and post filters,
and after creators are deleted.

Both runtimes hold the same synthetic platform (400 creators x 12 posts, profile facts drawn as
``lookalike creators demo`` draws them) whose niche centres are the real efficientnet-lite0
embeddings of the bundled photos, so photo queries match posts; the Milvus one answers the
candidate stage from its Milvus collection (checked: it returned candidates, fewer than counted).
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import PHOTOS, admin_headers, b64, encode, photo
from lookalike.api import create_app
from lookalike.config import Settings
from lookalike.evaluation.synthetic_creators import SyntheticSpace, write_synthetic_platform
from lookalike.runtime import Runtime
from lookalike.service.creators.dictionaries import Locations
from recording_index import Recording

SEARCH = "/v1/ai/image-search"
PLATFORM = "instagram"

FILTERS = [
    None,
    {"followersCount": {"min": 30_000}},  # most creators pass: "row not in [...]"
    {"gender": "FEMALE"},
    {"followersCount": {"max": 50_000}},
    {"lastPostedInDays": 60, "age": {"min": 18, "max": 35}},
]


@pytest.fixture(scope="module")
def space(models) -> SyntheticSpace:
    model = models("efficientnet-lite0")
    centres = np.asarray(model.embed_images([photo(name) for name in PHOTOS]).visual, dtype=np.float32)
    base = SyntheticSpace.make(len(PHOTOS), centres.shape[1], seed=3)
    return SyntheticSpace(centres, base.offset, base.scale * np.float32(0.25))


def _runtime(settings: Settings, models, space: SyntheticSpace) -> tuple[Runtime, TestClient]:
    rt = Runtime.open(settings, models=models)
    write_synthetic_platform(rt.creators, space, 400, 12, seed=11, platform=PLATFORM, locations=Locations.load())
    if settings.store != "embedded":
        rt.post_index._synced.background = False  # sync in the request, so the first search uses Milvus
        rt.__dict__["post_index"] = Recording(rt.post_index)
    return rt, TestClient(create_app(rt), raise_server_exceptions=False)


def _search(rt: Runtime, client: TestClient, query: str, page: int, filters) -> dict:
    _, secret = rt.tokens.create(100_000, "test")
    body = {"imageType": "image/jpeg", "base64Image": query, "page": page, **({"filters": filters} if filters else {})}
    r = client.post(SEARCH, json=body, headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200, r.text
    data = r.json()
    return {"profiles": data["profiles"], "total": data["total"]}


def test_milvus_post_pages_equal_the_embedded_ones(tmp_path, models, milvus_server, space):
    prefix = f"t{uuid.uuid4().hex[:8]}_"  # this test's own post collections on the shared server
    milvus = Settings(data_dir=tmp_path / "milvus", store=f"{milvus_server.uri}?prefix={prefix}&timeout=20")
    embedded_rt, embedded = _runtime(Settings(data_dir=tmp_path / "embedded"), models, space)
    milvus_rt, on_milvus = _runtime(milvus, models, space)
    recording = milvus_rt.post_index
    queries = [b64(encode(photo(name).rotate(4), quality=90)) for name in ("chelsea", "coffee", "rocket")]
    try:
        def compare() -> int:
            seen = 0
            for query in queries:
                for filters in FILTERS:
                    for page in (0, 1):
                        want = _search(embedded_rt, embedded, query, page, filters)
                        got = _search(milvus_rt, on_milvus, query, page, filters)
                        assert got["profiles"] == want["profiles"], (filters, page)
                        assert got["total"] <= want["total"]
                        seen += len(want["profiles"])
            return seen

        assert compare() > 0
        # Milvus answered the candidate stage with fewer posts than counted, filtered or not
        answered = [(c, f) for c, _, f in recording.calls if f is not None and f < c]
        assert answered and len({c for c, _ in answered}) >= 3, recording.calls

        # Deleting creators (a new snapshot version) re-syncs the Milvus copy: pages stay equal.
        first = _search(embedded_rt, embedded, queries[0], 0, None)["profiles"][:3]
        for rt, client in ((embedded_rt, embedded), (milvus_rt, on_milvus)):
            for profile in first:
                r = client.delete(f"/api/v1/creators/{PLATFORM}/{profile['userId']}", headers=admin_headers(rt))
                assert r.status_code == 200, r.text
        calls = len(recording.calls)
        after = _search(milvus_rt, on_milvus, queries[0], 0, None)["profiles"]
        assert not {p["userId"] for p in first} & {p["userId"] for p in after}
        assert after == _search(embedded_rt, embedded, queries[0], 0, None)["profiles"]
        assert any(f is not None for _, _, f in recording.calls[calls:])
    finally:
        for rt in (embedded_rt, milvus_rt):
            rt.close()
        from pymilvus import connections, utility

        connections.connect(alias="cleanup-posts", host="127.0.0.1", port=str(milvus_server.port))
        for name in utility.list_collections(using="cleanup-posts"):
            if name.startswith(prefix):
                utility.drop_collection(name, using="cleanup-posts")
        connections.disconnect("cleanup-posts")
