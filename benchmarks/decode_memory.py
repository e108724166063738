"""Resident memory of a real server under concurrent huge-image queries (issue 10, finding 4).

Starts ``lookalike serve`` on a fresh data dir holding a small library, warms it with one
query, then sends ``--clients`` concurrent ``by-image`` queries of one ``--side`` x ``--side``
PNG (a few hundred KB that decode to ~150 MB of RGB each) and samples the server's resident
memory (``/proc/PID/status``: VmRSS, and VmHWM, the kernel's peak) every 20 ms. Prints the
baseline, the peak, the memory after the burst, and the statuses (200, or 503 BUSY / 429 with
``Retry-After``). Target: peak under 1.5 GB, every answer 200 or 503/429.

    python benchmarks/decode_memory.py [--clients 16] [--side 7071] [--port 8765]

Linux only (reads /proc). The model cache is ``$LOOKALIKE_MODEL_CACHE`` or the data dir's.
"""

from __future__ import annotations

import argparse
import base64
import collections
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

API = "/api/v1/operators/image-search"


def big_png(side: int) -> bytes:
    """A side x side RGB PNG of stripes and discs: compresses to a few hundred KB, decodes to side^2 x 3 bytes."""
    image = Image.new("RGB", (side, side), (240, 236, 228))
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(7)
    for _ in range(60):
        x, y, r = (int(v) for v in rng.integers(0, side, 3) // (1, 1, 6))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    for x in range(0, side, 97):
        draw.line((x, 0, x, side), fill=(30, 30, 30), width=3)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def small_jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = (rng.random((64, 64, 3)) * 255).astype(np.uint8).repeat(4, 0).repeat(4, 1)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def post(url: str, body: dict, timeout: float = 300) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), dict(e.headers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--side", type=int, default=7071)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="lookalike-decode-"))
    env = {**os.environ, "LOOKALIKE_DATA_DIR": str(data_dir)}
    cli = [sys.executable, "-c", "from lookalike.cli import app; app()"]
    server = None
    try:
        subprocess.run([*cli, "library", "create", "lib"], env=env, check=True, capture_output=True)
        source = data_dir / "photos"
        source.mkdir()
        for i in range(4):
            (source / f"p{i}.jpg").write_bytes(small_jpeg(i))
        subprocess.run([*cli, "import", "lib", str(source)], env=env, check=True, capture_output=True)
        png = big_png(args.side)
        print(f"query: {args.side}x{args.side} PNG, {len(png) / 1024:.0f} KB, "
              f"{args.side * args.side * 3 / 2**20:.0f} MB as RGB; {args.clients} concurrent clients")
        server = subprocess.Popen([*cli, "serve", "--port", str(args.port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{args.port}{API}/search/by-image"
        for _ in range(600):
            try:
                if post(url, {"library_name": "lib", "image_base64": base64.b64encode(small_jpeg(9)).decode()})[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not answer")
        baseline = status_kb(server.pid, "VmRSS")

        peak, done = [baseline], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak.append(status_kb(server.pid, "VmRSS"))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        body = {"library_name": "lib", "image_base64": base64.b64encode(png).decode(), "top_k": 3}
        answers: list[tuple[int, dict, dict]] = []
        started = time.perf_counter()
        clients = [threading.Thread(target=lambda: answers.append(post(url, body))) for _ in range(args.clients)]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        elapsed = time.perf_counter() - started
        time.sleep(1.0)
        done.set()
        sampler.join()
        after = status_kb(server.pid, "VmRSS")
        hwm = status_kb(server.pid, "VmHWM")
        statuses = collections.Counter(a[0] for a in answers)
        print(f"server RSS: baseline {baseline / 2**20:.2f} GB, peak sampled {max(peak) / 2**20:.2f} GB, "
              f"peak (VmHWM) {hwm / 2**20:.2f} GB, 1 s after {after / 2**20:.2f} GB")
        print(f"answers in {elapsed:.1f} s: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
        for status, payload, headers in answers:
            if status != 200:
                print(f"  e.g. {status} {payload.get('status')} Retry-After={headers.get('retry-after')}: "
                      f"{payload.get('message')}")
                break
        ok = hwm < 1.5 * 2**20 and set(statuses) <= {200, 429, 503}
        print("target (peak < 1.5 GB, every answer 200 / 503 / 429):", "met" if ok else "NOT met")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
