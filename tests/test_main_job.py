"""The README's main job end to end: build the demo library from packaged photos and serve it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from lookalike.demo import demo_photos

API = "/api/v1/operators/image-search"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_builds_a_library_and_serves_both_searches(tmp_path, model_cache):
    photos = demo_photos()
    assert len(photos) >= 40, "scikit-image and mvtb-data should ship dozens of real photos"
    port = _free_port()
    env = {**os.environ, "LOOKALIKE_DATA_DIR": str(tmp_path / "data"), "LOOKALIKE_MODEL_CACHE": str(model_cache)}
    proc = subprocess.Popen([sys.executable, "-m", "lookalike", "demo", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        printed = []  # what the demo prints before it serves: the library, then the admin token
        while not printed or not printed[-1].startswith("serving on"):
            line = proc.stdout.readline()
            assert line, "".join(printed)
            printed.append(line.strip())
        token = next(line for line in printed if line.startswith("lka_"))
        deadline = time.time() + 300
        while time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        library = httpx.get(f"{base}{API}/libraries/demo").json()["data"]
        assert library["image_count"] == len(photos)

        r = httpx.post(f"{base}{API}/search/by-text", json={"library_name": "demo", "query_text": "a cat", "top_k": 3})
        assert r.status_code == 200
        assert r.json()["data"]["results"][0]["image_id"] == "skimage/chelsea.png"

        import base64

        coffee = next(p for p, _ in photos if p.name == "coffee.png")
        body = {"library_name": "demo", "image_base64": base64.b64encode(coffee.read_bytes()).decode(), "top_k": 1}
        top = httpx.post(f"{base}{API}/search/by-image", json=body).json()["data"]["results"][0]
        assert top["image_id"] == "skimage/coffee.png" and top["score"] > 0.95
        assert httpx.get(f"{base}/docs").status_code == 200
        # writes need the admin token the demo printed
        gone = f"{base}{API}/libraries/demo/images/skimage/coffee.png"
        assert httpx.delete(gone).status_code == 401
        assert httpx.delete(gone, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
