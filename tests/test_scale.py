"""Scale features of the embedded store: memory-mapped indexes reopened without a rebuild,
tombstones and compaction (CLI), streaming catch-up of writes made by another process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import PHOTOS, b64, encode, photo
from lookalike.cli import app
from lookalike.filters import parse_filter
from lookalike.runtime import Runtime
from lookalike.service.importer import ImportItem
from lookalike.store import EmbeddedStore, NewImage

# Small enough for CI, large enough for the IVF candidate stage.
N, DIM = 3000, 128
OPTIONS = {"ann_min_size": 2000}


def clustered(rng: np.random.Generator, n: int) -> np.ndarray:
    centres = rng.standard_normal((40, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def add(store: EmbeddedStore, vecs: np.ndarray, start: int) -> None:
    for lo in range(0, len(vecs), 500):
        store.add_images("big", [
            NewImage(image_id=str(start + i), image_uri=None, tags={"b": (start + i) % 10},
                     vectors={"visual": vecs[i]})
            for i in range(lo, min(len(vecs), lo + 500))
        ])


def exact(vecs: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> list[str]:
    sims = vecs @ q
    order = np.lexsort((ids, -sims))[:k]
    return [str(i) for i in ids[order]]


def test_reopening_a_large_library_loads_its_ivf_and_catches_up(tmp_path: Path):
    rng = np.random.default_rng(5)
    vecs = clustered(rng, N + 40)
    queries = clustered(rng, 20)
    db, index_dir = tmp_path / "db.sqlite", tmp_path / "index"
    server = EmbeddedStore(db, index_dir, index_options=OPTIONS)
    server.create_library("big", "general_search", "synthetic", {"visual": DIM})
    add(server, vecs[:N], 0)
    server.search("big", "visual", queries[0], 10)  # builds the IVF
    stats = server.index_stats("big")["visual"]
    assert stats["ann"] and not stats["ann_loaded"]
    for image_id in ("0", "1", "2"):
        server.delete_image("big", image_id)
    server.close()

    cli = EmbeddedStore(db, index_dir, index_options=OPTIONS)  # another process importing
    add(cli, vecs[N:], N)
    cli.close()

    reopened = EmbeddedStore(db, index_dir, index_options=OPTIONS)
    try:
        stats = reopened.index_stats("big")["visual"]
        assert stats["ann_loaded"], "the saved IVF must be loaded, not rebuilt"
        assert stats["live"] == N + 40 - 3 and stats["owner"]
        ids = np.arange(3, N + 40)
        live = vecs[3:]
        for q in queries:
            hits = reopened.search("big", "visual", q, 10)
            got = [h.image.image_id for h in hits]
            # same scores as an exact scan of the returned images
            np.testing.assert_allclose([h.similarity for h in hits], live[[int(g) - 3 for g in got]] @ q, atol=1e-5)
            assert len(set(got) & set(exact(live, ids, q, 10))) >= 9
            allowed = np.flatnonzero(ids % 10 == 4)
            hits = reopened.search("big", "visual", q, 10, parse_filter({"field": "b", "op": "=", "value": 4}))
            assert [h.image.image_id for h in hits] == exact(live[allowed], ids[allowed], q, 10)
    finally:
        reopened.close()


def test_compaction_command_reclaims_deleted_rows(tmp_path: Path, settings, models, model_cache):
    rt = Runtime.open(settings, models=models)
    rt.libraries.create("lib")
    rt.importer.import_items("lib", [ImportItem(image_id=n, image_base64=b64(encode(photo(n))), tags={}) for n in PHOTOS])
    query = encode(photo("coffee"))
    rt.search.by_image("lib", query)  # opens the index
    for name in PHOTOS[:3]:
        rt.libraries.delete_image("lib", name)
    before = [(r.image_id, r.score) for r in rt.search.by_image("lib", query)]
    rt.close()

    env = {"LOOKALIKE_DATA_DIR": str(settings.data_dir), "LOOKALIKE_MODEL_CACHE": str(model_cache)}
    out = CliRunner().invoke(app, ["library", "compact", "lib"], env=env, catch_exceptions=False)
    fields = 2  # visual and semantic rows
    assert out.exit_code == 0 and f"reclaimed {3 * fields} vector rows" in out.output
    again = CliRunner().invoke(app, ["library", "compact", "lib"], env=env, catch_exceptions=False)
    assert "reclaimed 0 vector rows" in again.output
    missing = CliRunner().invoke(app, ["library", "compact", "nope"], env=env, catch_exceptions=False)
    assert missing.exit_code == 2 and "nope" in missing.output

    rt = Runtime.open(settings, models=models)
    try:
        assert [(r.image_id, r.score) for r in rt.search.by_image("lib", query)] == before
        assert len(before) == len(PHOTOS) - 3
    finally:
        rt.close()


def test_compaction_is_refused_while_another_process_owns_the_index(tmp_path: Path):
    rng = np.random.default_rng(9)
    vecs = clustered(rng, 50)
    server = EmbeddedStore(tmp_path / "db.sqlite", tmp_path / "index")
    server.create_library("big", "general_search", "synthetic", {"visual": DIM})
    add(server, vecs, 0)
    server.search("big", "visual", vecs[0], 3)
    other = EmbeddedStore(tmp_path / "db.sqlite", tmp_path / "index")
    try:
        assert other.search("big", "visual", vecs[0], 1)[0].image.image_id == "0"
        assert not other.index_stats("big")["visual"]["owner"]
        from lookalike.errors import Conflict

        with pytest.raises(Conflict):
            other.compact("big")
        assert server.compact("big") == 0
    finally:
        other.close()
        server.close()
