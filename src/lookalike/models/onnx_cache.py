"""Export a PyTorch module to ONNX once, check it, and serve it with ONNX Runtime.

Layout of the cache: ``<cache_dir>/<sanitised model id>/<graph name>/`` holds
``model.onnx``, its external weights ``model.onnx.data`` and ``meta.json`` (versions and
the measured export error). A graph directory is built in a temporary sibling and renamed
into place only after the numerical check passed, so a killed or failed export leaves
nothing that a later start would mistake for a finished one.

torch is imported only inside :func:`ensure_onnx` when an export is actually needed:
serving from a filled cache needs onnxruntime and numpy only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import ModelUnavailable

if TYPE_CHECKING:  # pragma: no cover
    import onnxruntime

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
META_FILE = "meta.json"


@dataclass
class ExportSpec:
    """What :func:`ensure_onnx` needs to export and check one graph.

    Attributes:
        module: a ``torch.nn.Module`` in eval mode whose ``forward`` takes the inputs
            positionally and returns a tensor or a tuple of tensors.
        example_inputs: torch tensors used to trace the graph.
        input_names / output_names: ONNX names, in ``forward`` order.
        dynamic_shapes: passed to ``torch.onnx.export(dynamo=True)``; e.g.
            ``{"pixels": {0: torch.export.Dim.DYNAMIC}}`` for a dynamic batch.
        check_inputs: torch tensors for the numerical check; use a shape other than the
            example's so a wrongly specialised dynamic axis is caught. Defaults to
            ``example_inputs``.
        atol: largest accepted absolute difference between PyTorch and ONNX Runtime
            outputs, per element.
        extra_meta: JSON-serialisable facts recorded in ``meta.json`` (e.g. weight file).
    """

    module: Any
    example_inputs: tuple[Any, ...]
    input_names: Sequence[str]
    output_names: Sequence[str]
    dynamic_shapes: Mapping[str, Any] | None = None
    check_inputs: tuple[Any, ...] | None = None
    atol: float = 1e-4
    extra_meta: dict[str, Any] = field(default_factory=dict)


def sanitise_model_id(model_id: str) -> str:
    """A model id -> a safe single path component (``clip:/a/b`` -> ``clip_a_b``).

    Distinct ids may collide after sanitising (``a/b`` vs ``a_b``), so a short hash of
    the exact id is appended whenever characters were replaced.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._") or "model"
    if safe != model_id:
        safe = f"{safe[:80]}-{hashlib.sha1(model_id.encode()).hexdigest()[:8]}"
    return safe


def model_dir(cache_dir: Path, model_id: str) -> Path:
    """``<cache_dir>/<sanitised model_id>``; not created."""
    return Path(cache_dir) / sanitise_model_id(model_id)


def ensure_onnx(graph_dir: Path, build: Callable[[], ExportSpec]) -> Path:
    """Path of ``graph_dir/model.onnx``, exporting it first if the cache lacks it.

    ``build`` is called (and torch imported) only when an export is needed.

    Raises:
        ModelUnavailable: the export failed or its outputs differ from PyTorch's by more
            than ``spec.atol``; nothing is left in ``graph_dir``.
    """
    graph_dir = Path(graph_dir)
    onnx_path = graph_dir / ONNX_FILE
    if onnx_path.is_file():
        return onnx_path
    graph_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(graph_dir)
    # The temp dir is a sibling so the final rename stays on one filesystem (atomic).
    tmp = Path(tempfile.mkdtemp(prefix=f".{graph_dir.name}.tmp-", dir=graph_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the cache may be shared read-only
    log.info("exporting %s to ONNX (once; this takes a while)", graph_dir)
    started = time.monotonic()
    try:
        spec = build()
        meta = _export_and_check(spec, tmp / ONNX_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        try:
            os.rename(tmp, graph_dir)
        except OSError:
            # Another process finished the same export first; use its copy.
            if not onnx_path.is_file():
                raise
    except ModelUnavailable:
        raise
    except Exception as exc:  # torch/onnx raise many unrelated types
        raise ModelUnavailable(f"ONNX export to {graph_dir} failed: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "exported %s in %.1f s, max |onnx - torch| %s",
        graph_dir, time.monotonic() - started, meta["max_abs_diff_vs_torch"],
    )
    return onnx_path


def _remove_stale_temps(graph_dir: Path, max_age_s: float = 3600.0) -> None:
    """Delete temp dirs of exports killed long ago (a live export takes minutes)."""
    now = time.time()
    for old in graph_dir.parent.glob(f".{graph_dir.name}.tmp-*"):
        try:
            if now - old.stat().st_mtime > max_age_s:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


def _export_and_check(spec: ExportSpec, onnx_path: Path) -> dict[str, Any]:
    import torch

    module = spec.module.eval()
    # The exporter's progress lines, FutureWarnings and "torchvision is not installed"
    # notices are noise for a server log; failures still raise.
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quiet.setLevel(logging.ERROR)
        try:
            torch.onnx.export(
                module,
                tuple(spec.example_inputs),
                str(onnx_path),
                input_names=list(spec.input_names),
                output_names=list(spec.output_names),
                dynamic_shapes=dict(spec.dynamic_shapes) if spec.dynamic_shapes else None,
                # The legacy TorchScript exporter produced wrong EfficientNet-Lite
                # outputs (docs/research.md#models); the dynamo exporter matched.
                dynamo=True,
                external_data=True,
                verbose=False,
            )
        finally:
            quiet.setLevel(level)
        check = tuple(spec.check_inputs or spec.example_inputs)
        expected = module(*check)
    if isinstance(expected, torch.Tensor):
        expected = (expected,)
    session = open_session(onnx_path)
    feeds = {n: t.detach().cpu().numpy() for n, t in zip(spec.input_names, check)}
    got = session.run(list(spec.output_names), feeds)
    diffs: dict[str, float] = {}
    for name, e, g in zip(spec.output_names, expected, got):
        e_np = e.detach().cpu().numpy()
        if e_np.shape != g.shape:
            raise ModelUnavailable(
                f"ONNX export check failed for {onnx_path.parent.name}: output '{name}' has "
                f"shape {g.shape}, PyTorch gives {e_np.shape}"
            )
        diffs[name] = float(np.max(np.abs(e_np.astype(np.float64) - g))) if g.size else 0.0
    worst = max(diffs.values(), default=0.0)
    if not worst <= spec.atol:  # also catches NaN
        raise ModelUnavailable(
            f"ONNX export check failed for {onnx_path.parent.name}: max |onnx - torch| = "
            f"{worst:.3g} > {spec.atol:.3g} ({diffs})"
        )
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "torch": torch.__version__,
        "max_abs_diff_vs_torch": diffs,
        "check_shapes": {n: list(t.shape) for n, t in zip(spec.input_names, check)},
        **spec.extra_meta,
    }


def read_meta(graph_dir: Path) -> dict[str, Any]:
    """The ``meta.json`` written at export time ({} if missing or unreadable)."""
    try:
        return json.loads((Path(graph_dir) / META_FILE).read_text())
    except (OSError, ValueError):
        return {}


def cpu_threads() -> int:
    """CPUs this process may run on (affinity-aware where the OS tells), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def open_session(onnx_path: Path, threads: int | None = None) -> "onnxruntime.InferenceSession":
    """An ONNX Runtime CPU session for ``onnx_path`` (external data is read from its folder).

    Args:
        threads: intra-op threads; default :func:`cpu_threads`.

    Raises:
        ModelUnavailable: the file is missing or ONNX Runtime cannot load it.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or cpu_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelUnavailable(f"cannot load ONNX model {onnx_path}: {exc}") from exc


def run_pixel_batches(
    session: "onnxruntime.InferenceSession",
    input_name: str,
    outputs: Sequence[str],
    pixels: np.ndarray,
    size: int,
    batch_size: int,
) -> list[np.ndarray] | None:
    """Run an image graph over ``pixels`` in batches of ``batch_size``.

    Args:
        pixels: (n, 3, size, size) float32 model input.

    Returns:
        One array per name in ``outputs``, the batches concatenated along axis 0; ``None``
        when n is 0.

    Raises:
        ValueError: ``pixels`` is not (n, 3, size, size).
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 4 or pixels.shape[1:] != (3, size, size):
        raise ValueError(f"expected (n, 3, {size}, {size}) pixels, got {pixels.shape}")
    if len(pixels) == 0:
        return None
    runs = [
        session.run(list(outputs), {input_name: np.ascontiguousarray(pixels[i : i + batch_size])})
        for i in range(0, len(pixels), batch_size)
    ]
    return [np.concatenate([run[j] for run in runs]) for j in range(len(outputs))]

