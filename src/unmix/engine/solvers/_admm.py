"""AO-ADMM (Huang, Sidiropoulos & Liavas 2016): any constraint with a proximal operator.

Objective: Frobenius plus penalties.  Each half-step runs a few ADMM iterations on its
subproblem, e.g. for the maps of block ``b`` with ``G = S S^T + gram + L I`` (``L`` the
Lipschitz bound of the smooth penalties' non-Gram part)::

    A~  = (X_b S^T - g + L A_b + rho (A_b + U_b)) (G + rho I)^-1
    A~  = alpha A~ + (1 - alpha) A_b   # over-relaxation (Boyd et al. 2011, 3.4.3)
    A_b = prox_r(A~ - U_b)          # L1 prox, then projection on the constraints
    U_b = U_b + A_b - A~

with ``rho`` the geometric mean of ``tr(G) / k`` and ``sqrt(l_min(G) l_max(G))``
(:func:`_rho`); the dual variables ``U`` (and ``V`` for ``S``) persist between
outer iterations (warm start).  Constraints: non-negativity, bounds, sum-to-one rows of
``A`` (exact simplex projection), fixed entries, unit-norm or orthonormal rows of ``S``.
ADMM is not a descent method: the objective is tracked but may rise slightly.

Bounds on the model (``lower <= A S <= upper``, constraints with ``separable ==
"product"``) are held by splitting the model off: ``Z = A S`` with ``Z`` on the box and a
scaled dual ``W`` (both pixels x channels, kept between iterations), weight ``rho_z``
(option ``rho_product``, default 1, relative to the data term)::

    A_b = argmin 1/2 ||X_b - A_b S||^2 + rho_z/2 ||A_b S - Z_b + W_b||^2 + r(A_b)
          (the inner ADMM above, with X_b S^T + rho_z (Z_b - W_b) S^T and (1 + rho_z) G)
    Z_b = clip(A_b S + W_b);   W_b = W_b + A_b S - Z_b
    S   = argmin 1/2 ||X - A S||^2 + rho_z/2 ||A S - Z + W||^2 + r(S)

(the sums ``A^T X + rho_z A^T (Z - W)`` and ``(1 + rho_z) A^T A`` come from the same pass).
The split holds the bounds at convergence; the constraint's last step makes them exact
(:class:`unmix.model.ProductBounds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...executors.base import Block, Executor
from .._problem import Problem
from ._base import Solver, StepOut, register
from ._frobenius import fit_of, frobenius_pass, gram_A

__all__ = ["ADMM"]

#: default most inner iterations per subproblem, their relative residual tolerance, and
#: the over-relaxation of the inner iterations
INNER, INNER_TOL, RELAX = 50, 1e-3, 1.6


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


def _rho(G: Any, k: int, be: Any, simplex: bool = False) -> float:
    """The ADMM weight of a subproblem with Gram matrix ``G`` (k x k): the geometric mean
    of ``tr(G) / k`` (Huang et al.'s choice, the mean eigenvalue) and ``sqrt(l_min l_max)``
    (the best weight for a quadratic problem, Ghadimi et al. 2015; ``l_min`` floored at
    ``1e-12 l_max``).  On real maps whose endmembers share a large background ``G`` is
    ill-conditioned and ``tr(G) / k`` far above ``l_min``: the inner iterations then crawl
    along the small eigenvalues' directions (XRD, plain NMF: 4.7 % above BPP after 500
    iterations with ``tr(G) / k``, 0.03 % with this weight).  With ``simplex`` (the maps'
    rows sum to a constant, so they never move along ``1``) the eigenvalues are those of
    ``G`` on the complement of ``1``: a background shared by all endmembers makes
    ``G ~ c 11^T + small``, and only the small part matters there."""
    xp = be.xp
    mean = float(xp.sum(xp.linalg.diagonal(G))) / k
    if not bool(xp.all(xp.isfinite(G))):  # a non-finite iterate: the loop reports it
        return mean
    if simplex and k > 1:  # rows on a simplex never move along 1: G on 1's complement
        P = be.eye(k, dtype=G.dtype) - 1.0 / k
        G = P @ G @ P
    ev = xp.linalg.eigvalsh(G)
    if simplex and k > 1:
        ev = xp.sort(ev)[1:]  # the zero eigenvalue of the direction 1
        mean = float(xp.sum(ev)) / (k - 1)
    hi = float(xp.max(ev))
    lo = max(float(xp.min(ev)), 1e-12 * hi)
    return max(float((mean * (lo * hi) ** 0.5) ** 0.5), be.tiny)


def _norm2(M: Any, xp: Any) -> float:
    return float(xp.sum(M * M))


@dataclass(frozen=True)
class _Inner:
    """The inner loop's settings: most iterations, squared relative tolerance, relaxation."""

    n: int
    tol2: float
    relax: float


def _inner_admm(
    p: Problem, target: str, solve: Any, Z: Any, U: Any, rho: float, inner: _Inner
) -> tuple[Any, Any]:
    """ADMM on one subproblem of ``target``: the quadratic step ``x = solve(Z + U)``,
    over-relaxed towards ``Z``, then ``Z = prox(x - U)`` and ``U += Z - x``, until the
    primal and dual residuals fall below the tolerance (relative to ``Z`` and ``U``);
    returns ``(Z, U)``."""
    xp = p.be.xp
    for _ in range(inner.n):
        x = solve(Z + U)
        if inner.relax != 1.0:
            x = inner.relax * x + (1.0 - inner.relax) * Z
        prev = Z
        Z = _prox(p, target, x - U, 1.0 / rho)
        U = U + Z - x
        if _norm2(Z - x, xp) <= inner.tol2 * _norm2(Z, xp) and _norm2(
            Z - prev, xp
        ) <= inner.tol2 * _norm2(U, xp):
            break
    return Z, U


def _clip_model(p: Problem, Y: Any, rows: Any) -> Any:
    """Model rows ``rows`` (pixels, channels) clipped to every bound on the model."""
    for c in p.product_constraints():
        Y = c.project_part(Y, rows, slice(None))
    return Y


def _split_step(p: Problem, Yb: Any, state: dict, sl: slice) -> None:
    """``Z_b = clip(A_b S + W_b)``, ``W_b += A_b S - Z_b`` (in place)."""
    Wb = state["W"][sl, :]
    Zb = _clip_model(p, Yb + Wb, sl)
    state["W"][sl, :] = Wb + Yb - Zb
    state["Z"][sl, :] = Zb


@register
class ADMM(Solver):
    """Alternating optimization with ADMM subproblem solves.

    Options
    -------
    inner : int
        Most ADMM iterations per subproblem and outer iteration (default 50).
    inner_tol : float
        Relative primal/dual residual that ends the inner loop (default 1e-3).
    relax : float
        Over-relaxation ``alpha`` of the inner iterations, in (0, 2) (default 1.6; 1 is
        plain ADMM).  On the real maps of ``benchmarks/results/constraints.md`` it lowers
        the objective reached in 500 iterations (raw Raman with sum-to-one +0.25 % ->
        +0.03 % of BPP) or the iterations to ``tol`` (XRD k 6 with L1: 163 -> 121).
    rho_product : float
        Weight of the model split ``Z = A S`` for bounds on the model, relative to the
        data term (default 1.0; only with such a constraint).
    extrapolate : bool
        Extrapolation with restarts between outer iterations, as for HALS and BPP
        (:mod:`unmix.engine._extrapolate`; not with bounds on the model, whose split
        ``Z`` holds the old product).  Default: on when the maps sum to one (and no
        filter is set), else off.  Samson sum-to-one: 500 iterations (max_iter) plain,
        101 to tol extrapolated, 6 % lower.

    Notes
    -----
    The inner loop runs to ``inner_tol`` on the subproblem, ``inner`` iterations at most:
    a well-conditioned subproblem stops after a few, an ill-conditioned one (endmembers
    sharing a large background, as raw Raman or XRD maps) gets the iterations it needs.
    With 5 iterations and ``1e-2`` (the earlier defaults) the fits of the real maps in
    ``benchmarks/results/constraints.md`` ended up to 8.7x the best objective after 500
    outer iterations (raw Raman, sum-to-one: the alternating fit crosses a long plateau,
    and inexact half-steps cross it slowly); these defaults bring them within 0.3 % at
    1.1-4x the CPU time.
    """

    name = "admm"
    option_names = frozenset({"inner", "inner_tol", "relax", "rho_product", "extrapolate"})
    extrapolates = True
    weights = frozenset({"none", "mask", "separable"})
    separable_A = frozenset({"entries", "rows", "none", "product"})
    persistent = ("U", "V")
    reweightable = True

    def problems(self, p: Problem) -> list[str]:
        out = super().problems(p)
        if p.data.channel_w is not None:
            out.append("channel weights")
        if p.pixel_weighted and any(t.lam for t in p.penalties["A"]):
            out.append("pixel weights together with penalties on A")
        if p.product_constraints() and (p.data.weighted or p.pixel_weighted):
            out.append("bounds on the model A @ S together with weights, a mask or l2,1")
        return out

    def extrapolation_refused(self, p: Problem) -> str:
        if not p.product_constraints():
            return super().extrapolation_refused(p)
        return (
            "cannot be used here: solver='admm' does not extrapolate with bounds on the "
            "model A @ S (its split Z = A S would hold the product of the discarded "
            "point); drop the option"
        )

    def setup(self, p: Problem, A: Any, S: Any) -> dict:
        xp = p.be.xp
        state = {
            "xx": p.data.norm2() if p.data.mask is None else 0.0,
            "U": xp.zeros_like(A),
            "V": xp.zeros_like(S),
        }
        if p.product_constraints():  # the model split: Z = A S on the box, dual W
            state["Z"] = _clip_model(p, A @ S, slice(None))
            state["W"] = xp.zeros_like(state["Z"])
            self.persistent = (*ADMM.persistent, "Z", "W")
        return state

    def regauge(self, state: dict, d: Any) -> None:
        """The scaled duals carry their factor's scale: ``U`` the maps', ``V`` the
        endmembers' (the model's split ``Z``, ``W`` is unchanged)."""
        state["U"] = state["U"] * d[None, :]
        state["V"] = state["V"] / d[:, None]

    def _check_options(self, options: dict) -> None:
        super()._check_options(options)
        relax = float(options.get("relax", RELAX))
        if not 0.0 < relax < 2.0:
            raise ValueError(
                f"solver_options: relax={relax!r} must lie in (0, 2) (1: no relaxation)."
            )

    def _inner(self) -> _Inner:
        o = self.options
        tol = float(o.get("inner_tol", INNER_TOL))
        return _Inner(int(o.get("inner", INNER)), tol * tol, float(o.get("relax", RELAX)))

    def _system(
        self, p: Problem, G: Any, gram: Any, lip: float, simplex: bool = False
    ) -> tuple[Any, float]:
        be, xp = p.be, p.be.xp
        k = p.k
        if gram is not None:
            G = G + gram
        eye = be.eye(k, dtype=be.acc_dtype)
        G = G + lip * eye
        rho = _rho(G, k, be, simplex)
        return be.work(xp.linalg.inv(G + rho * eye)), rho

    def step(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> StepOut:
        inner = self._inner()
        rho_z = float(self.options.get("rho_product", 1.0)) if "Z" in state else 0.0
        _, G = gram_A(p, S)
        mA = p.model("A", A, exclude=_prox_terms(p, "A"))
        Minv, rho = self._system(
            p, (1.0 + rho_z) * G, mA.gram, mA.lipschitz, simplex=p.simplex("A")
        )
        U = state["U"]

        def update_block(block: Block, Ab: Any, XSt: Any) -> Any:
            sl = block.slice
            F = XSt + mA.lipschitz * Ab
            if rho_z:
                F = F + rho_z * ((state["Z"][sl, :] - state["W"][sl, :]) @ S.T)
            if mA.grad is not None:
                g = mA.grad
                F = F - (g[sl, :] if getattr(g, "ndim", 0) == 2 else g)
            Ab, U[sl, :] = _inner_admm(
                p, "A", lambda V: (F + rho * V) @ Minv, Ab, U[sl, :], rho, inner
            )
            if rho_z:
                _split_step(p, Ab @ S, state, sl)
            return Ab

        def split_sums(block: Block, Ab: Any) -> dict:
            sl = block.slice
            return {"AtZ": p.be.acc(Ab.T @ (state["Z"][sl, :] - state["W"][sl, :]))}

        extra = split_sums if rho_z else None
        sums = frobenius_pass(p, A, S, executor, update_block, extra)
        S_new = S
        if p.update_S:
            AtX, AtA = sums["AtX"], sums["AtA"]
            if rho_z:  # the S-step of the split: A^T X + rho_z A^T (Z - W), (1 + rho_z) A^T A
                AtX, AtA = AtX + rho_z * sums["AtZ"], (1.0 + rho_z) * AtA
            S_new = self._update_S(p, S, AtX, AtA, state, inner)
        fit, fit_S = fit_of(p, sums, S_new, S, state["xx"])
        return StepOut(S=S_new, fit=fit, fit_S=fit_S)

    def _update_S(self, p: Problem, S: Any, AtX: Any, AtA: Any, state: dict, inner: _Inner) -> Any:
        mS = p.model("S", S, exclude=_prox_terms(p, "S"))
        Minv, rho = self._system(p, AtA, mS.gram, mS.lipschitz)
        F = p.be.work(AtX) + mS.lipschitz * S
        if mS.grad is not None:
            F = F - mS.grad
        S_new, state["V"] = _inner_admm(
            p, "S", lambda V: Minv @ (F + rho * V), S, state["V"], rho, inner
        )
        return S_new
