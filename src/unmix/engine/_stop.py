"""The stopping rules, each written once.

Two rules decide when iterating stops:

- the **outer rule** (:func:`converged`): a fit (or each of a batch of fits) has converged
  when its objective changed by at most ``tol`` times its scale since the last iteration,
  ``|f_prev - f| <= tol * max(scale, 1e-300)`` with ``scale = |f_prev|`` by default;
- the **inner rule** (:func:`gains_little`) of accelerated HALS and MU (Gillis & Glineur
  2012): the cheap inner updates that reuse one pass's products are repeated while they
  still gain, i.e. until a repeat changes the factor by at most ``delta`` times the first
  repeat's change (squared norms: ``change <= delta**2 * first``), or the first changed
  nothing.

Both take NumPy arrays as well as numbers, so batched fits (rank selection, hierarchy
splits) apply the same rule to every model at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["converged", "gains_little"]

_FLOOR = 1e-300


def converged(prev: Any, obj: Any, tol: float, scale: Any = None) -> Any:
    """True where ``|prev - obj| <= tol * max(scale, 1e-300)`` (``scale`` defaults to ``|prev|``).

    Scalars give a bool, arrays an elementwise boolean array.
    """
    if scale is None:
        scale = np.abs(prev)
    out = np.abs(np.asarray(prev) - np.asarray(obj)) <= tol * np.maximum(scale, _FLOOR)
    return bool(out) if np.ndim(out) == 0 else out


def gains_little(change: float, first: float, delta: float) -> bool:
    """True when an inner repeat should be the last: ``change <= delta**2 * first`` or
    ``first == 0`` (``change`` and ``first`` are squared norms of the factor's change)."""
    return change <= delta * delta * first or first == 0.0
