"""How well a cosine threshold separates re-encoded copies of a photo from distinct photos.

For each set, ``--sample`` photos get two near-duplicates each: a *re-encode* (resized to
60-100 %, saved as JPEG at quality 60-90) and an *edit* (the augmentation of
``calibrate_scores.py``: up to 10 % crop, 50-100 % resize, +-10 % colour, JPEG quality 40);
then, per threshold, it counts:
    copies kept apart   share of (photo, its copy) pairs whose cosine is below the threshold
                        (a collapse would miss them);
    distinct merged     share of sampled photos whose most similar *other* photo of the set
                        reaches the threshold (a collapse would hide a distinct photo).
Embeddings are the library's ``visual`` vectors (efficientnet-lite0 unless ``--model``).
A last column applies the shipped rule (``lookalike.service.duplicates``): cosine at least
``DUPLICATE_COSINE`` *and* 16 x 16 thumbnails at most ``MAX_PIXEL_DIFF`` apart; a second line
gives the thumbnail differences themselves.

Usage:
    python benchmarks/duplicates.py ../shared/datasets [--sets corel1k,oxford17,sop_subset,fashion]
        [--sample 200] [--model efficientnet-lite0]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from calibrate_scores import augment, load  # noqa: E402

THRESHOLDS = (0.85, 0.88, 0.9, 0.92, 0.94, 0.96)


def reencode(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The same photo resized to 60-100 % and saved again as JPEG at quality 60-90."""
    scale = rng.uniform(0.6, 1.0)
    im = im.resize((max(32, round(im.width * scale)), max(32, round(im.height * scale))))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(rng.integers(60, 91)))
    return load(buf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("datasets", type=Path)
    ap.add_argument("--sets", default="corel1k,oxford17,sop_subset,fashion")
    ap.add_argument("--sample", type=int, default=200)
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from lookalike.config import Settings
    from lookalike.models import load_model
    from lookalike.service.duplicates import DUPLICATE_COSINE, MAX_PIXEL_DIFF, same_pixels, thumbnail

    model = load_model(args.model, Settings.from_env().model_cache_dir)
    print("set      copy         n  " + "  ".join(f"t={t:.2f} apart/merged" for t in THRESHOLDS)
          + f"  shipped: cos>={DUPLICATE_COSINE} & pixels<={MAX_PIXEL_DIFF}")
    for name in args.sets.split(","):
        paths = sorted((args.datasets / name / "images").glob("*.jpg"))
        rng = np.random.default_rng(args.seed)
        images = [load(p) for p in paths]
        vis = np.vstack([model.embed_images(images[i : i + 64]).visual for i in range(0, len(images), 64)])
        pick = rng.choice(len(paths), size=min(args.sample, len(paths)), replace=False)
        sims = vis[pick] @ vis.T
        sims[np.arange(len(pick)), pick] = -1.0  # not itself
        nearest = sims.max(axis=1)
        neighbour = sims.argmax(axis=1)
        thumbs = {i: thumbnail(images[i]) for i in pick}
        near_alike = np.array([same_pixels(thumbs[i], thumbnail(images[j])) for i, j in zip(pick, neighbour)])
        merged = np.mean((nearest >= DUPLICATE_COSINE) & near_alike)
        for kind, make in (("re-encode", reencode), ("edit", augment)):
            made = [make(images[i], rng) for i in pick]
            copies = model.embed_images(made).visual
            dup = np.einsum("nd,nd->n", vis[pick], copies)
            diff = np.array([np.abs(thumbs[i] - thumbnail(m)).mean() for i, m in zip(pick, made)])
            apart = np.mean((dup < DUPLICATE_COSINE) | (diff > MAX_PIXEL_DIFF))
            cells = "  ".join(f"      {np.mean(dup < t):5.1%} / {np.mean(nearest >= t):5.1%}" for t in THRESHOLDS)
            cells += f"        {apart:5.1%} / {merged:5.1%}"
            print(f"{name[:8]:8s} {kind:9s} {len(pick):4d}  {cells}", flush=True)
            print(f"{'':23s}copy cos p1 {np.percentile(dup, 1):.3f} p5 {np.percentile(dup, 5):.3f} "
                  f"median {np.median(dup):.3f}; nearest distinct p50 {np.median(nearest):.3f} "
                  f"p95 {np.percentile(nearest, 95):.3f} p99 {np.percentile(nearest, 99):.3f}; "
                  f"copy thumbnail diff median {np.median(diff):.1f} max {diff.max():.1f}")


if __name__ == "__main__":
    main()
