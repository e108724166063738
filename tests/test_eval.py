"""``lookalike eval`` on labelled photo sets."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from conftest import encode, photo, shared_set
from lookalike.cli import app

KEYS = {"image_map100", "image_p10", "image_r10", "text_map100", "text_p10", "embed_images_per_s",
        "query_p50_ms", "query_p95_ms", "n_images"}


def _labelled_set(root, rows):
    (root / "images").mkdir(parents=True)
    lines = ["path,label,split"]
    for name, (image, label, split) in rows.items():
        (root / "images" / name).write_bytes(encode(image))
        lines.append(f"images/{name},{label},{split}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def _eval(tmp_path, model_cache, root, *extra):
    out = tmp_path / "figures.json"
    env = {"LOOKALIKE_DATA_DIR": str(tmp_path / "data"), "LOOKALIKE_MODEL_CACHE": str(model_cache)}
    result = CliRunner().invoke(app, ["eval", "images", str(root), "--json", str(out), *extra], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


def test_eval_leave_one_out_with_augmented_copies(tmp_path, model_cache):
    rows = {}
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        base = photo(name)
        w, h = base.size
        for i, box in enumerate([(0, 0, w, h), (w // 10, h // 10, w, h), (0, 0, w - w // 8, h - h // 8)]):
            rows[f"{name}_{i}.jpg"] = (base.crop(box).resize((224, 224)), name, "")
    figures, output = _eval(tmp_path, model_cache, _labelled_set(tmp_path / "set", rows))
    assert KEYS <= set(figures)
    assert figures["n_images"] == 12
    assert figures["image_map100"] > 0.9 and figures["image_r10"] > 0.9  # copies of one photo find each other
    assert 0.15 <= figures["image_p10"] <= 0.2  # only 2 relevant per query: P@10 is at most 0.2
    assert figures["text_map100"] is not None and figures["embed_images_per_s"] > 0
    assert figures["query_p50_ms"] <= figures["query_p95_ms"]
    assert "image_map100" in output


def test_eval_uses_query_db_splits_and_no_text(tmp_path, model_cache):
    rows = {"q.jpg": (photo("coffee").resize((200, 150)), "coffee", "query"),
            "d1.jpg": (photo("coffee"), "coffee", "db"), "d2.jpg": (photo("rocket"), "rocket", "db"),
            "d3.jpg": (photo("chelsea"), "cat", "db")}
    figures, _ = _eval(tmp_path, model_cache, _labelled_set(tmp_path / "set", rows), "--no-text")
    assert figures["n_images"] == 3 and figures["n_queries"] == 1
    assert figures["image_map100"] == 1.0 and figures["image_r10"] == 1.0
    assert figures["text_map100"] is None


def test_eval_on_real_labelled_subset(tmp_path, model_cache):
    src = shared_set("oxford17")
    rows = [line.split(",") for line in (src / "labels.csv").read_text().splitlines()[1:]]
    keep = [r for r in rows if r[1] in ("Sunflower", "Daffodil", "Tulip")][::4]
    root = tmp_path / "subset"
    (root / "images").mkdir(parents=True)
    for path, _, _ in keep:
        shutil.copy(src / path, root / path)
    (root / "labels.csv").write_text("path,label,split\n" + "\n".join(",".join(r) for r in keep) + "\n")
    figures, _ = _eval(tmp_path, model_cache, root)
    assert figures["n_images"] == len(keep) == 60
    assert figures["image_p10"] > 0.6  # 3 classes: chance is 1/3
    assert figures["text_p10"] is not None


def test_eval_text_queries_per_language(tmp_path, model_cache):
    rows = {f"{name}_{i}.jpg": (photo(name).rotate(5 * i), label, "")
            for name, label in (("chelsea", "cat"), ("coffee", "coffee")) for i in range(2)}
    rows["rocket.jpg"] = (photo("rocket"), "rocket", "")
    translations = tmp_path / "queries.csv"
    translations.write_text("label,en,de,zh\ncat,a cat,eine Katze,一只猫\ncoffee,a cup of coffee,eine Tasse Kaffee,一杯咖啡\n"
                            "rocket,a rocket,eine Rakete,火箭\n", encoding="utf-8")
    root = _labelled_set(tmp_path / "set", rows)
    figures, output = _eval(tmp_path, model_cache, root, "--languages", "de,zh", "--translations", str(translations))
    by_language = figures["text_by_language"]
    assert set(by_language) == {"de", "zh"} and "text_by_language zh" in output
    for lang in ("de", "zh"):  # 2 cats, 2 coffees, 1 rocket among 5: each query's own photos first
        assert by_language[lang]["text_map100"] > 0.9, (lang, by_language)
    # A translations file that misses a language is refused before anything is imported.
    env = {"LOOKALIKE_DATA_DIR": str(tmp_path / "data"), "LOOKALIKE_MODEL_CACHE": str(model_cache)}
    result = CliRunner().invoke(app, ["eval", "images", str(root), "--languages", "fr", "--translations", str(translations)],
                                env=env)
    assert result.exit_code != 0 and "--languages: no column fr" in result.output
