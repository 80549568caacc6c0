"""Thresholded NMF: a smooth background model, and a sparse target found in its residual.

A rare phase (a precipitate, an inclusion, a contaminant) covering 1 % of a map hardly
changes a k-component NMF of the whole map: its pixels are fitted, badly, by the
background components.  Thresholded NMF (seed 003) separates the two on purpose:

1. *Background*: ``X ~= A_b S_b`` with ``k`` smooth endmembers (each row of ``S_b``
   Gaussian-filtered between iterations, :class:`~unmix.SpectralSmoothing`), so the
   background cannot take on the narrow features of a target, fitted with the robust
   l2,1 loss by default (a target pixel pulls the fit with its residual norm, not its
   square: a strong target does not become a background component).
   The smooth fit is then refined without the filter (started from it), and each pixel
   is scored against both backgrounds, keeping the larger score.
2. *Score*: each pixel's residual norm ``||x_i - a_i S_b||`` (``a_i`` fitted to ``S_b``
   by non-negative least squares), divided by its expected noise (``sqrt(sum_j x_ij)``
   for counts, 1 otherwise), as a robust z-score ``(e_i - median(e)) / (1.4826 MAD(e))``.
3. *Threshold*: pixels with a score above ``threshold`` are the target; they get weight 0
   and the background is fitted again without them (``rounds`` times), so a target does
   not pull the background towards itself.
4. *Target*: the positive residual of the target pixels, ``max(X - A_b S_b, 0)`` there, is
   factorized with ``n_targets`` components; its maps over every pixel come from
   non-negative least squares against the target endmembers.

``X`` is (pixels, channels) throughout, as in :func:`unmix.factorize`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validation import ensure_2d_float
from .blocks import Weights
from .engine import factorize, fit_maps
from .model import SpectralSmoothing
from .preprocessing import is_counts
from .result import Result

__all__ = ["ThresholdedResult", "thresholded_nmf"]

_logger = logging.getLogger(__name__)


@dataclass
class ThresholdedResult:
    """What :func:`thresholded_nmf` found.

    Attributes
    ----------
    background : Result
        The background fit (``k`` smooth endmembers), last round, target pixels weighted 0.
    target : Result or None
        The target fit on the positive residual of the target pixels (None when no pixel
        passed the threshold); ``target.A`` holds the maps of *every* pixel.
    mask : ndarray of bool, (pixels,)
        The target pixels.
    score : ndarray, (pixels,)
        The robust z-score of every pixel's residual (the last round).
    rounds : list of int
        How many pixels were above the threshold after each round.
    """

    background: Result
    target: Result | None
    mask: np.ndarray
    score: np.ndarray
    rounds: list[int] = field(default_factory=list)

    def target_map(self, spatial_shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The target mask folded to ``spatial_shape`` (or flat)."""
        return self.mask if spatial_shape is None else self.mask.reshape(spatial_shape)


def residual_scores(X: np.ndarray, model: np.ndarray, *, noise: str) -> np.ndarray:
    """Robust z-scores of the pixels' residual norms (see the module docstring)."""
    e = np.linalg.norm(X - model, axis=1)
    if noise == "poisson":
        e = e / np.sqrt(np.maximum(np.abs(X).sum(axis=1), 1e-300))
    med = float(np.median(e))
    mad = 1.4826 * float(np.median(np.abs(e - med)))
    return (e - med) / max(mad, 1e-12 * max(abs(med), 1e-300))


def thresholded_nmf(
    X: Any,
    k: int,
    *,
    threshold: float = 5.0,
    rounds: int = 3,
    smooth: float = 1.5,
    n_targets: int = 1,
    noise: str = "auto",
    random_state: int | None = 0,
    **factorize_kw: Any,
) -> ThresholdedResult:
    """Fit a smooth ``k``-component background to ``X`` (pixels, channels) and find the
    pixels its residual does not explain: a rare target.

    Parameters
    ----------
    X : array (pixels, channels)
        Non-negative data in memory.
    k : int
        Background components.
    threshold : float
        Robust z-score of the residual norm above which a pixel is a target pixel.
    rounds : int
        Background fits; each leaves out the target pixels of the previous one.
    smooth : float
        Width (channels) of the Gaussian applied to the background endmembers between
        iterations; 0 for none.  Wider makes the background blind to wider targets but
        leaves more of its own misfit in every pixel (weaker targets are missed).
    n_targets : int
        Components of the target fit.
    noise : {"auto", "poisson", "gaussian"}
        The residual norms are divided by ``sqrt(pixel total)`` for ``"poisson"``;
        ``"auto"``: Poisson when ``X`` holds counts (:func:`unmix.preprocessing.is_counts`).
    random_state : int or None
    **factorize_kw
        Passed to the :func:`unmix.factorize` calls (``loss`` - default ``"l21"`` -,
        ``max_iter``, ``tol``, ``solver``, ``spatial_shape``, ...); ``weights`` and
        ``regularizers`` are the method's own.

    Returns
    -------
    ThresholdedResult

    Objective
    ---------
    Each background round minimizes ``sum_i w_i ||x_i - a_i S_b||`` (l2,1; with
    ``loss="frobenius"`` ``1/2 sum_i w_i ||x_i - a_i S_b||^2``) with ``w_i = 0``
    on the pixels flagged by the previous round (1 elsewhere), ``A_b, S_b >= 0`` and the
    Gaussian filter on ``S_b``; the target fit minimizes ``1/2 ||R_T - A_t S_t||^2`` on
    the positive residual ``R_T`` of the flagged pixels.
    """
    X = np.asarray(ensure_2d_float(X), dtype=float)  # sparse X: the message says convert
    noise = _checked(X, threshold, rounds, noise, factorize_kw)
    factorize_kw = {"loss": "l21", **factorize_kw}
    w = np.ones(X.shape[0])
    counts: list[int] = []
    for r in range(int(rounds)):
        fits = _background(X, k, w, smooth, random_state, factorize_kw)
        scores = [residual_scores(X, _model(X, f), noise=noise) for f in fits]
        score = np.maximum.reduce(scores)  # a target shows against either background
        mask = score > threshold
        bg = fits[-1]
        counts.append(int(mask.sum()))
        _logger.info("thresholded NMF round %d: %d target pixels", r + 1, counts[-1])
        if mask.all():
            raise ValueError(
                "every pixel is above the threshold: raise threshold= or k (the background "
                "model explains no pixel)"
            )
        w = np.where(mask, 0.0, 1.0)
    target = _fit_target(X, _model(X, bg), mask, n_targets, random_state, factorize_kw)
    return ThresholdedResult(bg, target, mask, score, counts)


def _checked(X: np.ndarray, threshold: float, rounds: int, noise: str, kw: dict) -> str:
    """Refuse bad arguments; the noise model to use."""
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (pixels, channels); got shape {X.shape}")
    for key in ("weights", "regularizers"):
        if key in kw:
            raise ValueError(f"thresholded_nmf sets {key}= itself; drop it")
    if noise not in ("auto", "poisson", "gaussian"):
        raise ValueError(f"noise must be 'auto', 'poisson' or 'gaussian'; got {noise!r}")
    if not threshold > 0 or int(rounds) < 1:
        raise ValueError(f"threshold must be > 0 and rounds >= 1; got {threshold}, {rounds}")
    return ("poisson" if is_counts(X) else "gaussian") if noise == "auto" else noise


def _model(X: np.ndarray, fit: Result) -> np.ndarray:
    """``A S`` with the maps of every pixel (weighted 0 too) fitted to ``fit.S``."""
    return np.asarray(fit_maps(X, fit)) @ np.asarray(fit.S)


def _background(
    X: np.ndarray, k: int, w: np.ndarray, smooth: float, seed: Any, kw: dict
) -> list[Result]:
    """The background fits of one round: smooth endmembers (they cannot take on a
    target's narrow features, but misfit the background's own sharp ones), then the same
    fit without the filter, started there (it fits those, but a strong target not yet
    weighted out may pull it)."""
    kw = {"weights": Weights(pixels=w), "random_state": seed, **kw}
    if not smooth:
        return [factorize(X, k, **kw)]
    smoothed = factorize(X, k, regularizers=[SpectralSmoothing(sigma=float(smooth))], **kw)
    return [smoothed, factorize(X, k, **{**kw, "init": (smoothed.A, smoothed.S)})]


def _fit_target(
    X: np.ndarray, model: np.ndarray, mask: np.ndarray, n: int, seed: Any, kw: dict
) -> Result | None:
    """The target components from the residual of the target pixels, with maps of every
    pixel (NNLS against them).  One component starts from the mean residual of the target
    pixels (the noise averages out there; clipping each pixel's residual at 0 first would
    add the positive half of the noise to every channel)."""
    if int(mask.sum()) < max(1, int(n)):
        return None
    R = X - model
    kw = {k: v for k, v in kw.items() if k not in ("spatial_shape", "loss")}
    RT = np.clip(R[mask], 0, None)
    if int(n) == 1:
        s0 = np.clip(R[mask].mean(axis=0), 0, None)[None, :]
        if s0.any():
            a0 = np.clip(R[mask] @ s0.T, 0, None) / float(np.sum(s0 * s0))
            kw["init"] = (a0 + 1e-12, s0)
    fit = factorize(RT, int(n), random_state=seed, **kw)
    fit.A = fit_maps(np.clip(R, 0, None), fit)
    return fit
