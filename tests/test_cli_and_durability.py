"""The CLI end to end, resumable imports, and durability across restarts and kills."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import PHOTOS, b64, encode, photo
from lookalike.cli import app
from lookalike.config import Settings
from lookalike.runtime import Runtime


@pytest.fixture
def env(tmp_path, model_cache):
    return {"LOOKALIKE_DATA_DIR": str(tmp_path / "data"), "LOOKALIKE_MODEL_CACHE": str(model_cache)}


@pytest.fixture
def photo_dir(tmp_path):
    root = tmp_path / "photos"
    (root / "space").mkdir(parents=True)
    for name in PHOTOS:
        sub = root / "space" if name in ("astronaut", "rocket", "hubble_deep_field") else root
        (sub / f"{name}.jpg").write_bytes(encode(photo(name)))
    return root


def run(env, *args):
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return result


def test_library_commands(env):
    assert run(env, "library", "create", "shop", "--mode", "item_search").exit_code == 0
    out = run(env, "library", "list")
    assert "shop" in out.output and "item_search" in out.output
    assert run(env, "library", "create", "shop").exit_code == 2
    assert run(env, "library", "delete", "shop", "--yes").exit_code == 0
    assert "shop" not in run(env, "library", "list").output


def test_import_dir_is_resumable_and_search_works(env, photo_dir):
    run(env, "library", "create", "lib")
    first = run(env, "import", "lib", str(photo_dir))
    assert first.exit_code == 0 and f"added {len(PHOTOS)}, already stored 0" in first.output
    again = run(env, "import", "lib", str(photo_dir))
    assert f"added 0, already stored {len(PHOTOS)}" in again.output
    query = photo_dir / "coffee.jpg"
    out = run(env, "search", "lib", "--image", str(query), "--top-k", "2")
    hits = json.loads(out.stdout)
    assert hits[0]["image_id"] == "coffee.jpg" and len(hits) == 2
    out = run(env, "search", "lib", "--text", "a cat", "--filter", '{"field": "folder", "op": "!=", "value": "space"}')
    hits = json.loads(out.stdout)
    assert hits[0]["image_id"] == "chelsea.jpg"
    assert all(h["tags"].get("folder") != "space" for h in hits)
    bad = run(env, "search", "lib", "--text", "x", "--filter", '{"field": "a", "op": "~", "value": 1}')
    assert bad.exit_code == 2 and "tag_filter.op" in bad.output


def test_import_jsonl_and_csv_report_bad_lines(env, photo_dir, tmp_path):
    run(env, "library", "create", "lib")
    lines = [
        json.dumps({"image_id": "a", "path": str(photo_dir / "coffee.jpg"), "tags": {"k": 1}}),
        "{broken json",
        json.dumps({"image_id": "b", "image_base64": b64(encode(photo("rocket"))), "image_uri": "http://x/b.jpg"}),
        json.dumps({"image_id": "c", "image_base64": "not-base64!"}),
        json.dumps({"image_id": "d", "colour": "red"}),
    ]
    src = tmp_path / "items.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = run(env, "import", "lib", str(src))
    assert "added 2" in out.output and "failed 3" in out.output
    assert "line 2" in out.output and "line 4" in out.output and "line 5" in out.output

    csv_path = photo_dir / "labels.csv"
    csv_path.write_text("path,label,split\nchelsea.jpg,cat,db\nmissing.jpg,x,db\n")
    out = run(env, "import", "lib", str(csv_path))
    assert "added 1" in out.output and "line 3" in out.output
    rt = Runtime.open(Settings(data_dir=Path(env["LOOKALIKE_DATA_DIR"]), models_dir=Path(env["LOOKALIKE_MODEL_CACHE"])))
    try:
        assert rt.libraries.get_image("lib", "chelsea.jpg").tags == {"label": "cat", "split": "db"}
        assert rt.libraries.get_image("lib", "b").image_uri == "http://x/b.jpg"
    finally:
        rt.close()


def test_restart_reopens_everything(settings, models):
    rt = Runtime.open(settings, models=models)
    rt.libraries.create("lib")
    from lookalike.service.importer import ImportItem

    rt.importer.import_items("lib", [ImportItem(image_id=n, image_base64=b64(encode(photo(n))), tags={"n": n}) for n in PHOTOS])
    rt.libraries.delete_image("lib", "retina")
    before = [(r.image_id, r.score) for r in rt.search.by_image("lib", encode(photo("coffee")))]
    rt.close()
    rt = Runtime.open(settings, models=models)
    try:
        after = [(r.image_id, r.score) for r in rt.search.by_image("lib", encode(photo("coffee")))]
        assert after == before and len(after) == len(PHOTOS) - 1
    finally:
        rt.close()


def test_kill_during_import_loses_nothing_acknowledged(env, tmp_path):
    """SIGKILL a CLI import mid-way: every stored image is whole, and a re-run completes it."""
    from PIL import Image

    src = tmp_path / "many"
    src.mkdir()
    base = photo("astronaut").resize((160, 160))
    n = 400
    for i in range(n):
        Image.fromarray(np.roll(np.asarray(base), i, axis=1)).save(src / f"{i:04d}.jpg")
    full_env = {**os.environ, **env}
    subprocess.run([sys.executable, "-m", "lookalike", "library", "create", "lib"], env=full_env, check=True)
    proc = subprocess.Popen([sys.executable, "-m", "lookalike", "import", "lib", str(src)], env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "data" / "lookalike.db"
    deadline = time.time() + 240
    stored = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.exists():
            with sqlite3.connect(db, timeout=30) as conn:
                stored = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            if stored >= 64:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < stored < n, "the import should have been killed part-way"

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT i.image_id, length(i.visual), length(i.semantic), length(b.data) FROM images i "
            "LEFT JOIN image_bytes b ON b.row_id = i.row_id").fetchall()
    assert rows and all(v == 1280 * 4 and s == 768 * 4 and b and b > 0 for _, v, s, b in rows)

    done = subprocess.run([sys.executable, "-m", "lookalike", "import", "lib", str(src)], env=full_env,
                          capture_output=True, text=True, check=True)
    assert f"already stored {len(rows)}" in done.stdout
    with sqlite3.connect(db) as conn:
        ids = [r[0] for r in conn.execute("SELECT image_id FROM images")]
    assert len(ids) == n == len(set(ids))
