"""Scale benchmark: a large image library and a large creator platform on one machine.

``python benchmarks/scale.py --n 1000000 --posts 1000000 [--data-dir DIR] --json OUT.json``

1. build (or, with the same ``--data-dir``, reuse) a library of ``--n`` synthetic clustered
   1280-d vectors (the mixture of ``filtered_recall.make_clustered``, generated in chunks so the
   builder's memory stays bounded) with a ``bucket`` tag (0..999, independent of the vectors),
   imported through ``EmbeddedStore.add_images`` in transactions of 2,000 (streaming; each one
   durable when it returns), then opened once so the index (its IVF) is
   built and saved: ``build_seconds``;
2. exact top-10 of every query at every selectivity, by a streamed scan (the ground truth);
3. in a fresh process: open the data dir, answer the first search (``open_seconds``), then 200
   queries per filter (none, 0.1 %, 1 %, 10 %, 50 %) through ``Store.search``: p50 / p95 ms and
   recall@10 against the exact top-10 over the rows passing the filter; ``peak_rss_mb`` is that
   process's peak resident memory (VmHWM: memory-mapped pages it touched count);
4. a platform of ``--posts`` creator posts (20 per creator, profiles drawn as the demo draws
   them: ``evaluation.synthetic_creators``), and in another fresh process creator search through
   ``CreatorSearchService`` with the ``AnnPostIndex`` candidate stage: p50 / p95 unfiltered,
   p50 with a profile filter, and ``top6_agreement_vs_exact``: the share of the first page
   (6 profiles) that the exact scan (every counted post scored) also returns.

Prints a table and writes the JSON keys of issue 8. Synthetic data and output go under
``--data-dir`` (default: a temporary folder); never commit them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import lookalike  # noqa: F401
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lookalike.filters import parse_filter  # noqa: E402
from lookalike.store import EmbeddedStore, NewImage  # noqa: E402

DIM = 1280
K = 10
QUERIES = 200
CREATOR_QUERIES = 100
POSTS_PER_CREATOR = 20
SEED = 0
CHUNK = 50_000
BATCH = 2_000
#: Filters: name -> bucket bound (bucket < bound), None for no filter.
FILTERS = {"none": None, "0.1%": 1, "1%": 10, "10%": 100, "50%": 500}


# ------------------------------------------------------------------------------------- data


class Mixture:
    """``filtered_recall.make_clustered``'s mixture (decay 1, ~100 rows a cluster), drawn in
    chunks from per-chunk seeds so a million rows never sit in memory at once."""

    def __init__(self, n: int, dim: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.n, self.dim, self.seed = n, dim, seed
        self.k = max(8, n // 100)
        scale = (np.arange(1, dim + 1, dtype=np.float64) ** -0.5).astype(np.float32)
        self.scale = scale / np.linalg.norm(scale)
        centres = rng.standard_normal((self.k, dim), dtype=np.float32) * self.scale
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        offset = rng.standard_normal(dim, dtype=np.float32) * self.scale
        self.offset = offset / np.linalg.norm(offset)
        w = 1.0 / np.arange(1, self.k + 1) ** 0.7
        self.weights = w / w.sum()
        self.spread = rng.uniform(0.6, 1.3, self.k).astype(np.float32)

    def draw(self, count: int, stream: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, stream))
        c = rng.choice(self.k, size=count, p=self.weights)
        noise = rng.standard_normal((count, self.dim), dtype=np.float32) * self.scale
        block = self.centres[c] + 0.6 * self.offset + noise * self.spread[c, None]
        return block / np.linalg.norm(block, axis=1, keepdims=True)

    def chunks(self):
        for i, start in enumerate(range(0, self.n, CHUNK)):
            yield start, self.draw(min(CHUNK, self.n - start), 1 + i)

    def queries(self, count: int) -> np.ndarray:
        return self.draw(count, 0)


def buckets(n: int) -> np.ndarray:
    return np.random.default_rng((SEED, 99)).permutation(n) % 1000


def rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss would include the parent's,
    which Linux carries over fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_split_mb() -> dict[str, float]:
    """Current resident memory split: anonymous (heap: records, IVF codes, tag columns) vs file-backed
    (pages of the memory-mapped index the process touched: page cache the kernel can reclaim)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        for key in ("RssAnon", "RssFile"):
            if line.startswith(key + ":"):
                out[key] = int(line.split()[1]) / 1024
    return out


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


# ------------------------------------------------------------------------------ image library


def build_library(data: Path, n: int) -> dict:
    """Import and index the library (skipped when already built); exact ground truth."""
    marker = data / f"library-{n}.json"
    if marker.exists():
        return json.loads(marker.read_text())
    mixture = Mixture(n, DIM, SEED)
    tags = buckets(n)
    store = EmbeddedStore(data / "lookalike.db", data / "index")
    start = time.perf_counter()
    store.create_library("scale", "general_search", "synthetic", {"visual": DIM})
    for lo, block in mixture.chunks():
        for b in range(0, len(block), BATCH):
            store.add_images("scale", [
                NewImage(image_id=str(lo + b + i), image_uri=None, tags={"bucket": int(tags[lo + b + i])},
                         vectors={"visual": block[b + i]})
                for i in range(min(BATCH, len(block) - b))
            ])  # fmt: skip
    import_s = time.perf_counter() - start
    store.warm("scale")  # streams the rows into the memory-mapped index, builds the IVF
    store.close()  # saves it
    build_s = time.perf_counter() - start

    # exact top-10 per query and filter, streamed over the same chunks
    queries = mixture.queries(QUERIES)
    best = {name: (np.full((QUERIES, K), -np.inf, np.float32), np.zeros((QUERIES, K), np.int64)) for name in FILTERS}
    for lo, block in mixture.chunks():
        sims = block @ queries.T  # (chunk, queries)
        ids = np.arange(lo, lo + len(block))
        for name, bound in FILTERS.items():
            keep = slice(None) if bound is None else tags[lo : lo + len(block)] < bound
            s, i = sims[keep], ids[keep]
            if len(i) == 0:
                continue
            top_s, top_i = best[name]
            cand_s = np.concatenate([top_s, s.T], axis=1)
            cand_i = np.concatenate([top_i, np.broadcast_to(i, (QUERIES, len(i)))], axis=1)
            order = np.argsort(-cand_s, axis=1, kind="stable")[:, :K]
            best[name] = (np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1))
    np.savez(data / f"truth-{n}.npz", queries=queries, **{f"ids_{k}": v[1] for k, v in best.items()})
    info = {"n": n, "import_seconds": import_s, "build_seconds": build_s, "build_peak_rss_mb": rss_mb()}
    marker.write_text(json.dumps(info))
    return info


def search_library(data: Path, n: int) -> dict:
    """Run in a fresh process: open, first search, then every filter (see module docstring)."""
    truth = np.load(data / f"truth-{n}.npz")
    queries = truth["queries"]
    start = time.perf_counter()
    store = EmbeddedStore(data / "lookalike.db", data / "index")
    store.search("scale", "visual", queries[0], K)
    open_s = time.perf_counter() - start
    stats = store.index_stats("scale")["visual"]
    out: dict = {"open_seconds": open_s, "ann_loaded": stats["ann_loaded"], "search": {}}
    for name, bound in FILTERS.items():
        node = None if bound is None else parse_filter({"field": "bucket", "op": "<", "value": bound})
        times, recalls = [], []
        for qi, q in enumerate(queries):
            t0 = time.perf_counter()
            hits = store.search("scale", "visual", q, K, node)
            times.append((time.perf_counter() - t0) * 1000)
            got = {int(h.image.image_id) for h in hits}
            recalls.append(len(got & set(truth[f"ids_{name}"][qi].tolist())) / K)
        out["search"][name] = {
            "p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "recall10": float(np.mean(recalls)),
        }
    out["peak_rss_mb"] = rss_mb()
    out["rss_at_end_mb"] = rss_split_mb()
    store.close()
    return out


# ----------------------------------------------------------------------------------- creators


def build_creators(data: Path, posts: int) -> dict:
    from lookalike.evaluation.synthetic_creators import SyntheticSpace, write_synthetic_platform
    from lookalike.service.creators.dictionaries import Locations
    from lookalike.store.creator_store import CreatorStore

    marker = data / f"creators-{posts}.json"
    if marker.exists():
        return json.loads(marker.read_text())
    start = time.perf_counter()
    store = CreatorStore(data / "creators.db")
    write_synthetic_platform(store, SyntheticSpace.make(27, DIM, SEED), posts // POSTS_PER_CREATOR,
                             POSTS_PER_CREATOR, seed=SEED + 1, platform="instagram", locations=Locations.load())
    store.close()
    info = {"posts": posts, "import_seconds": time.perf_counter() - start}
    marker.write_text(json.dumps(info))
    return info


def search_creators(data: Path, posts: int) -> dict:
    """Run in a fresh process: creator search with the candidate stage vs the exact scan."""
    from PIL import Image

    from lookalike.evaluation.creator_demo import REFERENCE_DATE
    from lookalike.evaluation.synthetic_creators import SyntheticSpace
    from lookalike.models.efficientnet import _IMAGE_CALIBRATION
    from lookalike.service.creators.dictionaries import Locations
    from lookalike.service.creators.filters import parse_filters
    from lookalike.service.creators.search import CreatorSearchService
    from lookalike.store.creator_store import CreatorStore
    from lookalike.store.post_index import AnnPostIndex

    rng = np.random.default_rng(SEED + 2)
    queries = SyntheticSpace.make(27, DIM, SEED).draw(rng, rng.integers(0, 27, CREATOR_QUERIES))
    store = CreatorStore(data / "creators.db")
    locations = Locations.load()
    image = Image.new("RGB", (1, 1))
    current = {"q": queries[0]}
    kw = {"expand_locations": locations.expand, "clock": lambda: REFERENCE_DATE.timestamp(),
          "calibration": _IMAGE_CALIBRATION["efficientnet-lite0"]}
    post_index = AnnPostIndex(background=False)
    ann = CreatorSearchService(store, lambda _: current["q"], post_index=post_index, **kw)
    exact = CreatorSearchService(store, lambda _: current["q"], **kw)
    start = time.perf_counter()
    snapshot = store.snapshot("instagram")
    snapshot_s = time.perf_counter() - start
    post_index.warm(snapshot)
    index_s = time.perf_counter() - start - snapshot_s
    plain = parse_filters("instagram", None)
    profile = parse_filters("instagram", {"followersCount": {"min": 30_000}, "gender": "FEMALE"})
    out: dict = {"posts": len(snapshot.posts), "snapshot_seconds": snapshot_s, "index_build_seconds": index_s}
    for name, query in (("plain", plain), ("filtered", profile)):
        times, exact_times, agree = [], [], []
        for q in queries:
            current["q"] = q
            t0 = time.perf_counter()
            got = ann.search("instagram", image, query, 0, 6)
            times.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            want = exact.search("instagram", image, query, 0, 6)
            exact_times.append((time.perf_counter() - t0) * 1000)
            w = {p.creator.user_id for p in want.profiles}
            if w:
                agree.append(len(w & {p.creator.user_id for p in got.profiles}) / len(w))
        out[name] = {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
                     "exact_p50_ms": float(np.percentile(exact_times, 50)),
                     "agreement": float(np.mean(agree)) if agree else 1.0}
    out["peak_rss_mb"] = rss_mb()
    out["rss_at_end_mb"] = rss_split_mb()
    store.close()
    return out


# ------------------------------------------------------------------------------------- driver


def _child(phase: str, data: Path, size: int) -> dict:
    """Run a phase in a fresh Python process (cold open, its own peak RSS)."""
    out = data / f"{phase}.out.json"
    cmd = [sys.executable, __file__, "--phase", phase, "--data-dir", str(data), "--n", str(size), "--json", str(out)]
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def _images(data: Path, n: int) -> dict:
    """Build (or reuse) the library, search it from a fresh process, print and return the figures."""
    built = build_library(data, n)
    print(f"library: {n} x {DIM} built in {built['build_seconds']:.0f} s "
          f"(import {built['import_seconds']:.0f} s), builder peak RSS {built['build_peak_rss_mb']:.0f} MB")
    EmbeddedStore(data / "lookalike.db", data / "index").close()  # schema upgrades of an older data dir: untimed
    searched = _child("search", data, n)
    index_mb = disk_mb(data / "index")
    db_mb = (data / "lookalike.db").stat().st_size / 2**20
    result = {
        "build_seconds": built["build_seconds"], "open_seconds": searched["open_seconds"],
        "peak_rss_mb": searched["peak_rss_mb"], "disk_mb": index_mb + db_mb,
        "disk_bytes_per_image": {"index": index_mb * 2**20 / n, "sqlite": db_mb * 2**20 / n},
        "ann_loaded_on_open": searched["ann_loaded"], "search": searched["search"],
        "rss_at_end_mb": searched["rss_at_end_mb"],
    }
    print(f"open + first search: {result['open_seconds']:.2f} s (IVF loaded: {searched['ann_loaded']}), "
          f"searching process peak RSS {result['peak_rss_mb']:.0f} MB, disk {result['disk_mb']:.0f} MB "
          f"(index {result['disk_bytes_per_image']['index']:.0f} + SQLite "
          f"{result['disk_bytes_per_image']['sqlite']:.0f} bytes per image)")
    print("| filter | p50 ms | p95 ms | recall@10 |\n|---|---|---|---|")
    for name, row in result["search"].items():
        print(f"| {name} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['recall10']:.3f} |")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="images in the library (0: creators only)")
    parser.add_argument("--posts", type=int, default=100_000, help="creator posts (20 per creator)")
    parser.add_argument("--data-dir", type=Path, help="reuse the data built here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--phase", choices=["search", "creators"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:  # a child process
        result = (search_library if args.phase == "search" else search_creators)(args.data_dir, args.n)
        args.json.write_text(json.dumps(result))
        return 0

    data = args.data_dir or Path(tempfile.mkdtemp(prefix="lookalike-scale-"))
    data.mkdir(parents=True, exist_ok=True)
    try:
        result: dict = {"n": args.n, "dim": DIM}
        if args.n:  # --n 0: creators only
            result.update(_images(data, args.n))
        if args.posts:
            made = build_creators(data, args.posts)
            found = _child("creators", data, args.posts)
            result["creators"] = {
                "posts": found["posts"], "p50_ms": found["plain"]["p50_ms"], "p95_ms": found["plain"]["p95_ms"],
                "filtered_p50_ms": found["filtered"]["p50_ms"],
                "top6_agreement_vs_exact": (found["plain"]["agreement"] + found["filtered"]["agreement"]) / 2,
                "exact_p50_ms": found["plain"]["exact_p50_ms"], "exact_filtered_p50_ms": found["filtered"]["exact_p50_ms"],
                "agreement_plain": found["plain"]["agreement"], "agreement_filtered": found["filtered"]["agreement"],
                "import_seconds": made["import_seconds"], "snapshot_seconds": found["snapshot_seconds"],
                "index_build_seconds": found["index_build_seconds"], "peak_rss_mb": found["peak_rss_mb"],
            }
            c = result["creators"]
            print(f"creators: {c['posts']} posts (import {c['import_seconds']:.0f} s, snapshot {c['snapshot_seconds']:.1f} s,"
                  f" post index {c['index_build_seconds']:.0f} s, peak RSS {c['peak_rss_mb']:.0f} MB)")
            print(f"creator search p50 / p95: {c['p50_ms']:.1f} / {c['p95_ms']:.1f} ms (exact scan {c['exact_p50_ms']:.1f});"
                  f" with a profile filter p50 {c['filtered_p50_ms']:.1f} ms (exact {c['exact_filtered_p50_ms']:.1f});"
                  f" top-6 agreement with the exact scan {c['top6_agreement_vs_exact']:.3f}")
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
    finally:
        if args.data_dir is None:
            shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())
