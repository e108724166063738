"""What the library-adaptive ranking (``service/adaptation.py``) costs, and how its scores read.

Builds a temporary library from a labelled photo set (``images/`` + ``labels.csv``, every
photo), then reports:
- the fit: seconds to sample the library and fit (the import's end pays it once per 25 %
  growth), and the saved size;
- search latency, top_k 10, plain cosine vs adapted, alternating query by query in one
  process (so machine load hits both alike): ``by_image_id`` (search only) and ``by_image``
  (decode + embed + search), p50 / p95 ms;
- near-duplicate scores, as ``calibrate_scores.py`` measures the 0.9 knot: an augmented copy
  (crop <= 10 %, resize 50-100 %, colour +-10 %, JPEG q40) of ``--copies`` photos searched
  against the library holding the original; the share of copies whose original scores > 0.9
  and the 5th percentile of that score, plain and adapted.

Usage:
    python benchmarks/adaptation.py ../shared/datasets/oxford17 [--mode item_search] [--queries 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibrate_scores import augment, load  # noqa: E402

from lookalike.config import Settings  # noqa: E402
from lookalike.evaluation.datasets import load_labels  # noqa: E402
from lookalike.runtime import Runtime  # noqa: E402
from lookalike.service.adaptation import fit, to_bytes  # noqa: E402
from lookalike.service.adapter import KIND_BY_MODE, SAMPLE_ROWS  # noqa: E402
from lookalike.service.importer import ImportItem  # noqa: E402

LIBRARY = "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--mode", default="general_search")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--copies", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rows = load_labels(args.dataset)
    settings = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="lookalike-adapt-") as tmp:
        rt = Runtime.open(Settings(data_dir=Path(tmp), models_dir=settings.model_cache_dir))
        try:
            rt.libraries.create(LIBRARY, args.mode, args.model)
            items = [ImportItem(image_id=str(i), path=str(r.path)) for i, r in enumerate(rows)]
            rt.importer.import_items(LIBRARY, items, atomic=False, local_files=True)
            adapter = rt.adapter
            assert adapter is not None
            record = rt.libraries.get(LIBRARY)
            adapted = adapter.current  # the fit the import's end made
            if adapted(record) is None:
                sys.exit("no adaptation fitted (library below the threshold, or a store that cannot sample)")
            started = time.perf_counter()  # what that fit cost: sample + fit
            sample = rt.store.sample_vectors(LIBRARY, "visual", SAMPLE_ROWS)
            fitted = fit(sample, KIND_BY_MODE[args.mode], record.image_count or 0)
            fit_s = time.perf_counter() - started
            print(f"{args.dataset.name} ({args.mode}, {len(rows)} images): {fitted.kind} fit {fit_s:.2f} s "
                  f"(sample of {len(sample)}), saved {len(to_bytes(fitted)) / 1e6:.2f} MB")

            def plain(library):
                return None

            step = max(1, len(rows) // args.queries)
            picks = list(range(0, len(rows), step))[: args.queries]
            times: dict[str, list[float]] = {k: [] for k in ("id plain", "id adapted", "image plain", "image adapted")}
            for i in picks:
                data = rows[i].path.read_bytes()
                for name, current in (("plain", plain), ("adapted", adapted)):
                    adapter.current = current  # type: ignore[method-assign]
                    t = time.perf_counter()
                    rt.search.by_image_id(LIBRARY, str(i), top_k=10)
                    times[f"id {name}"].append((time.perf_counter() - t) * 1000)
                    t = time.perf_counter()
                    rt.search.by_image(LIBRARY, data, top_k=10)
                    times[f"image {name}"].append((time.perf_counter() - t) * 1000)
            for name, ms in times.items():
                print(f"  {name:14s} p50 {np.percentile(ms, 50):6.2f} ms  p95 {np.percentile(ms, 95):6.2f} ms")

            rng = np.random.default_rng(args.seed)
            chosen = rng.choice(len(rows), size=min(args.copies, len(rows)), replace=False)
            for name, current in (("plain", plain), ("adapted", adapted)):
                adapter.current = current  # type: ignore[method-assign]
                rng = np.random.default_rng(args.seed)
                scores = []
                for i in chosen:
                    copy = augment(load(rows[int(i)].path), rng)
                    buf = _jpeg(copy)
                    results = rt.search.by_image(LIBRARY, buf, top_k=10)
                    own = [r.score for r in results if r.image_id == str(int(i))]
                    scores.append(own[0] if own else 0.0)
                s = np.asarray(scores)
                print(f"  near-duplicates {name:8s} original > 0.9: {np.mean(s > 0.9):6.1%}  "
                      f"5th percentile score {np.percentile(s, 5):.3f}  median {np.median(s):.3f}")
        finally:
            rt.close()


def _jpeg(image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


if __name__ == "__main__":
    main()
