"""The robust l2,1 loss by iteratively reweighted least squares (majorize-minimize).

Objective (pixel weights ``w_i``; channel weights and the mask inside each norm)::

    sum_i w_i ||x_i - a_i S||_2  +  penalties,   subject to the constraints

At the current residual norms ``r0_i``, ``||r|| <= ||r||^2 / (2 r0) + r0 / 2`` (equal at
``||r|| = r0``), so::

    sum_i w_i ||r_i||  +  pen  <=  1/2 sum_i (w_i / r0_i) ||r_i||^2  +  pen  +  const

and one iteration is one step of a weighted Frobenius solver on the right-hand side: the
data's pixel weights times ``1 / max(r0_i, eps)`` (:meth:`PixelData.with_pixel_weights`).
Where that step does not increase its weighted Frobenius objective (``hals``, ``mu``,
``bpp``: monotone) the l2,1 objective does not increase either; ``admm`` is not a descent
method and is only approximately monotone.  ``eps = floor * sum_i w_i ||x_i|| / sum_i w_i``
(:class:`unmix.model._losses.L21`, ``floor = 1e-6``): a pixel fitted closer than ``eps``
is held to the Huber smoothing of the norm there, whose majorizer this is exactly, at most
``eps / 2`` above the norm.

After the inner step one more pass computes every pixel's residual norm at the new
iterate: their weighted sum is the l2,1 value recorded in the history (exact, so ``tol``
stops on it) and their inverses are the weights of the next step.  An iteration costs the
inner solver's pass plus that one.  The inner solver's state that depends on the weights
(``xx``, the weighted ``||X||^2`` of the Gram identity) is set up anew after every
reweighting, from per-pixel norms of ``X`` cached once; its persistent state (ADMM's dual
variables) carries over.

Solvers take the loss when they declare :attr:`~unmix.engine.solvers.Solver.reweightable`
(``hals``, ``mu``, ``bpp``, ``admm``) and take the pixel weights it implies; not with the
compressed phase (``compress=``), the one-pass kernels (``kernel="onepass"``: no weights)
or a link.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._linalg import svd_blocks
from ..blocks import PixelData
from ..executors.base import Block, Executor
from ..model import Frobenius
from ._problem import Problem
from .solvers import Solver, StepOut

logger = logging.getLogger("unmix")

__all__ = [
    "TRIM",
    "Reweighted",
    "floor_of",
    "inlier_bound",
    "l21_fit",
    "residual_norms",
    "trimmed_svd",
]

#: the state key of the reweighting (not persistent: the weights follow from the iterate)
_KEY = "irls"


def residual_norms(
    p: Problem, A: Any, S: Any, executor: Executor | None = None, view: PixelData | None = None
) -> tuple[Any, float]:
    """Every pixel's residual norm ``||x_i - a_i S||`` and the l2,1 value (one pass).

    Parameters
    ----------
    p : Problem
        Its loss reweights the pixels (:class:`unmix.model._losses.L21`).
    A, S : arrays (pixels, k), (k, channels)
    executor : Executor, optional
        Default: the data's.
    view : PixelData, optional
        Where to read ``X`` (a reweighted copy of ``p.data``, sharing its blocks); the
        pixel weights are always ``p.data``'s.

    Returns
    -------
    norms : array (pixels, 1)
        ``sqrt(sum_j c_j M_ij (X - A S)_ij^2)`` in the accumulation dtype (this process's
        pixels).
    value : float
        ``sum_i w_i norms_i`` over all processes.
    """
    be, xp = p.be, p.be.xp
    data = view if view is not None else p.data
    norms = xp.zeros((data.n_pixels, 1), dtype=be.acc_dtype, device=be.device)
    acc = None if be.dtype == be.acc_dtype else be.acc  # float32: sum the squares in float64

    def kernel(block: Block) -> dict:
        sl = block.slice
        Y = A[sl, :] @ S
        r = p.loss.row_norms(data.x(block), Y, data.entry_w(block), xp=xp, acc=acc, overwrite=True)
        norms[sl, :] = be.acc(r)
        pw = p.data.pw(block)
        return {"fit": xp.sum(r if pw is None else r * be.acc(pw))}

    sums = (executor or data.executor).map_reduce(kernel, data.blocks)
    return norms, float(sums["fit"])


def l21_fit(p: Problem, A: Any, S: Any) -> float:
    """The l2,1 data-fit ``sum_i w_i ||x_i - a_i S||`` at ``(A, S)`` (one pass)."""
    return residual_norms(p, A, S)[1]


def floor_of(p: Problem) -> float:
    """``eps`` of the weights: ``floor`` times the data's weighted mean pixel norm."""
    mean = p.data.norm21() / max(p.data.weight_total(), 1e-300)
    return p.loss.floor * mean if mean > 0 else 1.0


#: an outlier pixel of an l2,1 fit: its residual norm exceeds this many times the mean
#: over the other pixels (:func:`inlier_bound`); left out of the SVD start and of the
#: pixels that restart a collapsed component
TRIM = 3.0
#: most rounds of trimming
TRIM_ROUNDS = 5


def trimmed_svd(p: Problem, k: int, rng: Any) -> tuple[Any, Any, Any]:
    """The leading ``k`` singular triplets of ``X`` without its outlier pixels.

    The NNDSVD starts of an l2,1 fit: a least-squares SVD is ruled by the very outliers
    the loss discounts (on the EELS map with 3 % spiked pixels its leading directions
    are the spikes).  From the SVD of ``X``, the pixels whose residual norm to the
    rank-``k`` subspace exceeds :func:`inlier_bound` are left out and the SVD is taken
    again, until the kept set stays (at most :data:`TRIM_ROUNDS` rounds).  Returns
    ``(U, s, Vt)``, ``U`` zero on the pixels left out (an outlier's projection would sway
    the NNDSVD's choice of signs; NNDSVDa fills their maps with the data-scale constant).
    Without outliers this is the plain SVD; with a mask: the plain SVD.
    """
    data, be, xp = p.data, p.be, p.be.xp
    U, s, Vt = data.svd(k, rng)
    if data.mask is not None:
        return U, s, Vt
    keep = xp.ones((data.n_pixels, 1), dtype=be.dtype, device=be.device)
    for _ in range(TRIM_ROUNDS):
        r = _subspace_residuals(data, Vt)
        new = be.work(xp.astype(r <= inlier_bound(data, r), be.acc_dtype))
        if float(data.reduce(float(xp.sum(xp.abs(new - keep))))) == 0.0:
            break
        keep = new
        view = data.with_pixel_weights(keep).weighted_view()
        U, s, Vt = svd_blocks(view, k, be, rng=rng, n_iter=2, executor=data.executor)
    dropped = int(data.reduce(float(xp.sum(1.0 - keep))))
    if dropped:
        logger.info("l2,1 start: %d outlier pixels left out of the SVD", dropped)
        U = U * keep  # exactly 0 (the QR leaves rounding there)
    return U, s, Vt


def inlier_bound(data: PixelData, norms: Any) -> float:
    """The largest residual norm of an inlier pixel: :data:`TRIM` times the mean norm of
    the pixels within the bound (the fixed point from the mean over all pixels).

    ``norms`` (pixels, 1) are this process's pixels' residual norms; the means are over
    all processes.  Infinite when every norm is 0.
    """
    xp = data.be.xp
    bound = float("inf")
    for _ in range(100):  # the bound only decreases; a few rounds in practice
        kept = xp.astype(norms <= bound, norms.dtype)
        total, count = data.reduce(np.array([float(xp.sum(norms * kept)), float(xp.sum(kept))]))
        new = TRIM * float(total) / max(float(count), 1.0)
        if new <= 0.0:
            return float("inf")
        if new >= bound:
            break
        bound = new
    return bound


def _subspace_residuals(data: PixelData, Vt: Any) -> Any:
    """``||x_i - x_i V V^T||`` of every pixel, a column (``V = Vt^T``, orthonormal)."""
    be, xp = data.be, data.be.xp
    parts = []
    for b in data.blocks:
        R = data.x_times(b, Vt.T) @ Vt
        R -= data.x(b)
        parts.append(xp.sqrt(xp.vecdot(be.acc(R), be.acc(R), axis=-1)))
    if not parts:
        return xp.zeros((0, 1), dtype=be.acc_dtype, device=be.device)
    return xp.concat(parts, axis=0)[:, None]


@dataclass
class _Weights:
    """The reweighting in a solver's state: the weighted Frobenius problem of the next
    step and the floor of the weights."""

    problem: Problem
    eps: float


class Reweighted(Solver):
    """A reweightable solver run by iteratively reweighted least squares (see the module).

    Takes the inner solver's name, options, monotonicity and persistent state, so the
    loop, the spec and checkpoints see the solver the caller chose.

    Parameters
    ----------
    inner : Solver
        A solver with :attr:`~unmix.engine.solvers.Solver.reweightable`.
    """

    def __init__(self, inner: Solver) -> None:
        if not inner.reweightable or inner.one_shot:
            raise ValueError(f"solver {inner.name!r} cannot be reweighted (l2,1 loss).")
        if inner.options.get("kernel") == "onepass":
            raise ValueError(
                "kernel='onepass' does not run loss='l21': its pixel weights change every "
                "iteration and the one-pass kernels take no weights; use kernel='blas' "
                "or 'auto'."
            )
        self.inner = inner
        self.options = inner.options
        self.name = inner.name
        self.monotone = inner.monotone
        self.persistent = inner.persistent

    def problems(self, p: Problem) -> list[str]:
        return self.inner.problems(p)

    def setup(self, p: Problem, A: Any, S: Any) -> dict:
        state: dict = {}
        self._reweight(p, A, S, state, floor_of(p), p.data.executor)
        return state

    def regauge(self, state: dict, d: Any) -> None:
        self.inner.regauge(state, d)

    def step(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> StepOut:
        eps = state[_KEY].eps
        if p.filters["A"] or p.filters["S"]:  # filters moved the iterate since the weights
            self._reweight(p, A, S, state, eps, executor)
        out = self.inner.step(state[_KEY].problem, A, S, state, executor)
        fit = self._reweight(p, A, out.S, state, eps, executor)
        return StepOut(S=out.S, fit=fit, fit_S=out.S)

    def _reweight(
        self, p: Problem, A: Any, S: Any, state: dict, eps: float, executor: Executor
    ) -> float:
        """Weights at ``(A, S)`` into ``state`` (the inner solver's non-persistent state set
        up anew for them); returns the l2,1 value there."""
        view = state[_KEY].problem.data if _KEY in state else None
        norms, fit = residual_norms(p, A, S, executor, view)
        factors = p.loss.pixel_weights(norms, eps, be=p.be)
        q = dataclasses.replace(p, loss=Frobenius(), data=p.data.with_pixel_weights(factors))
        keep = self.inner.persistent
        for key, value in self.inner.setup(q, A, S).items():
            if key not in keep or key not in state:
                state[key] = value
        state[_KEY] = _Weights(q, eps)
        return fit
