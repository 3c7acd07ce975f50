"""Control frames made from ordinary frames, by OpenCV: Canny edges (white on black, as ControlNet's
canny models were trained on). Pose, depth and other maps come from their own detectors, made
elsewhere and passed as a video or a folder of frames."""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLDS = (100, 200)  # the lower and upper hysteresis thresholds of ControlNet's canny annotator


def canny(frames: np.ndarray, low: int = DEFAULT_THRESHOLDS[0], high: int = DEFAULT_THRESHOLDS[1]) -> np.ndarray:
    """Edge maps of `frames` (F×H×W×3 uint8) as F×H×W×3 uint8: 255 on an edge, 0 elsewhere."""
    import cv2

    if not 0 <= low <= high:
        raise ValueError(f"the Canny thresholds must satisfy 0 ≤ low ≤ high; got {low} and {high}")
    edges = np.stack([cv2.Canny(np.ascontiguousarray(frame), low, high) for frame in frames])
    return np.repeat(edges[..., None], 3, axis=-1)
