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

In float32 the objective of a good fit is a small difference of large sums (the Frobenius
fit by the Gram identity: ``||X||^2 - 2 <A^T X, S> + <A^T A, S S^T>``), accurate only to
:func:`objective_noise`; where that exceeds ``tol`` times the objective, a change below
``tol`` says nothing, and the loop also asks the endmembers (:func:`factor_settled`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["converged", "factor_settled", "gains_little", "judge_noise", "objective_noise"]

_FLOOR = 1e-300
#: a factor has settled when it moved by at most this times sqrt(tol) (relative)
SETTLED = 0.1


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


def _float32_noise(p: Any) -> float:
    """A few float32 epsilons (``16 eps``) when the work is float32, else 0 (float64 is
    far below any ``tol``): the factor of the data's scale in the noises below."""
    be = p.be
    if be.dtype == be.acc_dtype or "64" in str(be.dtype):
        return 0.0
    return 16.0 * float(np.finfo(np.float32).eps)


def objective_noise(p: Any) -> float:
    """The rounding noise of a fit's objective (absolute): a few float32 epsilons of the
    data's energy (for the l2,1 loss: of its l2,1 norm ``sum_i w_i ||x_i||``) when the
    work is float32, else 0.  The stop rule's allowance; for a beta-divergence this is far
    above the objective's actual rounding (see :func:`judge_noise`)."""
    eps = _float32_noise(p)
    if not eps:
        return 0.0
    return eps * (p.data.norm21() if p.loss.reweights_pixels else 0.5 * float(p.data.norm2()))


def judge_noise(p: Any) -> float:
    """The rounding noise within which the extrapolation (:mod:`unmix.engine._extrapolate`)
    cannot tell a rise: :func:`objective_noise` for Frobenius and l2,1, and ``16 eps
    ||X||_F`` (float32 work) for the other beta-divergences, summed entry by entry, whose
    rounding adds up like independent errors.  With ``||X||^2 / 2`` there (far above a
    KL objective) every extrapolated step of the XRD map was "within the noise" and the
    KL objective climbed 2 % in 60 steps."""
    if p.loss.is_frobenius or p.loss.reweights_pixels:
        return objective_noise(p)
    eps = _float32_noise(p)
    return eps * float(p.data.norm2()) ** 0.5 if eps else 0.0


def factor_settled(before: Any, after: Any, tol: float, be: Any) -> bool:
    """True when ``||after - before|| <= SETTLED sqrt(tol) ||after||`` (in float64)."""
    if before is None:
        return False
    xp = be.xp
    a, b = be.acc(after), be.acc(before)
    change = float(xp.sqrt(xp.sum((a - b) ** 2)))
    return change <= SETTLED * tol**0.5 * max(float(xp.sqrt(xp.sum(a * a))), 1e-300)
