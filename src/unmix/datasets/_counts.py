"""Planted Poisson counts: the generator of Bayesian NMF's calibration tests and benchmark.

Counts ``X`` (pixels, channels) ``~ Poisson(A @ S)`` on a ``side`` x ``side`` scan: the maps
``A`` (pixels, k) are a softmax of smooth random fields (temperature 1/3 of their
standard deviation: every component has nearly pure regions) times the mean counts a
pixel; the spectra ``S`` (k, channels) have two Gaussian peaks each (centres spread over
the channels, widths 1.5-3 channels) on a baseline of 0.01, normalized to unit sum.
"""

from __future__ import annotations

import numpy as np

__all__ = ["poisson_mixture"]


def poisson_mixture(
    k: int, counts: float, seed: int = 0, side: int = 32, m: int = 64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, A, S)``: Poisson counts ``X`` (side**2, m), maps ``A`` (side**2, k) - the
    expected counts of each component in each pixel, ``counts`` a pixel on average - and
    unit-sum spectra ``S`` (k, m); seeded by ``seed`` (see the module)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((k, side, side))
    f = np.stack([gaussian_filter(z, 3.0, mode="wrap") for z in noise], axis=-1)
    f /= f.std(axis=(0, 1), keepdims=True)
    e = np.exp(3.0 * f)
    A = (e / e.sum(axis=-1, keepdims=True)).reshape(-1, k) * counts
    grid = np.arange(m)
    S = np.full((k, m), 0.01)
    centers = rng.permutation(np.linspace(3, m - 4, 2 * k))
    for r in range(k):
        for c in centers[2 * r : 2 * r + 2]:
            w, h = rng.uniform(1.5, 3.0), rng.uniform(0.4, 1.0)
            S[r] += h * np.exp(-0.5 * ((grid - c) / w) ** 2)
    S /= S.sum(axis=1, keepdims=True)
    X = rng.poisson(A @ S).astype(np.float64)
    return X, A, S
