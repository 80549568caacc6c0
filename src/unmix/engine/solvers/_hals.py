"""Accelerated HALS (Cichocki & Phan 2009; Gillis & Glineur 2012).

Objective: weighted Frobenius (see :mod:`unmix.engine.solvers._frobenius`) plus penalties.  Each
column of ``A_b`` (and row of ``S``) is minimized exactly in turn - a coordinate Newton
step on the quadratic ``1/2 a^T G a - p^T a`` plus each penalty's local majorizer - and
clipped to its separable constraints (non-negativity, bounds, fixed entries).  The
sweeps over a block are repeated while they still gain (``delta = 0.1`` rule of Gillis &
Glineur) because ``X_b S^T`` costs far more than a sweep.  Every step minimizes a
majorizer of the objective, so the objective never increases.
"""

from __future__ import annotations

from typing import Any

from ...executors.base import Block, Executor
from .._problem import Problem
from ..kernels import hals_pass, resolve
from ._base import Solver, StepOut, register
from ._frobenius import fit_of, frobenius_pass, gram_A
from ._sweeps import FactorParts, PenaltyRows, endmember_sweeps, hals_sweeps

__all__ = ["HALS"]


@register
class HALS(Solver):
    """Hierarchical alternating least squares with Gillis-Glineur acceleration.

    Options
    -------
    inner_max : int
        Most repeated sweeps over a block's maps (and over S) per iteration (default 10).
    inner_delta : float
        Stop repeating once a sweep changes the factor by less than ``delta`` times the
        first sweep's change (default 0.1).
    kernel : {"auto", "onepass", "blas"}
        Per-block work of the A-update.  ``"onepass"``: compiled numba loops
        (:mod:`unmix.engine.kernels`, ``pip install "unmix[fast]"``) that compute ``X_b S^T``,
        the sweeps and ``A_b^T X_b`` for a block with ``X_b`` in cache - Frobenius loss,
        NumPy X in memory (C-contiguous, float32/float64), no weights or mask, only
        non-negativity (and a scalar L1) on A; a ValueError otherwise.  ``"blas"``: the
        BLAS products of :func:`~unmix.engine.solvers._frobenius.frobenius_pass`.  ``"auto"``
        (default): ``"onepass"`` when numba is installed, the problem qualifies and X has
        at least ``unmix.engine.kernels.AUTO_MIN_ENTRIES`` entries (4 M), else ``"blas"``.  Both
        give the same iterates up to rounding.
    extrapolate : bool
        Start each iteration beyond the last one, along its change, and keep the step
        only if the objective did not rise (Ang & Gillis 2019;
        :mod:`unmix.engine._extrapolate`).  Default False (the default turns it on for
        maps that sum to one, which HALS does not fit).  Several times fewer iterations
        on slowly converging fits (minimum volume, many components), not always to the
        same local minimum as the plain iteration; not with filters.
    """

    name = "hals"
    option_names = frozenset({"inner_max", "inner_delta", "kernel", "extrapolate"})
    extrapolates = True
    separable_A = frozenset({"entries"})  # column updates: entry-wise projections
    separable_S = frozenset({"entries", "rows"})  # row updates: also row-wise ones
    weights = frozenset({"none", "mask", "separable"})
    monotone = True
    reweightable = True

    def setup(self, p: Problem, A: Any, S: Any) -> dict:
        return {
            "onepass": resolve(self.options.get("kernel", "auto"), p, "hals"),
            "xx": p.data.norm2() if p.data.mask is None else 0.0,
            "clip_A": FactorParts(p, "A"),
            "clip_S": FactorParts(p, "S"),
        }

    def step(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> StepOut:
        inner_max = int(self.options.get("inner_max", 10))
        delta = float(self.options.get("inner_delta", 0.1))
        _, G64 = gram_A(p, S)
        mA = p.model("A", A)
        G = p.be.work(G64)
        gram = None if mA.gram is None else p.be.work(mA.gram)
        clip = state["clip_A"]

        def update_block(block: Block, Ab: Any, XSt: Any) -> Any:
            sl = block.slice
            pw = p.data.pw(block)
            At = p.be.xp.asarray(Ab.T, copy=True)  # k x n_b, rows contiguous
            Pt = XSt.T if pw is None else XSt.T * pw.T
            pen = PenaltyRows(gram, _block_T(mA.grad, sl), _block_T(mA.curv, sl), Ab.T)
            project = (lambda row, j: clip.column(row, j, sl)) if not clip.plain else None
            At = hals_sweeps(
                At,
                Pt,
                G,
                be=p.be,
                project=project,
                nonneg=clip.nonneg,
                w=None if pw is None else pw.T,
                pen=pen,
                inner_max=inner_max,
                delta=delta,
            )
            return At.T

        if state.get("onepass"):
            sums = hals_pass(p, A, S, G, executor, self.options)
        else:
            sums = frobenius_pass(p, A, S, executor, update_block)
        S_new = self._update_S(p, S, sums, state) if p.update_S else S
        fit, fit_S = fit_of(p, sums, S_new, S, state["xx"])
        return StepOut(S=S_new, fit=fit, fit_S=fit_S)

    def _update_S(self, p: Problem, S: Any, sums: dict, state: dict) -> Any:
        return endmember_sweeps(
            p,
            S,
            sums,
            state["clip_S"],
            inner_max=int(self.options.get("inner_max", 10)),
            delta=float(self.options.get("inner_delta", 0.1)),
        )


def _block_T(M: Any, sl: slice) -> Any:
    """Rows ``sl`` of a per-pixel array, transposed; scalars and None pass through."""
    if M is None or isinstance(M, (int, float)) or getattr(M, "ndim", 0) == 0:
        return M
    return M[sl, :].T
