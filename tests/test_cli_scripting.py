"""The CLI as scripts use it (issue 11): version, exit codes, stdout that holds only the secret,
clear hints, confirmation, progress, and commands that work on a fresh clone without ../shared."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import b64, encode, photo
from lookalike import __version__
from lookalike.cli import app


@pytest.fixture
def env(tmp_path, model_cache):
    return {"LOOKALIKE_DATA_DIR": str(tmp_path / "data"), "LOOKALIKE_MODEL_CACHE": str(model_cache)}


def run(env, *args, stdin: str | None = None):
    return CliRunner().invoke(app, list(args), env=env, input=stdin, catch_exceptions=False)


def test_version():
    result = run({}, "--version")
    assert result.exit_code == 0 and result.stdout == f"lookalike {__version__}\n"
    # the installed entry point says the same
    out = subprocess.run([sys.executable, "-m", "lookalike", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"lookalike {__version__}"


def test_import_exits_non_zero_and_counts_failures(env, tmp_path):
    assert run(env, "library", "create", "lib").exit_code == 0
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"image_id": "coffee", "image_base64": b64(encode(photo("coffee")))}) + "\n")
    ok = run(env, "import", "lib", str(good))
    assert ok.exit_code == 0 and "added 1, already stored 0, failed 0" in ok.stdout
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join([
        json.dumps({"image_id": "rocket", "image_base64": b64(encode(photo("rocket")))}),
        "{broken json",
        json.dumps({"image_id": "bad", "image_base64": "not-base64!"}),
        json.dumps({"image_id": "odd", "colour": "red"}),
    ]) + "\n")
    result = run(env, "import", "lib", str(mixed))
    assert result.exit_code == 1
    assert "added 1, already stored 0, failed 3" in result.stdout
    assert "error: 3 of 4 items failed" in result.stderr
    assert "line 2" in result.stderr and "line 3" in result.stderr and "line 4" in result.stderr


def test_import_into_a_missing_library_says_how_to_create_it(env, tmp_path):
    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps({"image_id": "x", "image_base64": b64(encode(photo("coffee")))}) + "\n")
    result = run(env, "import", "shop", str(src))
    assert result.exit_code == 2
    assert "create it with: lookalike library create shop" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, however long


def test_secrets_alone_on_stdout(env):
    token = run(env, "tokens", "create", "--credits", "5", "--label", "ci")
    assert token.exit_code == 0
    assert re.fullmatch(r"\S+\n", token.stdout)  # TOKEN=$(lookalike tokens create ...) captures exactly it
    assert "balance 5 credits, label ci" in token.stderr
    assert run(env, "library", "create", "shop").exit_code == 0
    key = run(env, "keys", "create", "--section", "Products=shop")
    assert key.exit_code == 0 and re.fullmatch(r"key_[A-Za-z0-9_-]{16}\n", key.stdout)
    assert "Products = shop" in key.stderr


def test_the_token_works_when_captured_by_a_shell(tmp_path, model_cache):
    data = tmp_path / "data"
    script = (f'TOKEN=$("{sys.executable}" -m lookalike tokens create --credits 1 --data-dir "{data}" 2>/dev/null)'
              ' && printf "%s" "$TOKEN"')
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    from lookalike.config import Settings
    from lookalike.runtime import open_access

    access = open_access(Settings(data_dir=data))
    try:
        assert access.authenticate(f"Bearer {out}").credits_milli == 1000
    finally:
        access.store.close()


def test_library_delete_asks_unless_yes(env):
    assert run(env, "library", "create", "keep").exit_code == 0
    refused = run(env, "library", "delete", "keep", stdin="n\n")
    assert refused.exit_code == 1 and "Delete library 'keep' and its 0 images?" in refused.stderr
    assert "keep" in run(env, "library", "list").stdout
    no_answer = run(env, "library", "delete", "keep")  # no terminal to ask on: not deleted
    assert no_answer.exit_code == 1 and "keep" in run(env, "library", "list").stdout
    assert run(env, "library", "delete", "keep", stdin="y\n").exit_code == 0
    assert run(env, "library", "create", "gone").exit_code == 0
    assert run(env, "library", "delete", "gone", "--yes").exit_code == 0
    listing = run(env, "library", "list").stdout
    assert "keep" not in listing and "gone" not in listing
    assert run(env, "library", "delete", "nope", "--yes").exit_code == 2


def test_creators_demo_uses_packaged_photos_and_eval_says_which_set_to_pass_on_a_fresh_clone(env, tmp_path):
    fresh = {**env, "LOOKALIKE_DATASETS": str(tmp_path / "no-shared")}
    out = tmp_path / "demo.jsonl"
    demo = run(fresh, "creators", "demo", "--out", str(out), "--creators", "5", "--seed", "7")
    assert demo.exit_code == 0, demo.stderr
    assert "photos installed packages ship" in demo.stderr and "--images DIR" in demo.stderr
    creators = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(creators) == 5 and all(c["posts"] for c in creators)
    posts = [Path(p["image_path"]) if Path(p["image_path"]).is_absolute() else out.parent / p["image_path"]
             for c in creators for p in c["posts"]]
    assert all(p.is_file() for p in posts)  # real packaged photos, not placeholders
    assert "mvtb/" in (tmp_path / "demo.photos" / "labels.csv").read_text()
    multi = run(fresh, "eval", "multi-item", "--images", "2")
    assert multi.exit_code == 2 and len(multi.stderr.strip().splitlines()) == 1
    assert "lookalike eval multi-item ../shared/datasets/sop_subset" in multi.stderr


@pytest.fixture
def tiny_set(tmp_path) -> Path:
    """A labelled set of real photos: 3 labels, 3 photos each (crops of one scikit-image photo)."""
    root = tmp_path / "tiny"
    (root / "images").mkdir(parents=True)
    rows = ["path,label,split"]
    for label in ("chelsea", "coffee", "rocket"):
        image = photo(label)
        w, h = image.size
        for i, box in enumerate(((0, 0, w * 3 // 4, h * 3 // 4), (w // 4, 0, w, h * 3 // 4), (0, h // 4, w * 3 // 4, h))):
            (root / "images" / f"{label}{i}.jpg").write_bytes(encode(image.crop(box)))
            rows.append(f"images/{label}{i}.jpg,{label},")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_eval_images_shows_the_query_phase(env, tiny_set):
    result = run(env, "eval", "images", str(tiny_set), "--no-text")
    assert result.exit_code == 0, result.output
    assert "image queries" in result.stderr and "9/9" in result.stderr  # the query phase's own bar, finished
    assert "timed queries" in result.stderr
    assert "image_map100" in result.stdout


def test_first_run_export_says_what_it_does(tmp_path, capsys):
    """The CLI's handler turns the export's own log records into progress lines (a tiny real export)."""
    import torch
    from rich.console import Console

    from lookalike.cli.common import ExportProgress, show_export_progress
    from lookalike.models.onnx_cache import ExportSpec, ensure_onnx

    assert show_export_progress() is show_export_progress()  # installed once per process
    lines: list[str] = []
    handler = ExportProgress(Console(file=_Lines(lines), width=200), tick_s=0.01)
    logger = logging.getLogger("lookalike.models.onnx_cache")
    logger.addHandler(handler)
    try:
        module = torch.nn.Linear(4, 2).eval()
        path = ensure_onnx(tmp_path / "tiny-model", lambda: ExportSpec(
            module=module, example_inputs=(torch.ones(1, 4),), input_names=["x"], output_names=["y"]))
    finally:
        logger.removeHandler(handler)
    assert path.is_file()
    text = "".join(lines)
    assert "first run: exporting tiny-model to ONNX, once (about a minute) ..." in text
    assert "still exporting tiny-model" in text  # the ticker ran while the export did
    assert re.search(r"exported tiny-model in \d+ s; later runs load it from the cache", text)


class _Lines:
    """A file-like sink for a rich Console."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def write(self, text: str) -> int:
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass
