"""Warnings about a finished restart: collapsed components, drifting scale."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

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


def warn_collapsed(dead: list[int], k: int, revived: list[int]) -> None:
    """Warn about components that stayed collapsed (see :mod:`unmix.engine._collapse`)."""
    if not dead:
        return
    again = [j for j in dead if j in revived]
    how = " (again, after a restart from the worst-fitted pixels)" if again else ""
    fewer = max(k - len(dead), 1)
    warnings.warn(
        f"Components {dead} collapsed{how}: they explain no pixel or copy another "
        f"component (a regularization strength too large, or k larger than the data "
        f"support: try k={fewer}).",
        RuntimeWarning,
        stacklevel=6,
    )
