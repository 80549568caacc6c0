"""ANLS with block principal pivoting (Kim & Park 2011); fully constrained maps.

Constraints that solve a row's least squares exactly (``solves_rows``: at most ``m``
endmembers per pixel on the maps, per channel on the endmembers) replace that NNLS by
their own solve.

Objective: Frobenius plus penalties with a Gram or diagonal model (L1, L2, spatial
smoothness through its diagonal majorizer, min-volume).  Each half-step solves its
non-negative least-squares subproblem *exactly*::

    A_b = argmin_{A >= 0} 1/2 ||X_b - A S||^2 + r_A(A)   (all rows of a block at once)
    S   = argmin_{S >= 0} 1/2 ||X - A S||^2 + r_S(S)     (all channels at once)

so the objective never increases.  Fully fixed endmembers are moved to the right-hand
side; unit-norm rows are normalized afterwards with the scale moved into ``A`` - exact
while nothing on ``A`` depends on its scale.  With a penalty on ``A`` (L1, L2, ...) the
moved scale would change that penalty, and the point the iterations settle at would not
be stationary (measured: EELS, L1 + unit norm, 3.9 % above HALS, which lowers it 2.7 %
in one iteration from there); the endmembers are then updated row by row instead, each
row exactly minimized on its set given the others (HALS sweeps on ``A^T A`` and
``A^T X``: for unit norm, the normalized positive part of the row's target).

Separable weights (``1/2 sum_ij w_i c_j (X_ij - (A S)_ij)^2``): the channel weights enter
the maps' normal equations (``S diag(c) S^T``), the pixel weights the endmembers' ones
(``A^T diag(w) A``); a pixel's weight scales its whole NNLS and a channel's weight its
whole column of ``S``, so neither moves that subproblem's minimizer unless a penalty on
the same factor is added (refused).  This is what the reweighted l2,1 loss needs.
"""

from __future__ import annotations

from typing import Any

from ..._linalg import nnls_bpp
from ...executors.base import Block, Executor
from ...model import PenaltyModel
from .._problem import Problem
from ._base import Solver, StepOut, register
from ._frobenius import fit_of, frobenius_pass, gram_A
from ._sweeps import FactorParts, endmember_sweeps

__all__ = ["BPP"]


def _linear(m: PenaltyModel, M0: Any, rows: Any = None) -> tuple[Any, Any]:
    """``(g0 - c * M0, c)``: linear term and curvature of the model's non-Gram part.

    ``M0`` is the factor (block) at which the model was formed; per-pixel arrays of the
    model are cut to ``rows`` first.
    """

    def cut(a: Any) -> Any:
        if rows is None or getattr(a, "ndim", 0) < 2:
            return a
        return a[rows, :]

    lin: Any = 0.0
    curv = None
    if m.grad is not None:
        lin = cut(m.grad)
    if m.curv is not None:
        curv = cut(m.curv)
        lin = lin - curv * M0
    return lin, curv


def _row_solvers(p: Problem, target: str = "A") -> list:
    """The constraints on ``target`` that solve each row of its subproblem exactly (a
    pixel's maps; for ``S`` a channel's entries)."""
    return [c for c in p.constraints[target] if c.solves_rows]


#: weight of the sum-to-one equation against the largest diagonal entry of the Gram matrix
SIMPLEX_WEIGHT = 1e6


def _simplex_rows(p: Problem, G: Any) -> tuple[Any, Any]:
    """For maps on a simplex, fully constrained least squares (Heinz & Chang 2001): the
    sum-to-one equation joins the NNLS with weight ``delta`` (``G + delta 11^T`` and the
    right-hand side plus ``delta * total``), so each pixel's NNLS solves the constrained
    problem up to ``1 / delta`` (relative); the projection onto the simplex then makes it
    exact.  Returns ``(G, shift)`` (``shift`` None without a simplex)."""
    totals = [c.row_sum for c in p.constraints["A"] if c.simplex_rows]
    if not totals:
        return G, None
    be, xp = p.be, p.be.xp
    delta = SIMPLEX_WEIGHT * max(float(xp.max(xp.linalg.diagonal(G))), be.tiny)
    ones = xp.ones((p.k, p.k), dtype=be.acc_dtype, device=be.device)
    return G + delta * ones, delta * float(totals[0])


@register
class BPP(Solver):
    """Alternating non-negative least squares, each subproblem solved exactly.

    Options
    -------
    extrapolate : bool
        Extrapolation with restarts between iterations, as for HALS
        (:mod:`unmix.engine._extrapolate`).  Default: on when the maps sum to one
        (and no filter is set; the plain iteration stops on a slow slope there, up to
        9 % above the extrapolated fit), else off.
    """

    name = "bpp"
    option_names = frozenset({"extrapolate"})
    extrapolates = True
    weights = frozenset({"none", "mask", "separable"})
    needs_nonneg = True
    monotone = True
    reweightable = True

    def accepts(self, c: Any, target: str) -> bool:
        """Exact NNLS: the non-negative orthant; on the maps also a simplex (fully
        constrained least squares); on the endmembers whole pinned rows (moved to the
        right-hand side) and scale constraints (unit norm, moved into A)."""
        if target == "A":
            return c.is_orthant or c.simplex_rows or c.solves_rows
        return c.is_orthant or c.fixed() is not None or c.rescales or c.solves_rows

    def problems(self, p: Problem) -> list[str]:
        """The base checks, plus: separable weights only where they leave each
        subproblem's minimizer alone (a pixel's weight scales its whole NNLS, a channel's
        weight its whole column), i.e. not together with penalties on that factor."""
        out = super().problems(p)
        if not p.pinned_whole_rows():
            out.append("partly fixed endmembers (FixedEndmembers with mask)")
        if len(_row_solvers(p)) > 1 or (_row_solvers(p) and p.simplex("A")):
            out.append("more than one constraint solving the rows of A exactly")
        if len(_row_solvers(p, "S")) > 1:
            out.append("more than one constraint solving the channels of S exactly")
        if p.pixel_weighted and any(t.lam for t in p.penalties["A"]):
            out.append("pixel weights together with penalties on A")
        if p.data.channel_w is not None and any(t.lam for t in p.penalties["S"]):
            out.append("channel weights together with penalties on S")
        return out

    def setup(self, p: Problem, A: Any, S: Any) -> dict:
        return {"xx": p.data.norm2() if p.data.mask is None else 0.0}

    def step(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> StepOut:
        be = p.be
        _, G = gram_A(p, S)
        mA = p.model("A", A)
        if mA.gram is not None:
            G = G + mA.gram

        G, shift = _simplex_rows(p, G)

        rows_solver = (_row_solvers(p) or [None])[0]

        def update_block(block: Block, Ab: Any, XSt: Any) -> Any:
            lin, curv = _linear(mA, Ab, block.slice)
            rhs = be.acc(XSt - lin)
            if rows_solver is not None:  # e.g. at most m endmembers a pixel
                return be.work(rows_solver.solve_rows(G, rhs, curv))
            if shift is None:
                return be.work(nnls_bpp(G, rhs, be, diag_add=curv))
            return p.project("A", be.work(nnls_bpp(G, rhs + shift, be, diag_add=curv)))

        sums = frobenius_pass(p, A, S, executor, update_block)
        S_new = self._update_S(p, S, sums) if p.update_S else S
        fit, fit_S = fit_of(p, sums, S_new, S, state["xx"])
        normalized = p.rescale_into_maps(A, S_new)
        if fit_S is S_new:
            fit_S = normalized
        return StepOut(S=normalized, fit=fit, fit_S=fit_S)

    @staticmethod
    def _update_S(p: Problem, S: Any, sums: dict) -> Any:
        if p.scale_held_by_penalty():
            return endmember_sweeps(p, S, sums, FactorParts(p, "S"))
        be, xp = p.be, p.be.xp
        H, P = sums["AtA"], sums["AtX"]
        mS = p.model("S", S)
        if mS.gram is not None:
            H = H + mS.gram
        lin, curv = _linear(mS, S)
        P = P - be.acc(lin * xp.ones_like(S))
        free = p.free_rows()
        if len(free) == 0:
            return S
        fixed_rows = [j for j in range(p.k) if j not in free]
        idx = xp.asarray(free, device=be.device)
        Hff = xp.take(xp.take(H, idx, axis=0), idx, axis=1)
        rhs = xp.take(P, idx, axis=0)
        if fixed_rows:
            jdx = xp.asarray(fixed_rows, device=be.device)
            Hfx = xp.take(xp.take(H, idx, axis=0), jdx, axis=1)
            rhs = rhs - Hfx @ be.acc(xp.take(S, jdx, axis=0))
        cT = None if curv is None else be.acc(xp.take(curv, idx, axis=0)).T
        solver = (_row_solvers(p, "S") or [None])[0]  # e.g. one endmember a channel
        if solver is not None:
            sol = solver.solve_rows(Hff, rhs.T, cT).T
        else:
            sol = nnls_bpp(Hff, rhs.T, be, diag_add=cT).T
        S_new = xp.asarray(S, copy=True)
        S_new[idx, :] = be.work(sol)
        return S_new
