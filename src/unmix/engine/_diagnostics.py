"""Warnings about a finished fit: collapsed components, drifting scale, no convergence."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import ConvergenceWarning
from ._problem import Problem

__all__ = ["balance", "still_falling", "warn_collapsed", "warn_not_converged", "warn_scale_drift"]

#: most iterations of the window that measures the objective's final slope
SLOPE_WINDOW = 50


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


def still_falling(objective: Any, tol: float) -> tuple[float, int] | None:
    """The objective's mean relative fall an iteration over the fit's last iterations
    (``SLOPE_WINDOW``, at most a tenth of them) and that window, when it is above ``tol``
    (the stop rule would have counted it as progress); None otherwise.

    ``objective``: the history, entry 0 the start.  The fall is relative to the larger
    of the window's two ends (in absolute value).
    """
    h = np.asarray(objective, dtype=float)
    n = h.size - 1
    if n < 1 or not tol > 0:  # tol 0: the fit was asked to run max_iter iterations
        return None
    w = max(1, min(SLOPE_WINDOW, n // 10))
    first, last = h[-1 - w], h[-1]
    if not (np.isfinite(first) and np.isfinite(last)):
        return None
    rate = (first - last) / max(abs(first), abs(last), 1e-300) / w
    return (float(rate), w) if rate > tol else None


def warn_not_converged(objective: Any, *, max_iter: int, tol: float) -> float | None:
    """Warn (:class:`~unmix.ConvergenceWarning`) that a fit stopped at ``max_iter`` is
    not converged when its objective was still falling (:func:`still_falling`); return
    that mean relative fall an iteration (None when it was not falling)."""
    found = still_falling(objective, tol)
    if found is None:
        return None
    rate, w = found
    warnings.warn(
        f"The fit reached max_iter={max_iter} with its objective still falling: "
        f"{100 * rate * w:.3g} % over the last {w} iterations ({rate:.2g} an iteration, "
        f"tol={tol:g}); it has not converged.  Raise max_iter (CLI: --max-iter "
        f"{4 * max_iter}), or continue from this fit with init=(result.A, result.S).",
        ConvergenceWarning,
        stacklevel=4,
    )
    return rate
