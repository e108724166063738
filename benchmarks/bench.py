"""One run, every speed figure of the README.

1. model-only embedding throughput: ``embed_pixels`` on pre-decoded, preprocessed tensors;
2. end-to-end import throughput on real JPEGs (read + decode + preprocess + embed + durable
   SQLite commit), and its ratio to (1) (target >= 0.8: decoding and storing overlap inference);
   then creator import (``lookalike creators import``: a JSONL of creators with 20 posts each
   over the same JPEGs, one transaction per creator) and its ratio to the library import
   (target >= 0.8: reading runs ahead across creators);
3. search p50 / p95 through the store (filter language + planner + vector index) on a
   library of ``--n`` synthetic clustered vectors, without and with tag filters;
4. recall@10 of filtered search against exact search over the rows passing the filter, at
   0.1%, 1%, 10% and 50% selectivity (tags drawn independently of the vectors).

Ratios and recalls are measured against baselines from the same run.
Run: ``python benchmarks/bench.py [--n 100000] [--images DIR] [--search-only]``; ``--store milvus``
(or ``--store milvus://HOST:PORT``) prints the search table on the embedded store and on Milvus, side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import lookalike  # noqa: F401
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from filtered_recall import make_clustered  # noqa: E402

from lookalike.config import Settings  # noqa: E402
from lookalike.filters import parse_filter  # noqa: E402
from lookalike.imaging import decode_image  # noqa: E402
from lookalike.runtime import Runtime  # noqa: E402
from lookalike.service.importer import ImportItem  # noqa: E402
from lookalike.store import EmbeddedStore, NewImage  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SELECTIVITY_BUCKETS = {"0.1%": 1, "1%": 10, "10%": 100, "50%": 500}  # of 1000 buckets
CREATOR_POSTS = 20  # posts per creator in the creator-import figure (the demo's: 6 to 40)


def _jpegs(images: Path | None, count: int) -> list[Path]:
    roots = [images] if images else [SHARED / "fashion" / "images", SHARED / "corel1k" / "images"]
    for root in roots:
        if root and root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
            if files:
                return files[:count]
    from lookalike.demo import demo_photos

    photos = [p for p, _ in demo_photos()]
    return [photos[i % len(photos)] for i in range(count)]


def bench_embedding(settings: Settings, images: Path | None, count: int) -> dict:
    files = _jpegs(images, count)
    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime.open(Settings(data_dir=Path(tmp), models_dir=settings.model_cache_dir))
        try:
            rt.libraries.create("bench")
            model = rt.libraries.model_for(rt.libraries.get("bench"))
            pixels = np.stack([model.preprocess(decode_image(p.read_bytes())) for p in files])
            model.embed_pixels(pixels[:32])  # warm-up: ORT allocates on first run
            start = time.perf_counter()
            model.embed_pixels(pixels)
            model_rate = len(files) / (time.perf_counter() - start)

            # Distinct ids, so nothing is skipped.
            items = [ImportItem(image_id=str(i), path=str(p), image_uri=str(p)) for i, p in enumerate(files)]
            start = time.perf_counter()
            outcome = rt.importer.import_items("bench", items, atomic=False, local_files=True)
            import_rate = len(outcome.added) / (time.perf_counter() - start)

            jsonl = _creators_jsonl(files, Path(tmp) / "creators.jsonl", CREATOR_POSTS)
            start = time.perf_counter()
            creators = rt.creator_importer.import_jsonl(jsonl)
            creator_rate = creators.posts_embedded / (time.perf_counter() - start)
        finally:
            rt.close()
    return {"images": len(files), "model_images_per_s": model_rate, "import_images_per_s": import_rate,
            "ratio": import_rate / model_rate, "creators": len(creators.imported),
            "creator_images_per_s": creator_rate, "creator_ratio": creator_rate / import_rate}


def _creators_jsonl(files: list[Path], path: Path, posts: int) -> Path:
    """A creators JSONL (see ``lookalike.service.creators.importer``): one creator per ``posts``
    consecutive files (the last may have fewer), every post with its own id."""
    with path.open("w") as fh:
        for c, start in enumerate(range(0, len(files), posts)):
            line = {"platform": "instagram", "userId": f"c{c}", "username": f"creator{c}", "followersCount": 1000,
                    "posts": [{"id": f"c{c}-{i}", "created_at": 1_700_000_000 + i, "image_path": str(f)}
                              for i, f in enumerate(files[start : start + posts])]}
            fh.write(json.dumps(line) + "\n")
    return path


def bench_search(
    n: int, dim: int, queries: int, seed: int, store_spec: str = "embedded"
) -> tuple[list[dict], list[dict], float]:
    """Search latency and recall through one store: ``embedded`` or a Milvus URI."""
    base, qs = make_clustered(n, dim, queries, seed)
    rng = np.random.default_rng(seed + 1)
    buckets = rng.permutation(n) % 1000  # independent of the vectors: the hard case
    with tempfile.TemporaryDirectory() as tmp:
        if store_spec == "embedded":
            store = EmbeddedStore(Path(tmp) / "db.sqlite", Path(tmp) / "index")
        else:
            from lookalike.store.backends import open_store

            store = open_store(store_spec, db_path=Path(tmp) / "db.sqlite", index_dir=Path(tmp) / "index",
                               bytes_path=Path(tmp) / "bytes.sqlite")
            try:
                store.delete_library("bench")  # left by an interrupted run
            except Exception:  # noqa: BLE001 - LibraryNotFound
                pass
        store.create_library("bench", "general_search", "synthetic", {"visual": dim})
        for start in range(0, n, 2000):
            batch = [NewImage(image_id=str(i), image_uri=None, tags={"bucket": int(buckets[i]), "even": i % 2 == 0},
                              vectors={"visual": base[i]}) for i in range(start, min(n, start + 2000))]
            store.add_images("bench", batch)
        start = time.perf_counter()
        if hasattr(store, "flush"):  # Milvus: seal the rows and wait for their HNSW index
            store.flush("bench")
        store.search("bench", "visual", qs[0], 10)  # loads rows, builds the IVF
        build_s = time.perf_counter() - start

        latency, recall = [], []
        cases = {"none": None} | {
            s: {"field": "bucket", "op": "<", "value": b} for s, b in SELECTIVITY_BUCKETS.items()
        } | {"compound": [{"field": "even", "op": "=", "value": True},
                             {"or": [{"field": "bucket", "op": "<", "value": 50},
                                     {"field": "bucket", "op": "in", "value": [900, 901, 902, 903, 904] * 10}]}]}
        for name, raw in cases.items():
            node = parse_filter(raw)
            times, recalls = [], []
            allowed = np.ones(n, bool) if raw is None else None
            for q in qs:
                t0 = time.perf_counter()
                hits = store.search("bench", "visual", q, 10, node)
                times.append((time.perf_counter() - t0) * 1000)
                if allowed is None:
                    allowed = np.array([_passes(raw, int(buckets[i]), i) for i in range(n)])
                rows = np.flatnonzero(allowed)
                truth = rows[np.argsort(-(base[rows] @ q), kind="stable")[:10]]
                got = {int(h.image.image_id) for h in hits}
                recalls.append(len(got & set(truth.tolist())) / max(1, min(10, rows.size)))
            latency.append({"filter": name, "selectivity": float(allowed.mean()),
                            "p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))})
            recall.append({"filter": name, "selectivity": float(allowed.mean()), "recall@10": float(np.mean(recalls))})
        if store_spec != "embedded":
            store.delete_library("bench")
        store.close()
    return latency, recall, build_s


def _passes(raw, bucket: int, i: int) -> bool:
    if isinstance(raw, dict):
        return bucket < raw["value"]
    return i % 2 == 0 and (bucket < 50 or bucket in (900, 901, 902, 903, 904))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="vectors in the search library")
    ap.add_argument("--dim", type=int, default=1280, help="embedding size (EfficientNet-Lite0: 1280)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--images", type=Path, default=None, help="folder of JPEGs (default: ../shared/datasets)")
    ap.add_argument("--embed-count", type=int, default=512, help="JPEGs for the embedding figures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", type=Path, default=None, help="for the ONNX model cache")
    ap.add_argument("--store", default="embedded",
                    help="search table also on this store, side by side with the embedded one: milvus://HOST:PORT,"
                         " or 'milvus' to start a standalone Milvus server in a temp dir for the run")
    ap.add_argument("--search-only", action="store_true", help="skip the embedding and import figures")
    args = ap.parse_args(argv)
    if args.store != "embedded":
        return _compare_stores(args)

    settings = Settings.from_env(args.data_dir)
    if not args.search_only:
        emb = bench_embedding(settings, args.images, args.embed_count)
        cores = __import__("os").cpu_count()
        print(f"## Embedding ({emb['images']} real JPEGs, efficientnet-lite0, ONNX Runtime, {cores} cores)")
        print(f"model only (pre-decoded tensors): {emb['model_images_per_s']:.1f} images/s")
        print(f"end-to-end import (read, decode, embed, commit): {emb['import_images_per_s']:.1f} images/s")
        print(f"ratio import / model only: {emb['ratio']:.2f}  (target >= 0.8)")
        print(f"creator import ({emb['creators']} creators x {CREATOR_POSTS} posts, same JPEGs, one transaction a"
              f" creator): {emb['creator_images_per_s']:.1f} images/s")
        print(f"ratio creator import / library import: {emb['creator_ratio']:.2f}  (target >= 0.8)")
        print()
    latency, recall, build_s = bench_search(args.n, args.dim, args.queries, args.seed)
    print(f"## Search through the store: {args.n} vectors x {args.dim} dims, top_k 10, {args.queries} queries")
    print(f"first search (load rows + build the IVF): {build_s:.1f} s")
    print("| filter | selectivity | p50 ms | p95 ms | recall@10 vs exact |")
    print("|---|---|---|---|---|")
    for lat, rec in zip(latency, recall):
        print(f"| {lat['filter']} | {lat['selectivity']:.4f} | {lat['p50_ms']:.2f} | {lat['p95_ms']:.2f} "
              f"| {rec['recall@10']:.3f} |")
    return 0


def _compare_stores(args: argparse.Namespace) -> int:
    """The search table on the embedded store and on Milvus, same vectors, side by side."""
    spec, server_dir = args.store, None
    if spec == "milvus":
        from lookalike.service.backends import free_port, start_server

        server_dir = Path(tempfile.mkdtemp(prefix="lookalike-bench-milvus-"))
        spec = start_server(server_dir, free_port()).uri
    try:
        embedded = bench_search(args.n, args.dim, args.queries, args.seed)
        milvus = bench_search(args.n, args.dim, args.queries, args.seed, f"{spec}?prefix=bench_&timeout=600")
    finally:
        if server_dir is not None:
            import shutil

            from lookalike.service.backends import stop_server

            stop_server(server_dir)
            shutil.rmtree(server_dir, ignore_errors=True)
    print(f"## Search: embedded store vs Milvus 2.3.5 standalone (loopback), {args.n} vectors x {args.dim} dims,"
          f" top_k 10, {args.queries} queries, one client thread")
    print(f"ready to search after import: embedded {embedded[2]:.1f} s (IVF build), Milvus {milvus[2]:.1f} s"
          " (flush + index build)")
    print("| filter | selectivity | embedded p50 / p95 ms | embedded recall@10 | Milvus p50 / p95 ms | Milvus recall@10 |")
    print("|---|---|---|---|---|---|")
    for e_lat, e_rec, m_lat, m_rec in zip(embedded[0], embedded[1], milvus[0], milvus[1]):
        print(f"| {e_lat['filter']} | {e_lat['selectivity']:.4f} | {e_lat['p50_ms']:.2f} / {e_lat['p95_ms']:.2f} "
              f"| {e_rec['recall@10']:.3f} | {m_lat['p50_ms']:.2f} / {m_lat['p95_ms']:.2f} | {m_rec['recall@10']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
