"""A rare target planted into a real spectrum image (for thresholded NMF's tests and
benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PlantedTarget", "plant_target"]


@dataclass
class PlantedTarget:
    """A cube with a planted target: ``X`` (ny, nx, channels), the target pixels
    ``mask`` (ny, nx) and the target's unit-norm spectrum ``spectrum`` (channels,)."""

    X: np.ndarray
    mask: np.ndarray
    spectrum: np.ndarray


def plant_target(
    X: np.ndarray, amplitude: float, *, share: float = 0.01, width: float = 1.5, seed: int = 0
) -> PlantedTarget:
    """Add a narrow Gaussian peak to a compact blob of ``share`` of the pixels of ``X``.

    Parameters
    ----------
    X : array (ny, nx, channels)
        A spectrum image (left unchanged; the result is float64).
    amplitude : float
        Norm of the added peak as a multiple of the median pixel norm of ``X``.
    share : float
        Fraction of the pixels in the blob (grown around a random pixel at least 3
        pixels from the edges).
    width : float
        Standard deviation of the peak, in channels; its centre is random in the middle
        half of the channels.
    seed : int
    """
    ny, nx, m = X.shape
    rng = np.random.default_rng(seed)
    n_target = max(1, round(share * ny * nx))
    cy, cx = rng.integers(3, ny - 3), rng.integers(3, nx - 3)
    yy, xx = np.mgrid[:ny, :nx]
    d = np.hypot(yy - cy, xx - cx) + rng.random((ny, nx)) * 0.1
    mask = np.zeros((ny, nx), bool)
    mask.flat[np.argsort(d, axis=None)[:n_target]] = True
    c = rng.integers(m // 4, 3 * m // 4)
    t = np.exp(-0.5 * ((np.arange(m) - c) / width) ** 2)
    t /= np.linalg.norm(t)
    out = np.asarray(X, dtype=float).copy()
    out[mask] += amplitude * np.median(np.linalg.norm(X, axis=-1)) * t
    return PlantedTarget(out, mask, t)
