"""Background removal on spectra: EELS power law and asymmetric least squares baselines.

Both operations work on every pixel at once (vectorized over pixels) and leave the axes
unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spectral_image import SpectralImage
from ._imagebase import ImageOp, Out, as_float, need_signal_ndim, range_indices, register

__all__ = ["BaselineALS", "PowerLawBackground", "als_baseline", "solve_pentadiagonal"]

_logger = logging.getLogger("unmix.preprocessing")


@register
@dataclass
class PowerLawBackground(ImageOp):
    """Remove an EELS pre-edge background ``A E^-r`` fitted at every pixel.

    ``log I = log A - r log E`` is fitted by least squares in the pre-edge window (only
    the points with ``I > 0`` count), all pixels at once, and ``A E^-r`` is subtracted
    over the whole axis.

    Parameters
    ----------
    fit_range : [lo, hi]
        The pre-edge window in calibrated units (e.g. ``[800, 900]`` eV before the Cu
        L2,3 edge at 931 eV); energies must be positive there.
    clip : bool
        Clip negative results to 0 (for NMF).
    zero_fill : bool
        Set the channels below the window to 0 (where the extrapolated power law means
        little).

    Notes
    -----
    Axes unchanged. The background is 0 at non-positive energies and at pixels with
    fewer than two positive points in the window (counted in the description's ``info``
    with the median exponent ``r``).
    """

    op = "power_law_background"
    streaming = "pixel"
    fit_range: Any = None
    clip: bool = False
    zero_fill: bool = False

    def __post_init__(self) -> None:
        if self.fit_range is None:
            raise ValueError("PowerLawBackground: give fit_range=[lo, hi], the pre-edge window")

    def _transform(self, image: SpectralImage) -> Out:
        need_signal_ndim(self, image, 1)
        ax = image.signal_axes[0]
        win = range_indices(self, ax, self.fit_range, True, "fit_range")
        e = ax.values
        if win.size < 2 or np.any(e[win] <= 0):
            raise ValueError(
                f"PowerLawBackground: fit_range {self.fit_range!r} must hold at least two "
                f"points with positive {ax.name!r} (it holds {e[win].tolist()[:5]}...)"
            )
        x = as_float(image)
        X = x.reshape(-1, ax.size)
        y = X[:, win].astype(np.float64)
        ok = np.isfinite(y) & (y > 0)
        w = ok.astype(np.float64)
        ly = np.log(np.where(ok, y, 1.0)) * w
        le = np.log(e[win])
        sw = w.sum(axis=1)
        sx = w @ le
        sxx = w @ (le * le)
        sy = ly.sum(axis=1)
        sxy = ly @ le
        den = sw * sxx - sx * sx
        good = (sw >= 2) & (den > 1e-12 * np.maximum(sw * sxx, 1e-300))
        den = np.where(good, den, 1.0)
        slope = np.where(good, (sw * sxy - sx * sy) / den, 0.0)
        icpt = np.where(good, (sy - slope * sx) / np.where(good, sw, 1.0), -np.inf)
        pos = e > 0
        loge = np.log(np.where(pos, e, 1.0))
        with np.errstate(over="ignore"):
            bg = np.exp(icpt[:, None] + slope[:, None] * loge[None, :])
        bg[:, ~pos] = 0.0
        out = X - bg
        if self.zero_fill:
            out[:, e < e[win].min()] = 0.0
        if self.clip:
            np.maximum(out, 0.0, out=out)
        n_bad = int((~good).sum())
        if n_bad:
            _logger.warning(
                "PowerLawBackground: %d pixel(s) without a fit in %s (background left at 0)",
                n_bad,
                self.fit_range,
            )
        r = -slope[good]
        info = {"r_median": float(np.median(r)) if r.size else None, "n_failed": n_bad}
        data = out.reshape(image.shape).astype(x.dtype, copy=False)
        return Out(data, list(image.spatial_axes), list(image.signal_axes), None, info)


def solve_pentadiagonal(a: np.ndarray, b: np.ndarray, c: np.ndarray, r: np.ndarray) -> Any:
    """Solve many symmetric positive-definite pentadiagonal systems at once (LDL^T).

    Parameters
    ----------
    a : ndarray (n, m)
        Main diagonals, one column per system.
    b : ndarray (n - 1,) or (n - 1, m)
        First off-diagonals; ``c`` (n - 2,) or (n - 2, m): second off-diagonals.
    r : ndarray (n, m)
        Right-hand sides.

    Returns
    -------
    ndarray (n, m)
    """
    n, m = a.shape
    b = np.broadcast_to(b.reshape(n - 1, -1), (n - 1, m)) if n > 1 else np.zeros((0, m))
    c = np.broadcast_to(c.reshape(max(n - 2, 0), -1), (max(n - 2, 0), m))
    d = np.empty((n, m))
    l1 = np.zeros((max(n - 1, 0), m))
    l2 = np.zeros((max(n - 2, 0), m))
    for i in range(n):
        di = a[i].copy()
        if i >= 1:
            di -= l1[i - 1] ** 2 * d[i - 1]
        if i >= 2:
            di -= l2[i - 2] ** 2 * d[i - 2]
        d[i] = di
        if i < n - 1:
            t = b[i] - l2[i - 1] * l1[i - 1] * d[i - 1] if i >= 1 else b[i]
            l1[i] = t / di
        if i < n - 2:
            l2[i] = c[i] / di
    y = np.empty((n, m))
    for i in range(n):
        yi = r[i].astype(np.float64, copy=True)
        if i >= 1:
            yi -= l1[i - 1] * y[i - 1]
        if i >= 2:
            yi -= l2[i - 2] * y[i - 2]
        y[i] = yi
    z = y / d
    x = np.empty((n, m))
    for i in range(n - 1, -1, -1):
        xi = z[i].copy()
        if i <= n - 2:
            xi -= l1[i] * x[i + 1]
        if i <= n - 3:
            xi -= l2[i] * x[i + 2]
        x[i] = xi
    return x


def als_baseline(Y: np.ndarray, lam: float = 1e5, p: float = 0.01, n_iter: int = 10) -> Any:
    """Asymmetric least squares baselines (Eilers & Boelens 2005) of the rows of ``Y``.

    Minimizes ``sum_i w_i (y_i - z_i)^2 + lam sum_i (Delta^2 z_i)^2`` with ``w_i = p`` where
    ``y_i > z_i`` and ``1 - p`` elsewhere, re-weighting ``n_iter`` times; all rows are
    solved together with a banded LDL^T factorization.

    Parameters
    ----------
    Y : ndarray (spectra, channels)
    lam, p, n_iter : see :class:`BaselineALS`.

    Returns
    -------
    ndarray (spectra, channels), float64
    """
    Y = np.asarray(Y, dtype=np.float64)
    n = Y.shape[1]
    if n < 3:
        raise ValueError(f"BaselineALS needs at least 3 channels, the spectra have {n}")
    ones = np.ones(n - 2)
    dtd0 = np.convolve(ones, [1.0, 4.0, 1.0])  # diagonals of D^T D, D the 2nd difference
    dtd1 = np.convolve(ones, [-2.0, -2.0])
    dtd2 = ones
    yt = Y.T  # (n, m): one system per column
    w = np.ones_like(yt)
    z = yt
    for it in range(int(n_iter)):
        z = solve_pentadiagonal(w + lam * dtd0[:, None], lam * dtd1, lam * dtd2, w * yt)
        w_new = np.where(yt > z, p, 1.0 - p)
        if np.array_equal(w_new, w):
            _logger.debug("BaselineALS: weights converged after %d iterations", it + 1)
            break
        w = w_new
    return np.ascontiguousarray(z.T)


@register
@dataclass
class BaselineALS(ImageOp):
    """Subtract an asymmetric least squares baseline (Eilers & Boelens 2005) per spectrum.

    A smooth baseline ``z`` is fitted below each spectrum (points above it count with
    weight ``p``, points below with ``1 - p``) and subtracted: fluorescence under Raman
    peaks, slowly varying backgrounds.

    Parameters
    ----------
    lam : float
        Smoothness (penalty on second differences, per channel index): 1e2 - 1e9, larger
        is stiffer.
    p : float
        Asymmetry, 0 < p < 1 (0.001 - 0.05 for positive peaks).
    n_iter : int
        Re-weighting iterations (stops early when the weights no longer change).
    clip : bool
        Clip negative results to 0 (for NMF).

    Notes
    -----
    Axes unchanged; works on spectra (one signal axis), all pixels solved together.
    """

    op = "baseline_als"
    streaming = "pixel"
    lam: float = 1e5
    p: float = 0.01
    n_iter: int = 10
    clip: bool = False

    def __post_init__(self) -> None:
        if not 0 < float(self.p) < 1:
            raise ValueError(f"BaselineALS: p must be in (0, 1), got {self.p!r}")
        if float(self.lam) <= 0:
            raise ValueError(f"BaselineALS: lam must be positive, got {self.lam!r}")
        if int(self.n_iter) < 1:
            raise ValueError(f"BaselineALS: n_iter must be >= 1, got {self.n_iter!r}")

    def _transform(self, image: SpectralImage) -> Out:
        need_signal_ndim(self, image, 1)
        x = as_float(image)
        X = x.reshape(-1, image.n_channels)
        z = als_baseline(X, float(self.lam), float(self.p), int(self.n_iter))
        out = X - z
        if self.clip:
            np.maximum(out, 0.0, out=out)
        data = out.reshape(image.shape).astype(x.dtype, copy=False)
        return Out(data, list(image.spatial_axes), list(image.signal_axes))
