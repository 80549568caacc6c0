"""Data: synthetic mixtures with planted factors, and the demo dataset shipped with unmix."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from ._counts import poisson_mixture
from ._targets import PlantedTarget, plant_target

__all__ = [
    "Mixture",
    "PlantedTarget",
    "load_cuzn_eels",
    "make_mixture",
    "plant_target",
    "poisson_mixture",
]


@dataclass
class Mixture:
    """A synthetic data set ``X = A @ S + noise`` with its planted factors.

    ``X`` is (pixels, channels); ``A`` (pixels, k) rows sum to one; ``S`` (k, channels).
    """

    X: np.ndarray
    A: np.ndarray
    S: np.ndarray
    spatial_shape: tuple[int, int]
    snr_db: float | None


def _peaks(k: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """k spectra of 2-4 Gaussian peaks each on a weak flat floor."""
    x = np.arange(m)
    S = np.full((k, m), 0.02)
    for j in range(k):
        for _ in range(rng.integers(2, 5)):
            c = rng.uniform(0.05, 0.95) * m
            w = rng.uniform(0.01, 0.04) * m
            S[j] += rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((x - c) / w) ** 2)
    return S


def _smooth_maps(shape: tuple[int, int], k: int, rng: np.random.Generator, purity: float):
    """Spatially smooth abundance maps on the simplex, some pixels nearly pure."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    logits = np.zeros((h, w, k))
    for j in range(k):
        for _ in range(3):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = rng.uniform(0.15, 0.35) * max(h, w)
            logits[..., j] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    logits *= purity
    A = np.exp(logits - logits.max(axis=2, keepdims=True))
    A /= A.sum(axis=2, keepdims=True)
    return A.reshape(h * w, k)


def make_mixture(
    k: int = 4,
    *,
    spatial_shape: tuple[int, int] = (32, 32),
    n_channels: int = 100,
    snr_db: float | None = 40.0,
    purity: float = 8.0,
    noise: str = "gaussian",
    scale: float = 1.0,
    random_state: int | None = 0,
) -> Mixture:
    """Planted-factor data: smooth sum-to-one maps times peaky spectra, plus noise.

    Parameters
    ----------
    k : int
        Number of endmembers.
    spatial_shape : (rows, cols)
        Scan grid; ``X`` has ``rows * cols`` pixels.
    n_channels : int
    snr_db : float or None
        Signal-to-noise ratio ``10 log10(||AS||^2 / ||N||^2)``; None for no noise.
    purity : float
        Larger values give purer pixels (sharper maps).
    noise : {"gaussian", "poisson"}
        For ``"poisson"`` the data are counts with mean ``scale * A @ S`` (``snr_db``
        is then ignored).
    scale : float
        Multiplies ``A @ S`` (counts per pixel for Poisson data).
    """
    rng = np.random.default_rng(random_state)
    S = _peaks(k, n_channels, rng)
    A = _smooth_maps(spatial_shape, k, rng, purity)
    Y = scale * (A @ S)
    if noise == "poisson":
        X = rng.poisson(Y).astype(float)
    elif noise == "gaussian":
        X = Y.copy()
        if snr_db is not None:
            sigma = np.sqrt(np.mean(Y**2) / 10 ** (snr_db / 10))
            X = X + sigma * rng.standard_normal(Y.shape)
    else:
        raise ValueError(f"noise must be 'gaussian' or 'poisson'; got {noise!r}.")
    return Mixture(X=X, A=A, S=scale * S, spatial_shape=spatial_shape, snr_db=snr_db)


def load_cuzn_eels() -> dict[str, Any]:
    """The Cu/ZnO EELS spectrum image shipped with unmix (see ``data/NOTICE.md``).

    Returns a dict with ``data`` (50, 40, 162) int16 counts, ``axis`` (eV), ``axis_name``,
    ``axis_units``, ``scale_nm`` (pixel size) and ``source``.
    """
    path = resources.files("unmix.datasets") / "data" / "cuzn_eels.npz"
    with resources.as_file(path) as p, np.load(p, allow_pickle=False) as z:
        return {
            "data": z["data"],
            "axis": z["axis"],
            "axis_name": str(z["axis_name"]),
            "axis_units": str(z["axis_units"]),
            "scale_nm": float(z["scale_nm"]),
            "source": str(z["source"]),
        }
