"""The stopping rules, each written once.

Two rules decide when iterating stops:

- the **outer rule** (:func:`converged`): a fit (or each of a batch of fits) has converged
  when its objective changed by at most ``tol`` times its scale since the last iteration,
  ``|f_prev - f| <= tol * max(scale, 1e-300)`` with ``scale = |f_prev|`` by default; for
  the solvers that crawl (``Solver.extrapolates_after``) the fall still to come,
  estimated from the last two (:func:`remaining_fall`), must be within it too;
- the **inner rule** (:func:`gains_little`) of accelerated HALS and MU (Gillis & Glineur
  2012): the cheap inner updates that reuse one pass's products are repeated while they
  still gain, i.e. until a repeat changes the factor by at most ``delta`` times the first
  repeat's change (squared norms: ``change <= delta**2 * first``), or the first changed
  nothing.

Both take NumPy arrays as well as numbers, so batched fits (rank selection, hierarchy
splits) apply the same rule to every model at once.

In float32 the objective of a good fit is a small difference of large sums (the Frobenius
fit by the Gram identity: ``||X||^2 - 2 <A^T X, S> + <A^T A, S S^T>``; a divergence
summed entry by entry), accurate only to :func:`objective_noise`; where that exceeds
``tol`` times the objective, a change below ``tol`` says nothing, and the loop also asks
the endmembers (:func:`factor_settled`), the sum of the changes since the first small one,
and, for Frobenius, the objective evaluated entry by entry before it stops
(``unmix.engine._judge._descends_exactly``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "FALL_WINDOW",
    "NO_NOISE",
    "PATIENCE",
    "RoundingNoise",
    "converged",
    "factor_settled",
    "gains_little",
    "objective_noise",
    "remaining_fall",
]

_FLOOR = 1e-300
#: small changes in a row that stop a solver that is not monotone
PATIENCE = 3
#: iterations a window of :func:`remaining_fall`'s falls spans in float32 work
FALL_WINDOW = 4
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


def remaining_fall(last: float, fall: float) -> float:
    """The objective's fall still to come if its falls keep shrinking as they did,
    ``fall * q / (1 - q)`` with ``q = fall / last`` (a geometric series, as Aitken's
    estimate of a linearly converging sequence); 0 when it did not fall, ``inf`` when the
    fall did not shrink.  ``last`` and ``fall``: the falls over two windows of equal
    length, the earlier first (one iteration each, or :data:`FALL_WINDOW`).

    A relative change below ``tol`` does not tell a minimum from a slope: KL coordinate
    descent on the EELS map (k 3, the Poisson start) fell 10.7, 7.5, 5.4, ... from
    685,907 and stopped after 4 iterations (a change of 8e-6), 0.19 % above the fit
    it reaches when run on (684,609; the Zn endmember 23 deg away); with this estimate
    (5.4 * 0.72 / 0.28 = 14, 2e-5 of it) it goes on, to within 0.001 %.  On the STM grid
    (25 iterations, 0.27 %, 11 deg) likewise.  Where the fit has converged the falls
    shrink fast and the estimate is about the last fall (planted counts, 16384 x 1024:
    4 iterations either way).
    """
    if fall <= 0:
        return 0.0
    if fall >= last:
        return math.inf
    q = fall / last
    return fall * q / (1.0 - q)


def gains_little(change: float, first: float, delta: float) -> bool:
    """True when an inner repeat should be the last: ``change <= delta**2 * first`` or
    ``first == 0`` (``change`` and ``first`` are squared norms of the factor's change)."""
    return change <= delta * delta * first or first == 0.0


#: float32's machine epsilon (float64 rounding is far below any ``tol``)
EPS32 = float(np.finfo(np.float32).eps)


def _float32_work(p: Any) -> bool:
    """Whether ``p``'s fit computes in float32."""
    be = p.be
    return not (be.dtype == be.acc_dtype or "64" in str(be.dtype))


@dataclass(frozen=True)
class RoundingNoise:
    """The rounding noise of a fit's objective, ``absolute + relative |f|`` at objective
    ``f`` (:meth:`at`); zero for float64 work."""

    absolute: float = 0.0
    relative: float = 0.0

    def at(self, f: float) -> float:
        """The noise of an objective value ``f``."""
        return self.absolute + self.relative * abs(f)


#: float64 work: no noise that matters
NO_NOISE = RoundingNoise()


def objective_noise(p: Any) -> RoundingNoise:
    """The rounding noise of the objective of ``p``'s fit (float32 work; zero otherwise).

    - Frobenius (a small difference of large sums by the Gram identity): ``16 eps`` of
      the data's energy ``||X||^2 / 2``; l2,1: of its l2,1 norm ``sum_i w_i ||x_i||``.
    - The other beta-divergences, summed entry by entry: ``2 eps (||X||_F + |f|)``.  An
      entry's terms are about ``x`` each and their rounding adds up like independent
      errors (``eps ||X||_F``); the sum itself rounds to about ``eps |f|``.  Measured
      (``|f32 - f64|`` of the same factors) on the ten real maps of
      ``benchmarks/bench_constraints.py`` and planted counts up to 1e6 per entry, this
      is 3-20x above the rounding.  ``||X||^2`` there (the Frobenius scale, far above a
      KL objective) made every change "within the noise": the stop waited for the
      endmembers to settle, which they seemed to after 1-8 iterations (Raman, XRD,
      Samson, Moffett; up to 5.8 % above the float64 fit), and every extrapolated step
      was kept, so the objective climbed.
    """
    if not _float32_work(p):
        return NO_NOISE
    if p.loss.reweights_pixels:
        return RoundingNoise(16.0 * EPS32 * p.data.norm21())
    if p.loss.is_frobenius:
        return RoundingNoise(16.0 * EPS32 * 0.5 * float(p.data.norm2()))
    return RoundingNoise(2.0 * EPS32 * float(p.data.norm2()) ** 0.5, 2.0 * EPS32)


def factor_settled(before: Any, after: Any, tol: float, be: Any) -> bool:
    """True when ``||after - before|| <= SETTLED sqrt(tol) ||after||`` (in float64)."""
    if before is None:
        return False
    xp = be.xp
    a, b = be.acc(after), be.acc(before)
    change = float(xp.sqrt(xp.sum((a - b) ** 2)))
    return change <= SETTLED * tol**0.5 * max(float(xp.sqrt(xp.sum(a * a))), 1e-300)
