"""Tests of lookalike.index.VectorIndex: exact results, churn, filters, IVF recall, persistence."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import lookalike.index.vector_index as vi
from lookalike.index import SearchPath, VectorIndex


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int = 50) -> np.ndarray:
    centres = unit(rng, clusters, dim)
    x = centres[rng.integers(0, clusters, n)] + 0.35 * unit(rng, n, dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute(model: dict[int, np.ndarray], q: np.ndarray, k: int, allowed=None):
    """Reference top-k: same per-row similarity formula, ties by key ascending."""
    keys = np.array(
        sorted(model if allowed is None else set(allowed) & model.keys()), dtype=np.int64
    )
    if keys.shape[0] == 0:
        return keys, np.zeros(0, dtype=np.float32)
    mat = np.stack([model[int(k)] for k in keys])
    sims = (mat * q).sum(axis=1, dtype=np.float32)
    order = np.lexsort((keys, -sims))[:k]
    return keys[order], sims[order]


def assert_same(got, want):
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[0].dtype == np.int64 and got[1].dtype == np.float32


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ------------------------------------------------------------------ exact path


def test_exact_matches_brute_force(rng):
    dim, n = 48, 1500
    vecs = unit(rng, n, dim)
    keys = rng.permutation(10 * n)[:n].astype(np.int64)
    index = VectorIndex(dim)
    index.add(keys, vecs)
    model = dict(zip(keys.tolist(), vecs, strict=True))
    for q in unit(rng, 20, dim):
        for k in (1, 10, 100):
            got = index.search_with_path(q, k)
            assert got[2] == SearchPath.EXACT
            assert_same(got[:2], brute(model, q, k))
            assert np.all(np.diff(got[1]) <= 0)


def test_empty_index_and_edge_k(rng):
    index = VectorIndex(8)
    q = unit(rng, 1, 8)[0]
    keys, sims = index.search(q, 5)
    assert keys.shape == (0,) and sims.shape == (0,)
    assert keys.dtype == np.int64 and sims.dtype == np.float32
    assert len(index) == 0 and 3 not in index and index.keys().shape == (0,)

    vecs = unit(rng, 4, 8)
    index.add(np.array([7, 3, 9, 1]), vecs)
    keys, sims = index.search(q, 50)  # k > n: everything, sorted
    assert sorted(keys.tolist()) == [1, 3, 7, 9]
    assert np.all(np.diff(sims) <= 0)
    assert index.search(q, 0)[0].shape == (0,)
    with pytest.raises(ValueError):
        index.search(q, -1)


def test_allowed_empty_unknown_and_duplicate_keys(rng):
    dim = 16
    vecs = unit(rng, 100, dim)
    index = VectorIndex(dim)
    index.add(np.arange(100), vecs)
    model = dict(enumerate(vecs))
    q = unit(rng, 1, dim)[0]
    keys, sims = index.search(q, 10, allowed=np.array([], dtype=np.int64))
    assert keys.shape == (0,) and sims.shape == (0,)
    assert index.search(q, 10, allowed=np.array([1000, -5]))[0].shape == (0,)
    # duplicates and unknown keys in allowed are ignored
    allowed = np.array([5, 5, 5, 5, 7, 7, 7, 9, 12345, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11])
    assert_same(index.search(q, 3, allowed=allowed), brute(model, q, 3, allowed=allowed.tolist()))
    assert_same(index.search(q, 10, allowed=allowed), brute(model, q, 10, allowed=allowed.tolist()))


def test_add_replace_remove_then_search(rng):
    dim = 24
    index = VectorIndex(dim)
    model: dict[int, np.ndarray] = {}
    for _ in range(60):
        op = rng.integers(0, 3)
        if op < 2 or not model:
            ks = rng.integers(0, 400, size=rng.integers(1, 40))
            vs = unit(rng, ks.shape[0], dim)
            index.add(ks, vs)
            for k, v in zip(ks.tolist(), vs, strict=True):  # last occurrence wins
                model[k] = v
        else:
            ks = rng.integers(0, 450, size=rng.integers(1, 30))
            index.remove(ks)
            for k in ks.tolist():
                model.pop(k, None)
        assert len(index) == len(model)
        assert sorted(index.keys().tolist()) == sorted(model)
        q = unit(rng, 1, dim)[0]
        assert_same(index.search(q, 15), brute(model, q, 15))
        allowed = rng.integers(0, 450, size=30)
        assert_same(index.search(q, 5, allowed), brute(model, q, 5, allowed.tolist()))
    for k in range(450):
        assert (k in index) == (k in model)


def test_replaced_vector_is_used(rng):
    dim = 8
    vecs = unit(rng, 3, dim)
    index = VectorIndex(dim)
    index.add(np.array([1, 2, 3]), vecs)
    index.add(np.array([2]), vecs[0:1])  # key 2 now has key 1's vector
    keys, sims = index.search(vecs[0], 2)
    assert keys.tolist() == [1, 2] and sims[0] == sims[1]


def test_ties_are_broken_by_key_on_every_path(rng, monkeypatch):
    dim, n = 32, 3000
    vecs = clustered(rng, n, dim)
    keys = np.arange(n, dtype=np.int64)
    dup = vecs[17]
    twins = np.array([5000, 4000, 6000, 4500], dtype=np.int64)  # out of key order on purpose
    index = VectorIndex(dim, ann_min_size=1000)
    index.add(keys, vecs)
    index.add(twins, np.repeat(dup[None], 4, axis=0))
    expect = sorted([17, *twins.tolist()])
    results = {}
    allowed_big = np.concatenate([keys[: n // 2], twins, [17]])
    for name, allowed in (
        ("all", None),
        ("small", np.array([*twins, 17, 3, 4])),
        ("big", allowed_big),
    ):
        got_keys, sims, path = index.search_with_path(dup, 5, allowed)
        results[name] = (got_keys, sims, path)
        assert got_keys.tolist() == expect, (name, path)
        assert len(set(sims.tolist())) == 1
    assert results["all"][2] == SearchPath.IVF
    assert results["small"][2] == SearchPath.EXACT_FILTERED
    # the same scores, to the bit, whichever path served them
    np.testing.assert_array_equal(results["all"][1], results["small"][1])
    monkeypatch.setattr(vi, "EXACT_MAX_ROWS", 0)  # small index: force the IVF path
    got_keys, sims, path = index.search_with_path(dup, 5, allowed_big)
    assert path == SearchPath.IVF_FILTERED
    assert got_keys.tolist() == expect
    np.testing.assert_array_equal(sims, results["all"][1])
    # repeated queries give identical answers
    for _ in range(3):
        assert_same(index.search(dup, 5), results["all"][:2])


def test_sparse_keys(rng):
    dim = 16
    ks = np.array([-(2**62), -1, 0, 2**40, 2**62 + 7], dtype=np.int64)
    vecs = unit(rng, 5, dim)
    index = VectorIndex(dim, ann_min_size=3)
    index.add(ks, vecs)
    model = dict(zip(ks.tolist(), vecs, strict=True))
    for q in vecs:
        assert_same(index.search(q, 3), brute(model, q, 3))
        got = index.search(q, 5, allowed=ks[[0, 3, 4]])
        assert_same(got, brute(model, q, 5, ks[[0, 3, 4]].tolist()))
    index.remove(ks[:2])
    assert -1 not in index and 2**40 in index and len(index) == 3
    model.pop(int(ks[0])), model.pop(int(ks[1]))
    assert_same(index.search(vecs[4], 5), brute(model, vecs[4], 5))


def test_many_sparse_keys_vectorised_lookup(rng):
    dim, n = 16, 600
    ks = np.unique(rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64))
    vecs = unit(rng, ks.shape[0], dim)
    index = VectorIndex(dim, ann_min_size=300)
    index.add(ks, vecs)
    model = dict(zip(ks.tolist(), vecs, strict=True))
    index.remove(ks[::3])
    for k in ks[::3].tolist():
        del model[k]
    allowed = np.concatenate([ks[::2], rng.integers(0, 10, 50)])  # > 32 keys: sorted-array lookup
    for q in unit(rng, 10, dim):
        assert_same(index.search(q, 10, allowed), brute(model, q, 10, allowed.tolist()))
        assert set(index.search(q, 10)[0].tolist()) <= set(model)


def test_input_validation(rng):
    index = VectorIndex(8)
    good = unit(rng, 2, 8)
    with pytest.raises(ValueError):
        index.add(np.array([1, 2]), good[:, :4])
    with pytest.raises(ValueError):
        index.add(np.array([1]), good)
    with pytest.raises(ValueError):
        index.add(np.array([1, 2]), good * 2)  # not normalised
    bad = good.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        index.add(np.array([1, 2]), bad)
    with pytest.raises(TypeError):
        index.add(np.array([1.5, 2.0]), good)
    with pytest.raises(ValueError):
        index.search(good[0, :4], 3)
    with pytest.raises(ValueError):
        VectorIndex(0)
    assert len(index) == 0  # nothing half-applied


# ------------------------------------------------------------------ filtered planner


@pytest.mark.parametrize("fraction", [0.0005, 0.01, 0.05, 0.15, 0.3, 0.6])
def test_filtered_searches_keep_to_the_filter(rng, monkeypatch, fraction):
    dim, n = 32, 4000
    vecs = clustered(rng, n, dim)
    index = VectorIndex(dim, ann_min_size=1000)
    index.add(np.arange(n), vecs)
    model = dict(enumerate(vecs))
    monkeypatch.setattr(vi, "EXACT_MAX_ROWS", 500)  # small index: larger filters go to the IVF
    hits = total = 0
    for q in clustered(rng, 10, dim):
        allowed = np.flatnonzero(rng.random(n) < fraction)
        got, sims, path = index.search_with_path(q, 10, allowed)
        want = brute(model, q, 10, allowed.tolist())
        if allowed.shape[0] == 0:
            assert path == SearchPath.EMPTY and got.shape == (0,)
        elif allowed.shape[0] <= 500:
            assert path == SearchPath.EXACT_FILTERED
            assert_same((got, sims), want)
        else:
            assert path == SearchPath.IVF_FILTERED
        assert set(got.tolist()) <= set(allowed.tolist())
        # exact scores for the keys returned, whatever the path
        np.testing.assert_allclose(sims, vecs[got] @ q, rtol=0, atol=1e-5)
        hits += len(set(got.tolist()) & set(want[0].tolist()))
        total += len(want[0])
    assert hits >= 0.95 * total


def test_filtered_ivf_probes_more_cells_for_a_narrow_filter(rng, monkeypatch):
    """A narrow filter is applied inside the IVF scan with more cells probed (1 / sqrt(share)
    times), so its allowed neighbours, which lie deeper in the unfiltered ranking, are found."""
    dim, n = 32, 8000
    vecs = clustered(rng, n, dim, clusters=200)
    index = VectorIndex(dim, ann_min_size=1000)
    index.add(np.arange(n), vecs)
    model = dict(enumerate(vecs))
    monkeypatch.setattr(vi, "EXACT_MAX_ROWS", 0)
    hits = {1.0: 0, 0.125: 0}
    for q in clustered(rng, 30, dim, clusters=200):
        allowed = np.flatnonzero(rng.random(n) < 0.03)
        want = set(brute(model, q, 10, allowed.tolist())[0].tolist())
        for share in hits:
            monkeypatch.setattr(index, "probe_share", share)
            got, _, path = index.search_with_path(q, 10, allowed)
            assert path == SearchPath.IVF_FILTERED and set(got.tolist()) <= set(allowed.tolist())
            hits[share] += len(set(got.tolist()) & want)
    assert hits[1.0] == 300  # every cell probed: the exact answer
    assert hits[0.125] >= 0.95 * 300


# ------------------------------------------------------------------ IVF path


def recall(index: VectorIndex, model, queries, k=10, allowed_fn=None):
    hits = total = 0
    for q in queries:
        allowed = None if allowed_fn is None else allowed_fn()
        got = index.search(q, k, allowed)[0]
        want = brute(model, q, k, None if allowed is None else allowed.tolist())[0]
        hits += len(set(got.tolist()) & set(want.tolist()))
        total += len(want)
    return hits / total


def test_ivf_recall_unfiltered_and_filtered(rng):
    dim, n = 32, 6000
    vecs = clustered(rng, n, dim)
    index = VectorIndex(dim, ann_min_size=2000)
    index.add(np.arange(1000), vecs[:1000])
    assert not index.has_ann
    index.add(np.arange(1000, n), vecs[1000:])  # crosses ann_min_size: IVF built
    assert index.has_ann
    model = dict(enumerate(vecs))
    queries = clustered(rng, 50, dim)
    assert index.search_with_path(queries[0], 10)[2] == SearchPath.IVF
    assert recall(index, model, queries) >= 0.95
    assert (
        recall(index, model, queries, allowed_fn=lambda: np.flatnonzero(rng.random(n) < 0.01))
        == 1.0
    )


def test_ivf_stays_correct_under_churn(rng):
    dim, n = 32, 4000
    index = VectorIndex(dim, ann_min_size=2000)
    vecs = clustered(rng, n, dim)
    index.add(np.arange(n), vecs)
    model = dict(enumerate(vecs))
    for round_ in range(6):
        gone = rng.choice(np.array(sorted(model)), size=600, replace=False)
        index.remove(gone)
        for k in gone.tolist():
            del model[k]
        # new keys, re-added removed keys and replaced keys (their old codes stay in the
        # IVF, excluded by the live bitmap)
        new = np.arange(10_000 + 300 * round_, 10_000 + 300 * (round_ + 1))
        back = gone[:200]
        replace = rng.choice(np.array(sorted(model)), size=200, replace=False)
        ks = np.concatenate([new, back, replace])
        vs = clustered(rng, ks.shape[0], dim)
        index.add(ks, vs)
        model.update(zip(ks.tolist(), vs, strict=True))
        assert len(index) == len(model)
        assert set(index.keys().tolist()) == set(model)
    queries = clustered(rng, 40, dim)
    assert recall(index, model, queries) >= 0.95
    live = set(model)
    for q in queries:
        got, sims = index.search(q, 10)
        assert set(got.tolist()) <= live
        want = {k: (model[k] * q).sum(dtype=np.float32) for k in got.tolist()}
        np.testing.assert_array_equal(sims, np.array([want[k] for k in got.tolist()], np.float32))


def test_ivf_is_retrained_as_the_index_grows(rng):
    dim = 16
    index = VectorIndex(dim, ann_min_size=500)
    vecs = clustered(rng, 9000, dim)
    index.add(np.arange(400), vecs[:400])
    assert not index.has_ann
    index.add(np.arange(400, 600), vecs[400:600])
    first = index._ann
    assert first is not None and first.trained_on == 600
    index.add(np.arange(600, 2000), vecs[600:2000])
    assert index._ann is first  # grown < RETRAIN_GROWTH x: new rows are assigned to its cells
    index.add(np.arange(2000, 9000), vecs[2000:9000])
    assert index._ann is not first and index._ann.trained_on == 9000 and index._ann.nlist > first.nlist
    model = dict(enumerate(vecs))
    assert recall(index, model, clustered(rng, 30, dim)) >= 0.95


def test_ivf_is_retrained_when_new_rows_fit_its_cells_badly(rng):
    """Rows unlike those the cells were trained on (new clusters) trigger a retrain before the
    index has grown RETRAIN_GROWTH times; rows like them do not."""
    dim = 32
    index = VectorIndex(dim, ann_min_size=2000)
    centres = unit(rng, 40, dim)

    def draw(c: np.ndarray, n: int) -> np.ndarray:
        x = c[rng.integers(0, len(c), n)] + 0.35 * unit(rng, n, dim)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    index.add(np.arange(2000), draw(centres, 2000))
    first = index._ann
    assert first is not None and first.trained_on == 2000
    index.add(np.arange(2000, 2400), draw(centres, 400))  # the same content: no retrain
    assert index._ann is first
    index.add(np.arange(2400, 2800), draw(unit(rng, 40, dim), 400))  # new content: retrained
    assert index._ann is not first and index._ann.trained_on == 2800


def test_concurrent_searches_during_adds(rng):
    dim = 16
    index = VectorIndex(dim, ann_min_size=500)
    base = unit(rng, 300, dim)
    index.add(np.arange(300), base)
    batches = [unit(rng, 50, dim) for _ in range(30)]
    queries = unit(rng, 20, dim)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                for q in queries:
                    keys, sims = index.search(q, 10)
                    assert keys.shape == sims.shape and keys.shape[0] == 10
                    assert np.all(np.diff(sims) <= 0)
                    index.search(q, 5, allowed=np.arange(0, 2000, 7))
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i, b in enumerate(batches):
        index.add(np.arange(300 + 50 * i, 350 + 50 * i), b)
        if i % 5 == 4:
            index.remove(np.arange(i, 300, 37))
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert index.has_ann


# ------------------------------------------------------------------ persistence


@pytest.mark.parametrize("with_ann", [False, True])
def test_save_load_round_trip(tmp_path, rng, with_ann):
    dim, n = 32, 3000
    vecs = clustered(rng, n, dim)
    index = VectorIndex(dim, ann_min_size=2000 if with_ann else 10_000, probe_share=0.25)
    index.add(np.arange(n), vecs)
    index.remove(np.arange(0, n, 10))
    index.watermark = 987654321
    path = tmp_path / "field.vidx"
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["field.vidx"]  # no temporary left behind
    loaded = VectorIndex.load(path)
    assert loaded.has_ann == loaded.ann_loaded == with_ann
    assert (loaded.watermark, loaded.probe_share, len(loaded)) == (987654321, 0.25, len(index))
    np.testing.assert_array_equal(loaded.keys(), index.keys())
    allowed = np.arange(0, n, 3)
    for q in clustered(rng, 20, dim):
        assert_same(loaded.search(q, 10), index.search(q, 10))
        assert_same(loaded.search(q, 10, allowed), index.search(q, 10, allowed))
    # the loaded index keeps working: re-add a removed key, add new ones, save again
    loaded.add(np.array([0, n + 1]), vecs[:2])
    assert 0 in loaded and n + 1 in loaded
    loaded.save(path)
    again = VectorIndex.load(path)
    assert_same(again.search(vecs[1], 3), loaded.search(vecs[1], 3))


def test_load_rejects_garbage(tmp_path, rng):
    bad = tmp_path / "bad.vidx"
    bad.mkdir()
    (bad / "meta.json").write_bytes(b"not an index")
    with pytest.raises(ValueError):
        VectorIndex.load(bad)
    index = VectorIndex(8)
    index.add(np.arange(10), unit(rng, 10, 8))
    good = tmp_path / "good.vidx"
    index.save(good)
    live = next(good.glob("live.*"))
    live.write_bytes(live.read_bytes()[:-5])  # truncated tombstone map
    with pytest.raises(ValueError):
        VectorIndex.load(good)
    with pytest.raises(FileNotFoundError):
        VectorIndex.load(tmp_path / "missing.vidx")


def test_save_load_empty(tmp_path):
    index = VectorIndex(4)
    index.save(tmp_path / "e.vidx")
    loaded = VectorIndex.load(tmp_path / "e.vidx")
    assert len(loaded) == 0 and loaded.search(np.array([1, 0, 0, 0], np.float32), 3)[0].shape == (
        0,
    )


def test_on_disk_index_reopens_with_its_ivf_and_memory_mapped_rows(tmp_path, rng):
    """A saved index opens without rebuilding its IVF and without reading its vectors."""
    dim, n = 600, 3000
    vecs = clustered(rng, n, dim)
    directory = tmp_path / "visual"
    index = VectorIndex(dim, directory=directory, ann_min_size=2000)
    index.add(np.arange(n), vecs)
    assert index.has_ann and not index.ann_loaded
    index.remove(np.arange(0, n, 7))
    index.watermark = 42
    assert index.save()
    queries = clustered(rng, 10, dim)
    want = [index.search(q, 10) for q in queries]
    index.close()

    loaded = VectorIndex.load(directory)
    assert loaded.ann_loaded and not loaded.read_only
    assert isinstance(loaded._vecs.view(), np.memmap)  # mapped, not read into RAM
    assert (len(loaded), loaded.slots, loaded.watermark) == (len(index), n, 42)
    for q, w in zip(queries, want, strict=True):
        assert_same(loaded.search(q, 10), w)
    # IVF candidates re-ranked exactly: the scores are the exact ones of the returned keys
    keys, sims, path = loaded.search_with_path(queries[0], 10)
    assert path == SearchPath.IVF
    np.testing.assert_allclose(sims, vecs[keys] @ queries[0], rtol=0, atol=1e-5)
    # a second owner in the same directory opens read-only and never writes the files
    other = VectorIndex.load(directory)
    assert other.read_only and not other.save()
    other.add(np.array([n + 5]), vecs[:1])
    assert n + 5 in other and n + 5 not in loaded
    other.close()
    loaded.close()


def test_compaction_drops_tombstones_and_keeps_results(tmp_path, rng):
    dim, n = 600, 3000
    vecs = clustered(rng, n, dim)
    directory = tmp_path / "visual"
    index = VectorIndex(dim, directory=directory, ann_min_size=2000)
    index.add(np.arange(n), vecs)
    index.remove(np.arange(0, n, 2))
    index.add(np.array([1, 3]), vecs[[10, 12]])  # replaced: old rows tombstoned
    before_bytes = sum(p.stat().st_size for p in directory.iterdir())
    queries = clustered(rng, 10, dim)
    allowed = np.arange(1, n, 4)
    want = [(index.search(q, 10), index.search(q, 10, allowed)) for q in queries]
    assert index.slots == n + 2 and len(index) == n // 2
    assert index.compact() == n // 2 + 2
    assert index.slots == len(index) == n // 2
    assert index._ann is not None and index._ann.ntotal == n // 2  # dead codes dropped, ids renumbered
    assert sum(p.stat().st_size for p in directory.iterdir()) < before_bytes
    for q, (w, wf) in zip(queries, want, strict=True):
        assert_same(index.search(q, 10), w)
        assert_same(index.search(q, 10, allowed), wf)
    assert index.compact() == 0
    index.close()
    again = VectorIndex.load(directory)
    assert again.ann_loaded and again.slots == n // 2
    for q, (w, _) in zip(queries, want, strict=True):
        assert_same(again.search(q, 10), w)
    again.close()
