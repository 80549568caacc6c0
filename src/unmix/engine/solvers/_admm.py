"""AO-ADMM (Huang, Sidiropoulos & Liavas 2016): any constraint with a proximal operator.

Objective: Frobenius plus penalties.  Each half-step runs a few ADMM iterations on its
subproblem, e.g. for the maps of block ``b`` with ``G = S S^T + gram + L I`` (``L`` the
Lipschitz bound of the smooth penalties' non-Gram part)::

    A~  = (X_b S^T - g + L A_b + rho (A_b + U_b)) (G + rho I)^-1
    A_b = prox_r(A~ - U_b)          # L1 prox, then projection on the constraints
    U_b = U_b + A_b - A~

with ``rho = tr(G) / k``; the dual variables ``U`` (and ``V`` for ``S``) persist between
outer iterations (warm start).  Constraints: non-negativity, bounds, sum-to-one rows of
``A`` (exact simplex projection), fixed entries, unit-norm or orthonormal rows of ``S``.
ADMM is not a descent method: the objective is tracked but may rise slightly.
"""

from __future__ import annotations

from typing import Any

from ...executors.base import Block, Executor
from .._problem import Problem
from ._base import Solver, StepOut, register
from ._frobenius import fit_of, frobenius_pass, gram_A

__all__ = ["ADMM"]


def _prox_terms(p: Problem, target: str) -> list:
    """The penalties ADMM applies through their proximal operator: the non-smooth ones
    that have one (e.g. L1); the others enter the subproblem through their local model."""
    return [t for t in p.penalties[target] if t.lam and t.has_prox and not t.smooth]


def _prox(p: Problem, target: str, V: Any, step: float) -> Any:
    """The proximal steps (a linear penalty is constant on a simplex: skipped), then the
    projection onto the constraints."""
    for pen in _prox_terms(p, target):
        if not (p.simplex(target) and pen.constant_gradient() is not None):
            V = pen.prox(V, step)
    return p.project(target, V)


def _norm2(M: Any, xp: Any) -> float:
    return float(xp.sum(M * M))


@register
class ADMM(Solver):
    """Alternating optimization with ADMM subproblem solves.

    Options
    -------
    inner : int
        ADMM iterations per subproblem and outer iteration (default 5).
    inner_tol : float
        Relative primal/dual residual that ends the inner loop early (default 1e-2).
    """

    name = "admm"
    option_names = frozenset({"inner", "inner_tol"})
    weights = frozenset({"none", "mask", "separable"})
    persistent = ("U", "V")
    reweightable = True

    def problems(self, p: Problem) -> list[str]:
        out = super().problems(p)
        if p.data.channel_w is not None:
            out.append("channel weights")
        if p.pixel_weighted and any(t.lam for t in p.penalties["A"]):
            out.append("pixel weights together with penalties on A")
        return out

    def setup(self, p: Problem, A: Any, S: Any) -> dict:
        xp = p.be.xp
        return {
            "xx": p.data.norm2() if p.data.mask is None else 0.0,
            "U": xp.zeros_like(A),
            "V": xp.zeros_like(S),
        }

    def _system(self, p: Problem, G: Any, gram: Any, lip: float) -> tuple[Any, float]:
        be, xp = p.be, p.be.xp
        k = p.k
        if gram is not None:
            G = G + gram
        eye = be.eye(k, dtype=be.acc_dtype)
        G = G + lip * eye
        rho = max(float(xp.sum(xp.linalg.diagonal(G))) / k, be.tiny)
        return be.work(xp.linalg.inv(G + rho * eye)), rho

    def step(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> StepOut:
        xp = p.be.xp
        n_inner = int(self.options.get("inner", 5))
        tol2 = float(self.options.get("inner_tol", 1e-2)) ** 2
        _, G = gram_A(p, S)
        mA = p.model("A", A, exclude=_prox_terms(p, "A"))
        Minv, rho = self._system(p, G, mA.gram, mA.lipschitz)
        U = state["U"]

        def update_block(block: Block, Ab: Any, XSt: Any) -> Any:
            sl = block.slice
            F = XSt + mA.lipschitz * Ab
            if mA.grad is not None:
                g = mA.grad
                F = F - (g[sl, :] if getattr(g, "ndim", 0) == 2 else g)
            Ub = U[sl, :]
            for _ in range(n_inner):
                At = (F + rho * (Ab + Ub)) @ Minv
                prev = Ab
                Ab = _prox(p, "A", At - Ub, 1.0 / rho)
                Ub = Ub + Ab - At
                if _norm2(Ab - At, xp) <= tol2 * _norm2(Ab, xp) and _norm2(
                    Ab - prev, xp
                ) <= tol2 * _norm2(Ub, xp):
                    break
            U[sl, :] = Ub
            return Ab

        sums = frobenius_pass(p, A, S, executor, update_block)
        S_new = self._update_S(p, S, sums, state, n_inner, tol2) if p.update_S else S
        fit, fit_S = fit_of(p, sums, S_new, S, state["xx"])
        return StepOut(S=S_new, fit=fit, fit_S=fit_S)

    def _update_S(self, p: Problem, S: Any, sums: dict, state: dict, n_inner: int, tol2: float):
        be, xp = p.be, p.be.xp
        mS = p.model("S", S, exclude=_prox_terms(p, "S"))
        Minv, rho = self._system(p, sums["AtA"], mS.gram, mS.lipschitz)
        F = be.work(sums["AtX"]) + mS.lipschitz * S
        if mS.grad is not None:
            F = F - mS.grad
        V = state["V"]
        S_cur = S
        for _ in range(n_inner):
            St = Minv @ (F + rho * (S_cur + V))
            prev = S_cur
            S_cur = _prox(p, "S", St - V, 1.0 / rho)
            V = V + S_cur - St
            if _norm2(S_cur - St, xp) <= tol2 * _norm2(S_cur, xp) and _norm2(
                S_cur - prev, xp
            ) <= tol2 * _norm2(V, xp):
                break
        state["V"] = V
        return S_cur
