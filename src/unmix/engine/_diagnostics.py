"""Warnings about a finished restart: collapsed components, drifting scale."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .._backend import to_numpy
from ._problem import Problem

__all__ = ["balance", "warn_collapsed", "warn_scale_drift"]


def balance(p: Problem, A: Any, S: Any) -> float:
    """``||A||_F / ||S||_F`` (how the scale is shared between the factors)."""
    xp = p.be.xp
    na = np.sqrt(float(p.data.reduce(float(xp.sum(A * A)))))
    ns = float(xp.sqrt(xp.sum(S * S)))
    return na / ns if ns > 0 else float("inf")


def warn_scale_drift(before: float, after: float) -> None:
    """Warn when ``||A|| / ||S||`` moved by more than 8 decades during the fit."""
    if not (np.isfinite(before) and before > 0 and np.isfinite(after) and after > 0):
        return
    if abs(np.log10(after / before)) > 8:
        warnings.warn(
            f"The factors' scale drifted by 1e{np.log10(after / before):+.0f} (||A|| / ||S||): "
            "a penalty on one factor without a norm constraint on the other is "
            "scale-ambiguous; add UnitNorm() on S (or penalize both factors).",
            RuntimeWarning,
            stacklevel=6,
        )


def warn_collapsed(p: Problem, A: Any, S: Any) -> None:
    """Warn about components whose contribution ||a_j|| ||s_j|| is negligible."""
    xp, be = p.be.xp, p.be
    col = np.asarray(to_numpy(p.data.reduce(xp.sum(be.acc(A * A), axis=0))))
    contrib = np.sqrt(col * np.asarray(to_numpy(xp.sum(be.acc(S * S), axis=1))))
    norm_x = p.data.norm2()
    dead = [int(j) for j in np.nonzero(contrib <= 1e-8 * max(np.sqrt(norm_x), 1e-300))[0]]
    if dead:
        warnings.warn(
            f"Components {dead} collapsed to zero (a regularization strength too large, "
            "or k larger than the data supports).",
            RuntimeWarning,
            stacklevel=6,
        )
