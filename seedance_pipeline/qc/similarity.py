"""PSNR and SSIM of two grayscale images of one size, in numpy.

SSIM is Wang et al. (2004) with a 7 × 7 uniform window, K1 = 0.01 and K2 = 0.03 on 0-255 values,
as scikit-image computes it by default; the local means come from an integral image, so a
160 × 90 comparison costs well under a millisecond and needs no scikit-image (and its SciPy).
"""

from __future__ import annotations

import math

import numpy as np

WINDOW = 7
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB; capped at 100 for identical images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse <= 1e-10 else min(100.0, 10 * math.log10(255.0**2 / mse))


def _window_means(x: np.ndarray) -> np.ndarray:
    """The mean of every full WINDOW × WINDOW window of `x` (valid positions only)."""
    total = np.zeros((x.shape[0] + 1, x.shape[1] + 1), np.float64)
    total[1:, 1:] = x.cumsum(0).cumsum(1)
    w = WINDOW
    sums = total[w:, w:] - total[:-w, w:] - total[w:, :-w] + total[:-w, :-w]
    return sums / (w * w)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two same-sized grayscale images (1 for identical ones)."""
    if a.shape != b.shape:
        raise ValueError(f"images of different sizes: {a.shape} and {b.shape}")
    if min(a.shape) < WINDOW:
        raise ValueError(f"images smaller than the {WINDOW} × {WINDOW} window: {a.shape}")
    x, y = a.astype(np.float64), b.astype(np.float64)
    n = WINDOW * WINDOW
    unbiased = n / (n - 1)  # sample covariances, as scikit-image
    mx, my = _window_means(x), _window_means(y)
    vx = (_window_means(x * x) - mx * mx) * unbiased
    vy = (_window_means(y * y) - my * my) * unbiased
    cxy = (_window_means(x * y) - mx * my) * unbiased
    numerator = (2 * mx * my + _C1) * (2 * cxy + _C2)
    denominator = (mx * mx + my * my + _C1) * (vx + vy + _C2)
    return float(np.mean(numerator / denominator))
