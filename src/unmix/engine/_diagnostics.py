"""Warnings about a finished restart: collapsed components, drifting scale."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
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


def warn_collapsed(
    dead: list[int],
    k: int,
    revived: list[int],
    *,
    penalties: Sequence[str] = (),
    filters: bool = False,
    kept_without: list[int] | None = None,
) -> None:
    """Warn about components that stayed collapsed (see :mod:`unmix.engine._collapse`).

    ``penalties``: the fit's penalties (labels with strengths); ``filters``: whether
    filters act between iterations; ``kept_without``: the dead components that a fit
    without the penalties keeps (:func:`unmix.engine._collapse.killed_by_penalties`;
    None: not checked).  The advice follows the cause.
    """
    if not dead:
        return
    again = [j for j in dead if j in revived]
    how = " (again, after a restart from the worst-fitted pixels)" if again else ""
    fewer = max(k - len(dead), 1)
    head = f"Components {dead} collapsed{how}: they explain no pixel or copy another component"
    named = ", ".join(penalties)
    if kept_without:
        why = (
            f"; the penalties ({named}) outweigh what the components add to the fit: from "
            f"this point, a fit without the penalties keeps {kept_without}. Lower the "
            f"penalties' strength, or fit k={fewer}."
        )
    elif kept_without is not None:
        why = (
            f", and from this point a fit without the penalties ({named}) loses them too: "
            f"k={k} looks like more than the data support; try k={fewer}."
        )
    elif penalties or filters:
        terms = "a regularization strength" if penalties else "a filter"
        why = f" ({terms} too large, or k larger than the data support: try k={fewer})."
    else:
        why = f" (k larger than the data support: try k={fewer})."
    warnings.warn(head + why, RuntimeWarning, stacklevel=6)
