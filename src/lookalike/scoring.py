"""Cosine similarity -> score in 0..1.

The score is a monotone piecewise-linear function of the cosine similarity, with knots
calibrated per model (``ModelInfo.image_calibration`` / ``text_calibration``) so that the
score reads the same across queries and models: above 0.9 a near-duplicate or the same
item, 0.7..0.9 similar, below 0.7 weaker matches. Monotone, so ranking by score equals
ranking by cosine. How the knots were measured: ``benchmarks/calibrate_scores.py``.
"""

from __future__ import annotations

import numpy as np

from .models.base import ScoreCalibration


def to_score(cosines: np.ndarray, calibration: ScoreCalibration) -> np.ndarray:
    """Map cosine similarities to scores.

    Args:
        cosines: (n,) float32 cosine similarities in [-1, 1].
        calibration: the model's knots.

    Returns:
        (n,) float64 scores in [0, 1], non-decreasing in ``cosines``.
    """
    xs = np.asarray(calibration.cosines, dtype=np.float64)
    ys = np.asarray(calibration.scores, dtype=np.float64)
    out = np.interp(np.asarray(cosines, dtype=np.float64), xs, ys)
    return np.clip(out, 0.0, 1.0)
