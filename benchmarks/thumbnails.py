"""What the web page's result grid costs: thumbnails against originals shipped as base64.

On a library of ``--n`` phone-sized photos (real photos from installed packages, scaled to
4032 x 3024 with a little sensor-like noise, JPEG quality 95: about 3-4 MB each), prints
1. the JSON size of a 4-result ``search/by-image`` with and without ``return_image_base64``;
2. the thumbnail route (``size=320``, JPEG): bytes per thumbnail, and latency through the ASGI
   app, cold (decode + resize + encode), cached (LRU hit) and revalidated (``If-None-Match``, 304).

Run: ``python benchmarks/thumbnails.py [--n 8]`` (ONNX exports: ``$LOOKALIKE_MODEL_CACHE``, else the data dir's).
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

try:
    import lookalike  # noqa: F401
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fastapi.testclient import TestClient  # noqa: E402

from lookalike.api import create_app  # noqa: E402
from lookalike.config import Settings  # noqa: E402
from lookalike.demo import demo_photos  # noqa: E402
from lookalike.runtime import Runtime  # noqa: E402

API = "/api/v1/operators/image-search"
PHONE = (4032, 3024)


def phone_photo(path: Path, seed: int) -> bytes:
    """A real photo at a phone camera's size: upscaled, plus Gaussian noise (sigma 4) so the JPEG
    carries detail as a camera's does; quality 95."""
    with Image.open(path) as src:
        picture = src.convert("RGB").resize(PHONE, Image.Resampling.BICUBIC)
    noise = np.random.default_rng(seed).normal(0, 4, (PHONE[1], PHONE[0], 3))
    pixels = np.clip(np.asarray(picture, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _ms(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8, help="photos in the library")
    args = parser.parse_args()
    photos = [p for p, _ in demo_photos() if p.suffix.lower() in (".jpg", ".png")][: args.n]
    originals = [phone_photo(p, i) for i, p in enumerate(photos)]
    print(f"library: {len(originals)} photos {PHONE[0]}x{PHONE[1]}, "
          f"mean {statistics.mean(map(len, originals)) / 1e6:.2f} MB each")
    with tempfile.TemporaryDirectory() as tmp:
        # the ONNX exports of the usual data dir (or $LOOKALIKE_MODEL_CACHE), not a fresh export per run
        runtime = Runtime.open(Settings(data_dir=Path(tmp), models_dir=Settings.from_env().model_cache_dir))
        with TestClient(create_app(runtime)) as client:
            client.post(f"{API}/libraries", json={"library_name": "phone"})
            images = [{"image_id": f"p{i}.jpg", "image_base64": base64.b64encode(b).decode()} for i, b in enumerate(originals)]
            assert client.post(f"{API}/libraries/phone/images", json={"images": images}).status_code == 201
            # the query as the page sends it: downscaled to 1600 px, JPEG 90
            small = Image.open(io.BytesIO(originals[0]))
            small.thumbnail((1600, 1600))
            buf = io.BytesIO()
            small.save(buf, format="JPEG", quality=90)
            query = base64.b64encode(buf.getvalue()).decode()
            sizes = {}
            for with_bytes in (True, False):
                r = client.post(f"{API}/search/by-image", json={
                    "library_name": "phone", "image_base64": query, "top_k": 4, "return_image_base64": with_bytes})
                assert r.status_code == 200, r.text
                sizes[with_bytes] = len(r.content)
            print(f"search/by-image, 4 results: {sizes[True] / 1e6:.1f} MB of JSON with return_image_base64, "
                  f"{sizes[False] / 1e3:.1f} KB without")
            ids = [i["image_id"] for i in images]
            url = f"{API}/libraries/phone/images/{{}}/thumbnail?size=320"
            cold = [_ms(lambda i=i: client.get(url.format(i)), 1)[0] for i in ids]
            thumbs = [client.get(url.format(i)) for i in ids]
            warm = _ms(lambda: [client.get(url.format(i)) for i in ids], 5)
            etag = {i: t.headers["etag"] for i, t in zip(ids, thumbs)}
            revalidated = _ms(lambda: [client.get(url.format(i), headers={"If-None-Match": etag[i]}) for i in ids], 5)
            per = len(ids)
            print(f"thumbnail size=320: {statistics.mean(len(t.content) for t in thumbs) / 1e3:.1f} KB each; "
                  f"cold p50 {statistics.median(cold):.0f} ms, cached {statistics.median(warm) / per:.1f} ms, "
                  f"304 revalidation {statistics.median(revalidated) / per:.1f} ms per thumbnail")
            print(f"a 4-result grid: {sizes[False] / 1e3 + 4 * statistics.mean(len(t.content) for t in thumbs) / 1e3:.0f} KB "
                  f"(JSON + 4 thumbnails) instead of {sizes[True] / 1e6:.1f} MB")
        runtime.close()


if __name__ == "__main__":
    main()
