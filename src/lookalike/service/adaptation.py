"""Library-adaptive ranking: a per-library transform of the visual embeddings, fitted from
the library's own vectors, that re-ranks the plain-cosine candidates of an image query.

Two kinds, by library mode (measured on the shared sets, README "Image→image ranking"):

- ``centre`` (``general_search``): subtract the library's mean embedding before the cosine.
  The component every photo of a library shares (the "negative evidence" of Jégou & Chum,
  "Negative evidences and co-occurrences in image retrieval", ECCV 2012) then stops counting
  as similarity, so what sets two photos apart weighs more.
- ``whiten`` (``item_search``): centre, then PCA-whiten with shrinkage: project on the top
  ``WHITEN_DIMS`` principal axes of the library's covariance and divide each by
  ``sqrt(eigenvalue + mean eigenvalue)`` (the learned whitening of Radenović, Tolias & Chum,
  "Fine-tuning CNN image retrieval with no human annotation", TPAMI 2018, with the
  covariance shrunk toward its average variance so rarely-varying axes are not blown up).
  It separates instances (+8.5 R@10 on sop_subset) but blurs categories, hence only for
  instance search.

The adapted cosine has its own distribution, so each fit also carries a monotone map from
adapted cosine to the plain cosine of the same quantile over the library's own pairs
(``plain_equivalent``): the model's score knots (``scoring.to_score``) then read the same.
Every function here is pure NumPy; persisting and refitting live in ``service.adapter``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

import numpy as np
from threadpoolctl import ThreadpoolController

KINDS = ("centre", "whiten")
#: Principal axes kept by ``whiten``: 256 measured like 512 or 1280 on sop_subset (R@10 0.714
#: vs 0.715) at a fifth of the re-rank cost (a 1280 x 256 float32 projection, 1.3 MB).
WHITEN_DIMS = 256
#: Rows x columns of the sample whose pairs give the quantiles of ``plain_equivalent`` (2M
#: pairs: a 20k-row fit spends ~1 s here rather than ~6 s with every column).
CALIBRATION_ROWS = 500
CALIBRATION_COLUMNS = 4000
#: Quantiles matched between the two cosine distributions: evenly to 0.99, then denser in
#: the top 1 % where the scores' 0.7 and 0.9 knots fall (unrelated pairs' 99th percentile,
#: near-duplicates).
QUANTILES = np.concatenate([np.linspace(0.0, 0.99, 100), 1.0 - np.logspace(-2.0, -6.0, 41)[1:]])


@dataclass(frozen=True)
class Adaptation:
    """A fitted adaptation of one library's embedding field.

    Attributes:
        kind: ``centre`` or ``whiten``.
        mean: (dim,) float32, the mean of the sampled L2-normalised embeddings.
        projection: (dim, k) float32 whitening (``whiten``), ``None`` for ``centre``.
        adapted_knots, plain_knots: (q,) float64, strictly increasing; adapted cosine
            ``adapted_knots[i]`` has the quantile of plain cosine ``plain_knots[i]`` among the
            library's pairs; both end at 1.0.
        images: the library's image count when fitted (the refit rule compares with it).
    """

    kind: str
    mean: np.ndarray
    projection: np.ndarray | None
    adapted_knots: np.ndarray
    plain_knots: np.ndarray
    images: int


def transform(vectors: np.ndarray, adaptation: Adaptation) -> np.ndarray:
    """Adapted embeddings: centred, whitened for ``whiten``, re-normalised.

    Args:
        vectors: (n, dim) or (dim,) float32, L2-normalised.

    Returns:
        (n, k) or (k,) float32, L2-normalised (k = dim for ``centre``); a vector equal to the
        mean (norm 0) stays all zeros.
    """
    z = np.asarray(vectors, dtype=np.float32) - adaptation.mean
    if adaptation.projection is not None:
        z = z @ adaptation.projection
    norms = np.linalg.norm(z, axis=-1, keepdims=True)
    return (z / np.maximum(norms, 1e-12)).astype(np.float32)


def similarity(query: np.ndarray, candidates: np.ndarray, adaptation: Adaptation) -> np.ndarray:
    """Adapted cosine of a query with each candidate (``transform`` of both, then the dot
    product), computed without materialising the centred candidates.

    Args:
        query: (dim,) float32, L2-normalised.
        candidates: (n, dim) float32, L2-normalised.

    Returns:
        (n,) float32 in [-1, 1].
    """
    q = np.asarray(query, dtype=np.float32)
    v = np.asarray(candidates, dtype=np.float32)
    if adaptation.projection is not None:
        # One BLAS thread: OpenBLAS's threads wait on ONNX Runtime's spinning ones in a
        # server (37 ms instead of 1.4 ms for 200 candidates after an embedding, measured).
        with _blas().limit(limits=1, user_api="blas"):
            shift = adaptation.mean @ adaptation.projection
            zv = v @ adaptation.projection - shift
            zq = q @ adaptation.projection - shift
        zv /= np.maximum(np.linalg.norm(zv, axis=1, keepdims=True), 1e-12)
        return zv @ (zq / max(float(np.linalg.norm(zq)), 1e-12))
    # Unit vectors: (v - m).(q - m) = v.q - v.m - q.m + m.m and |v - m|^2 = 1 - 2 v.m + m.m,
    # two matrix-vector products instead of a centred copy of the candidates. einsum, not @:
    # OpenBLAS's threads wait on ONNX Runtime's spinning ones in a server (14 ms instead of
    # 0.1 ms for 400 candidates, measured), einsum's own loop does not.
    m = adaptation.mean
    vm, qm, mm = np.einsum("ij,j->i", v, m), float(q @ m), float(m @ m)
    numerator = np.einsum("ij,j->i", v, q) - vm - qm + mm
    norms = np.sqrt(np.maximum(1.0 - 2.0 * vm + mm, 1e-12) * max(1.0 - 2.0 * qm + mm, 1e-12))
    return (numerator / norms).astype(np.float32)


@cache
def _blas() -> ThreadpoolController:
    """The process's thread pools (inspected once: that takes milliseconds)."""
    return ThreadpoolController()


def plain_equivalent(adapted: np.ndarray, adaptation: Adaptation) -> np.ndarray:
    """Map adapted cosines to the plain cosine of the same quantile in the library, so the
    model's plain-cosine score knots apply. Non-decreasing (strictly increasing between the
    knots), so ordering by it is ordering by the adapted cosine.

    Args:
        adapted: (n,) adapted cosines.

    Returns:
        (n,) float64 plain-cosine equivalents in [-1, 1].
    """
    return np.interp(np.asarray(adapted, dtype=np.float64), adaptation.adapted_knots, adaptation.plain_knots)


def fit(sample: np.ndarray, kind: str, images: int) -> Adaptation:
    """Fit an adaptation on a sample of a library's embeddings.

    Args:
        sample: (m, dim) float32, L2-normalised, m >= 2 (the service fits from 200 images).
        kind: ``centre`` or ``whiten``.
        images: the library's image count now (recorded in the fit).

    Raises:
        ValueError: unknown ``kind`` or fewer than 2 rows.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}")
    x = np.asarray(sample, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError("sample: need at least 2 rows of shape (m, dim)")
    mean = x.mean(axis=0, dtype=np.float64)
    projection = None
    if kind == "whiten":
        z = x - mean.astype(np.float32)
        # float32 product (the slow part), float64 eigendecomposition
        eigenvalues, axes = np.linalg.eigh((z.T @ z).astype(np.float64) / len(z))  # ascending
        eigenvalues, axes = np.clip(eigenvalues[::-1], 0.0, None), axes[:, ::-1]
        ridge = float(eigenvalues.mean())  # shrink toward the average variance (a no-tuning choice)
        k = min(WHITEN_DIMS, len(eigenvalues))
        projection = (axes[:, :k] / np.sqrt(eigenvalues[:k] + ridge)).astype(np.float32)
    fitted = Adaptation(kind=kind, mean=mean.astype(np.float32), projection=projection,
                        adapted_knots=np.array([1.0]), plain_knots=np.array([1.0]), images=int(images))
    adapted_knots, plain_knots = _quantile_knots(np.asarray(sample, dtype=np.float32), fitted)
    return Adaptation(kind=kind, mean=fitted.mean, projection=projection, adapted_knots=adapted_knots,
                      plain_knots=plain_knots, images=int(images))


def _quantile_knots(sample: np.ndarray, adaptation: Adaptation) -> tuple[np.ndarray, np.ndarray]:
    """(adapted, plain) cosine quantiles over the sample's pairs (self-pairs excluded), made
    strictly increasing and ending at (1, 1): identical images keep score 1."""
    rows = np.unique(np.linspace(0, len(sample) - 1, min(len(sample), CALIBRATION_ROWS)).round().astype(int))
    columns = np.unique(np.linspace(0, len(sample) - 1, min(len(sample), CALIBRATION_COLUMNS)).round().astype(int))
    plain = sample[rows] @ sample[columns].T
    adapted = transform(sample[rows], adaptation) @ transform(sample[columns], adaptation).T
    off_diagonal = rows[:, None] != columns[None, :]
    a = np.quantile(adapted[off_diagonal], QUANTILES)
    p = np.quantile(plain[off_diagonal], QUANTILES)
    keep = np.concatenate([[True], (np.diff(a) > 1e-9) & (np.diff(p) >= 0)])
    a, p = a[keep], np.maximum.accumulate(p[keep])
    below = a < 1.0 - 1e-6
    return np.append(a[below], 1.0), np.append(np.minimum(p[below], 1.0), 1.0)


def to_bytes(adaptation: Adaptation) -> bytes:
    """Serialise for ``Store.save_adaptation`` (NumPy ``.npz``; ~1.3 MB for ``whiten``,
    ~6 KB for ``centre``)."""
    buf = io.BytesIO()
    arrays = {
        "kind": np.array(adaptation.kind), "mean": adaptation.mean, "images": np.array(adaptation.images),
        "adapted_knots": adaptation.adapted_knots, "plain_knots": adaptation.plain_knots,
    }
    if adaptation.projection is not None:
        arrays["projection"] = adaptation.projection
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def from_bytes(data: bytes) -> Adaptation:
    """Inverse of ``to_bytes``. Raises ``ValueError`` for bytes it did not write."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return Adaptation(
                kind=str(z["kind"]), mean=z["mean"].astype(np.float32),
                projection=z["projection"].astype(np.float32) if "projection" in z else None,
                adapted_knots=z["adapted_knots"].astype(np.float64), plain_knots=z["plain_knots"].astype(np.float64),
                images=int(z["images"]),
            )
    except (OSError, KeyError, EOFError) as exc:
        raise ValueError(f"not a saved adaptation: {exc}") from exc
