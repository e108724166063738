"""CLIP-style shared-space models (CLIP, SigLIP) from local weights, on ONNX Runtime.

Model ids: ``clip:/abs/path/to/folder`` (a ``save_pretrained`` folder holding
``config.json``, the weights, ``preprocessor_config.json`` and the tokenizer files) or
``clip:org/name`` (a repository already in the local Hugging Face cache; nothing is
downloaded). The image tower (``get_image_features``) and the text tower
(``get_text_features``) are exported to ONNX once; afterwards images need Pillow, numpy
and onnxruntime, and texts the model's tokenizer from ``transformers`` (no torch).

Text and image embeddings share one space (Radford et al., "Learning Transferable Visual
Models From Natural Language Supervision", ICML 2021), so ``semantic`` is ``None`` and text
queries are compared with ``visual``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..errors import ModelUnavailable
from .base import ImageEmbeddings, ModelInfo, ScoreCalibration
from .efficientnet import to_rgb
from .onnx_cache import ExportSpec, ensure_onnx, model_dir, open_session, run_pixel_batches

CLIP_PREFIX = "clip:"
DEFAULT_BATCH_SIZE = 16
_GRAPH_VERSION = "v1"  # bump when the exported graphs change

# Generic defaults, not measured on a specific checkpoint: typical OpenAI CLIP ViT-B
# cosines are about 0.4-0.6 between unrelated photos, 0.75-0.9 for similar ones and above
# 0.92 for near-duplicates; text-image cosines about 0.15-0.2 for unrelated and 0.3 and up
# for matching captions. SigLIP's ranges differ; recompute the knots for a checkpoint
# with benchmarks/calibrate_scores.py --model clip:...
CLIP_IMAGE_CALIBRATION = ScoreCalibration(
    cosines=(0.0, 0.5, 0.75, 0.92, 1.0), scores=(0.0, 0.3, 0.7, 0.9, 1.0)
)
CLIP_TEXT_CALIBRATION = ScoreCalibration(
    cosines=(0.0, 0.2, 0.25, 0.3, 0.35, 1.0), scores=(0.0, 0.3, 0.5, 0.7, 0.9, 1.0)
)

# Pillow resample codes as stored in preprocessor_config.json (HF PILImageResampling).
_RESAMPLE = {0: Image.Resampling.NEAREST, 1: Image.Resampling.LANCZOS,
             2: Image.Resampling.BILINEAR, 3: Image.Resampling.BICUBIC,
             4: Image.Resampling.BOX, 5: Image.Resampling.HAMMING}


def resolve_folder(model_id: str) -> Path:
    """``clip:/abs/folder`` or ``clip:org/name`` -> the local folder with the weights.

    Raises:
        ModelUnavailable: not a ``clip:`` id, a relative path, a missing folder, or a
            repository that is not in the local Hugging Face cache (the message names
            the folder or cache directory searched).
    """
    if not model_id.startswith(CLIP_PREFIX) or len(model_id) == len(CLIP_PREFIX):
        raise ModelUnavailable(f"'{model_id}' is not a clip: model id")
    ref = model_id[len(CLIP_PREFIX):]
    if ref.startswith(("/", "~", ".")):
        folder = Path(ref).expanduser()
        if not folder.is_absolute():
            raise ModelUnavailable(f"'{model_id}': give the model folder as an absolute path")
        if not (folder / "config.json").is_file():
            raise ModelUnavailable(
                f"model '{model_id}': no config.json in {folder} (expected a "
                "save_pretrained folder with weights, preprocessor and tokenizer files)"
            )
        return folder
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(ref, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, ...
        raise ModelUnavailable(
            f"model '{model_id}' is not in the local Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); download it there first or use "
            f"'{CLIP_PREFIX}/absolute/path/to/folder'"
        ) from exc


class ClipEmbedder:
    """A CLIP/SigLIP checkpoint as an ``Embedder`` with one shared text-image space.

    ``visual`` and ``embed_texts``: (n, d) float32, L2-normalised, d = the projection size
    (``info.image_dim == info.text_dim``). ``semantic`` is always ``None``.

    Raises (constructor):
        ModelUnavailable: the folder / cache entry is missing, it is not a model with
            ``get_image_features`` and ``get_text_features``, or the export failed.
    """

    def __init__(
        self, model_id: str, cache_dir: Path, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        self.folder = resolve_folder(model_id)
        self.batch_size = max(1, int(batch_size))
        config = _read_json(self.folder / "config.json")
        self._model_type = str(config.get("model_type", ""))
        self._pre = _Preprocessing.from_folder(self.folder)
        text_cfg = config.get("text_config") or {}
        # SigLIP was trained on texts padded to a fixed length without an attention mask
        # and pools the last token, so it must see exactly that (HF SigLIP docs).
        self._tokenizer = _TextTokenizer(
            self.folder,
            max_positions=int(text_cfg.get("max_position_embeddings", 77)),
            pad_to_max=self._model_type.startswith("siglip"),
        )

        self._torch: Any = None
        cache = model_dir(cache_dir, model_id)
        tag = f"{_GRAPH_VERSION}-{_fingerprint(self.folder)}"
        image_onnx = ensure_onnx(cache / f"image-{tag}", lambda: self._image_spec())
        text_onnx = ensure_onnx(cache / f"text-{tag}", lambda: self._text_spec())
        self._torch = None  # drop the PyTorch copy the export may have loaded
        self._image_session = open_session(image_onnx)
        self._text_session = open_session(text_onnx)
        dim = self._image_session.get_outputs()[0].shape[-1]
        if not isinstance(dim, int):  # symbolic in the graph: ask the graph
            probe = np.zeros((1, 3, self._pre.crop, self._pre.crop), np.float32)
            dim = self._image_session.run(None, {"pixel_values": probe})[0].shape[-1]
        self.info = ModelInfo(
            model_id=model_id,
            image_dim=int(dim),
            text_dim=int(dim),
            shared_space=True,
            input_size=self._pre.crop,
            image_calibration=CLIP_IMAGE_CALIBRATION,
            text_calibration=CLIP_TEXT_CALIBRATION,
        )

    # -- Embedder -------------------------------------------------------------------

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One image -> (3, S, S) float32, as the folder's ``preprocessor_config.json``
        says (resize shortest side or to a fixed size, centre crop, rescale, mean/std)."""
        return self._pre(to_rgb(image))

    def embed_pixels(self, batch: np.ndarray) -> ImageEmbeddings:
        """(n, 3, S, S) float32 -> ``visual`` (n, d) float32, L2-normalised; no ``semantic``.

        Raises:
            ValueError: ``batch`` has the wrong shape.
        """
        out = run_pixel_batches(
            self._image_session, "pixel_values", ["image_embeds"], batch, self._pre.crop, self.batch_size
        )
        visual = _l2(out[0]) if out else np.zeros((0, self.info.image_dim), np.float32)
        return ImageEmbeddings(visual=visual, semantic=None)

    def embed_images(self, images: Sequence[Image.Image]) -> ImageEmbeddings:
        """Images -> embeddings (``preprocess`` then ``embed_pixels``)."""
        s = self._pre.crop
        if not images:
            return self.embed_pixels(np.zeros((0, 3, s, s), np.float32))
        return self.embed_pixels(np.stack([self.preprocess(im) for im in images]))

    def text_calibration_for(self, text: str) -> ScoreCalibration | None:
        """``info.text_calibration``: one text tower, one scale for every text."""
        return self.info.text_calibration

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Query texts -> (n, d) float32, L2-normalised, comparable with ``visual``.

        Texts longer than the model's context (77 tokens for CLIP) are truncated.
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.info.text_dim), np.float32)
        out = []
        for i in range(0, len(texts), self.batch_size):
            ids, mask = self.tokenize(texts[i : i + self.batch_size])
            out.append(
                self._text_session.run(
                    ["text_embeds"], {"input_ids": ids, "attention_mask": mask}
                )[0]
            )
        return _l2(np.concatenate(out))

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> (input_ids, attention_mask), both (n, L) int64, as the model expects."""
        return self._tokenizer(texts)

    # -- export ---------------------------------------------------------------------

    def _torch_model(self) -> Any:
        if self._torch is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoModel

            model = AutoModel.from_pretrained(
                str(self.folder), local_files_only=True, attn_implementation="eager"
            ).eval()
            if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
                raise ModelUnavailable(
                    f"{self.folder} holds a '{self._model_type}' model without "
                    "get_image_features / get_text_features (not CLIP-like)"
                )
            self._torch = model
        return self._torch

    def _image_spec(self) -> ExportSpec:
        import torch

        model = self._torch_model()

        class ImageTower(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
                return _features(self.model.get_image_features(pixel_values=pixel_values))

        s = self._pre.crop
        gen = torch.Generator().manual_seed(0)
        return ExportSpec(
            module=ImageTower().eval(),
            example_inputs=(torch.randn((2, 3, s, s), generator=gen),),
            input_names=["pixel_values"],
            output_names=["image_embeds"],
            dynamic_shapes={"pixel_values": {0: torch.export.Dim.DYNAMIC}},
            check_inputs=(torch.randn((3, 3, s, s), generator=gen),),
            atol=1e-3,
            extra_meta={"source": str(self.folder), "tower": "image"},
        )

    def _text_spec(self) -> ExportSpec:
        import torch

        model = self._torch_model()

        class TextTower(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                return _features(
                    self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
                )

        def sample(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            ids, mask = self.tokenize(texts)
            return torch.from_numpy(ids), torch.from_numpy(mask)

        dyn = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}
        return ExportSpec(
            module=TextTower().eval(),
            example_inputs=sample(["a photo of a cat", "a dog"]),
            input_names=["input_ids", "attention_mask"],
            output_names=["text_embeds"],
            dynamic_shapes={"input_ids": dyn, "attention_mask": dyn},
            check_inputs=sample(["x", "a diagram", "two people walking a dog on a beach at dawn"]),
            atol=1e-3,
            extra_meta={"source": str(self.folder), "tower": "text"},
        )


def _features(out: Any) -> Any:
    # transformers >= 5 returns a model output whose pooler_output is the projected
    # embedding; 4.x returned the tensor itself.
    return out if hasattr(out, "shape") else out.pooler_output


class _Preprocessing:
    """HF CLIP/SigLIP image preprocessing reimplemented with Pillow and numpy."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        size = cfg.get("size", 224)
        if isinstance(size, dict) and "shortest_edge" in size:
            self.shortest, self.fixed = int(size["shortest_edge"]), None
        elif isinstance(size, dict):
            self.shortest, self.fixed = None, (int(size["width"]), int(size["height"]))
        else:
            self.shortest, self.fixed = int(size), None
        self.do_resize = bool(cfg.get("do_resize", True))
        self.do_crop = bool(cfg.get("do_center_crop", self.shortest is not None))
        crop = cfg.get("crop_size", size)
        if isinstance(crop, dict):
            crop = crop.get("height", crop.get("shortest_edge"))
        if self.do_crop:
            self.crop = int(crop)
        elif self.fixed is not None:
            self.crop = self.fixed[1]
        else:
            self.crop = self.shortest or 224
        if self.fixed is not None and self.fixed[0] != self.fixed[1] and not self.do_crop:
            raise ModelUnavailable(f"non-square input size {self.fixed} is not supported")
        self.resample = _RESAMPLE.get(int(cfg.get("resample", 3)), Image.Resampling.BICUBIC)
        self.scale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
        normalise = cfg.get("do_normalize", True)
        self.mean = np.asarray(cfg.get("image_mean", [0.0] * 3) if normalise else [0.0] * 3, np.float32)
        self.std = np.asarray(cfg.get("image_std", [1.0] * 3) if normalise else [1.0] * 3, np.float32)

    @classmethod
    def from_folder(cls, folder: Path) -> "_Preprocessing":
        path = folder / "preprocessor_config.json"
        if not path.is_file():
            raise ModelUnavailable(f"no preprocessor_config.json in {folder}")
        return cls(_read_json(path))

    def __call__(self, image: Image.Image) -> np.ndarray:
        s = self.crop
        if self.do_resize:
            if self.fixed is not None:
                image = image.resize(self.fixed, self.resample)
            else:
                # HF get_resize_output_image_size: the long side is truncated, not rounded.
                w, h = image.size
                short, long_ = (w, h) if w <= h else (h, w)
                new_short, new_long = self.shortest, int(self.shortest * long_ / short)
                new = (new_short, new_long) if w <= h else (new_long, new_short)
                image = image.resize(new, self.resample)
        if self.do_crop or image.size != (s, s):
            w, h = image.size
            if w < s or h < s:
                image = image.resize((max(w, s), max(h, s)), self.resample)
                w, h = image.size
            top, left = int((h - s) / 2.0), int((w - s) / 2.0)
            image = image.crop((left, top, left + s, top + s))
        x = np.asarray(image, dtype=np.float32) * self.scale
        x = (x - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


class _TextTokenizer:
    """The folder's tokenizer: ``tokenizer.json`` through ``tokenizers`` when present
    (keeps transformers, and with it torch, out of the query path), else AutoTokenizer."""

    def __init__(self, folder: Path, max_positions: int, pad_to_max: bool) -> None:
        tok_cfg: dict[str, Any] = {}
        if (folder / "tokenizer_config.json").is_file():
            tok_cfg = _read_json(folder / "tokenizer_config.json")
        limit = tok_cfg.get("model_max_length")
        self.max_len = min(max_positions, int(limit)) if isinstance(limit, (int, float)) else max_positions
        self.pad_to_max = pad_to_max
        self._lock = threading.Lock()
        self._fast = None
        self._auto = None
        if (folder / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
            tok.no_padding()
            tok.enable_truncation(max_length=self.max_len)
            pad = _special_token(folder, tok_cfg, "pad_token") or _special_token(folder, tok_cfg, "eos_token")
            pad_id = tok.token_to_id(pad) if pad else None
            tok.enable_padding(
                pad_id=pad_id or 0,
                pad_token=pad or "",
                length=self.max_len if pad_to_max else None,
            )
            self._fast = tok
        else:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoTokenizer

            try:
                self._auto = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            except Exception as exc:  # transformers raises OSError/ValueError/...
                raise ModelUnavailable(f"cannot load the tokenizer from {folder}: {exc}") from exc

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        texts = list(texts)
        with self._lock:  # padding/truncation state lives on the tokenizer object
            if self._fast is not None:
                enc = self._fast.encode_batch(texts)
                ids = np.asarray([e.ids for e in enc], dtype=np.int64)
                mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
            else:
                out = self._auto(
                    texts,
                    padding="max_length" if self.pad_to_max else True,
                    truncation=True,
                    max_length=self.max_len,
                    return_tensors="np",
                )
                ids = np.asarray(out["input_ids"], dtype=np.int64)
                mask = np.asarray(out.get("attention_mask", np.ones_like(ids)), dtype=np.int64)
        if self.pad_to_max:
            mask = np.ones_like(ids)
        return ids, mask


def _special_token(folder: Path, tok_cfg: dict[str, Any], name: str) -> str | None:
    value = tok_cfg.get(name)
    if value is None and (folder / "special_tokens_map.json").is_file():
        value = _read_json(folder / "special_tokens_map.json").get(name)
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _fingerprint(folder: Path) -> str:
    """Short hash of the config and the weight files' names, sizes and mtimes, so a
    folder whose weights were replaced gets a fresh export instead of a stale graph."""
    h = hashlib.sha1((folder / "config.json").read_bytes())
    for f in sorted(folder.iterdir()):
        if f.suffix in (".safetensors", ".bin", ".pt", ".pth"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:10]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot read {path}: {exc}") from exc


def _l2(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
