"""Extrapolation with restarts between the iterations of a monotone solver.

Ang & Gillis (2019, *Accelerating nonnegative matrix factorization algorithms using
extrapolation*): after a step that lowers the objective, the next step starts beyond the
new point, from ``proj(A_n + beta (A_n - A_{n-1}))`` and ``proj(S_n + beta (S_n -
S_{n-1}))`` (``proj``: the constraints' projection, e.g. the clip at 0 or the simplex;
for endmember constraints that act on whole rows - NoDips, UnitNorm - none: the step
projects every row it updates, and such a projection can cost more than the step).
A step whose objective is above the last accepted one is discarded: the iterate (and the
solver's persistent state: step sizes, duals) goes back to the accepted point, the next
step is a plain one (always kept) and ``beta`` shrinks
by ``ETA`` (its ceiling drops to the value that failed); each accepted step grows it by
``GAMMA`` up to the ceiling, which itself creeps up by ``GAMMA_BAR`` to 1.  The accepted
objectives therefore never increase (float32 work: not by more than the objective's
rounding noise, within which a rise cannot be told from none), and slow, zig-zagging
alternations (minimum volume, smoothing penalties, many components) take far fewer
passes over ``X``.
Multiplicative updates (MU) extrapolate the logarithms of the factors instead
(``Solver.extrapolates_geometrically``): ``A_n (A_n / A_{n-1})^beta``, entry by entry
where both are positive, so an entry keeps its sign and no step clips one to 0, from
where a multiplicative update could never grow it again (a floor at 10 % of the
accepted value, tried before, stopped MU early: Raman k 3, 24 % above the plain fit).

Used by :mod:`unmix.engine._loop` for solvers that declare ``extrapolates`` (and do not
refuse the problem, :meth:`Solver.extrapolation_refused`), when the fit asks for it
(``solver_options={"extrapolate": True}``) or the default turns it on
(:func:`on_by_default`).  A step that reports the data fit at the previous maps or
endmembers (the gradient solver's divergence steps) is judged by one more evaluation at
its new point.  ``X`` is (pixels,
channels), ``A`` (pixels, k) is updated in place, ``S`` is (k, channels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._problem import Problem
from ._stop import NO_NOISE, RoundingNoise

__all__ = [
    "Extrapolation",
    "extrapolates",
    "extrapolation_for",
    "extrapolation_start",
    "on_by_default",
]

#: checkpoint keys of the state (beside the solver's): scalars, then arrays
SCALARS = ("extrapolation_beta", "extrapolation_beta_max", "extrapolation_f_acc")
ARRAYS = ("extrapolation_dA", "extrapolation_dS")

BETA0, ETA, GAMMA, GAMMA_BAR = 0.5, 1.5, 1.05, 1.01  # Ang & Gillis (2019)


def extrapolation_for(slv: Any, p: Problem, noise: RoundingNoise) -> Extrapolation:
    """A fresh extrapolation of the fit of ``p`` by ``slv``, for the loop to start at the
    iteration :func:`extrapolation_start` names.  ``noise``: the objective's rounding noise
    (:func:`unmix.engine._stop.objective_noise`)."""
    # an entry-wise projection is cheap; a row-wise one (NoDips, UnitNorm, ...) may cost
    # far more than the step, which projects every row it updates anyway - if the step
    # leaves every row feasible (the gradient solver's line search may not move a row)
    rows = any(c.separable != "entries" for c in p.constraints["S"])
    return Extrapolation(
        noise=noise,
        project_S=not rows or not slv.step_projects_S,
        geometric=slv.extrapolates_geometrically,
    )


def extrapolation_start(slv: Any, p: Problem) -> int | None:
    """The iteration from which the fit of ``p`` by ``slv`` extrapolates, None for never:
    1 when the fit asked for it (``solver_options={"extrapolate": True}``) or left it to
    the default and :func:`on_by_default` says so; else the solver's
    ``extrapolates_after`` (a fit still iterating by then is on a slow slope), if any."""
    if slv.extrapolation_refused(p):
        return None
    flag = slv.options.get("extrapolate")
    if flag is not None:
        return 1 if flag else None
    return 1 if on_by_default(p) else slv.extrapolates_after


def extrapolates(slv: Any, p: Problem) -> bool | int:
    """``result.spec["extrapolated"]``: True when the fit extrapolates from its first
    iteration, False when never, the iteration when the default starts it later."""
    start = extrapolation_start(slv, p)
    return False if start is None else True if start == 1 else start


def on_by_default(p: Problem) -> bool:
    """Whether a fit that does not say extrapolates (and whose solver does not refuse
    it): when its maps lie on a simplex (sum-to-one), or a penalty couples the maps of
    pixels (``couples_pixels``: smoothness on the scan grid or a data graph, total
    variation), whose model each step majorizes by a diagonal - steps as slow as Jacobi
    sweeps, or a penalty tightens (``tightens``: each strength's fit is a slow slope;
    nearly orthogonal endmembers on XRD k 6 did not converge in 5,000 HALS iterations,
    and took 1,000-2,250 extrapolated).  A solver may also turn it on
    later by default (``Solver.extrapolates_after``, :func:`extrapolation_start`).

    Measured (``benchmarks/results/extrapolate.md``, ``constraints.md``): on every
    sum-to-one set of the constraint matrix, BPP extrapolated needs 1.1-7.8x less CPU and
    ends at an objective no higher; the plain iteration stops on a slow slope 2.6-9.4 %
    above it on six of them (Raman + minimum volume, Samson, grid smoothness on Samson,
    XRD k 6, Moffett and Jasper).  BPP, ADMM and the gradient solver together, over the
    99 fits of the three Frobenius sum-to-one sets: 22,161 -> 6,437 iterations, 21 -> 0
    stopped at ``max_iter``.  Elsewhere it stays opt-in: on unconstrained maps the plain
    fit is already fast, and extrapolation may pick another of several minima of equal
    error.
    """
    coupled = any(t.couples_pixels and t.lam for t in p.penalties["A"])
    return p.simplex("A") or coupled or bool(p.tightening())


@dataclass
class Extrapolation:
    """The accepted point, its last change and ``beta`` (see the module)."""

    beta: float = BETA0
    beta_max: float = 1.0
    f_acc: float | None = None
    A_acc: Any = None
    S_acc: Any = None
    dA: Any = None  # the last accepted change (None: the next step is a plain one)
    dS: Any = None
    plain: bool = True  # the step now running started from the accepted point
    noise: RoundingNoise = NO_NOISE  # the objective's rounding (float32): no rise within it
    project_S: bool = True  # project the extrapolated endmembers (False: the step does)
    geometric: bool = False  # extrapolate the logarithms (entries keep their sign and 0s)

    def move(self, p: Problem, A: Any, S: Any) -> Any:
        """Put ``A`` (in place) and the returned ``S`` beyond the accepted point."""
        self.plain = self.dA is None
        if self.plain:
            return S
        if self.geometric:
            exp = p.be.xp.exp
            A[:, :] = p.project("A", A * exp(self.beta * self.dA))
            S = S * exp(self.beta * self.dS)
        else:
            A[:, :] = p.project("A", A + self.beta * self.dA)
            S = S + self.beta * self.dS
        return p.project("S", S) if self.project_S else S

    def _change(self, xp: Any, M: Any, M_acc: Any) -> Any:
        """The change from the accepted ``M_acc`` to ``M``: their difference, or (geometric)
        the logarithm of their ratio where both are positive, else 0."""
        if not self.geometric:
            return M - M_acc
        both = (M > 0) & (M_acc > 0)
        return xp.where(both, xp.log(xp.where(both, M, 1.0) / xp.where(both, M_acc, 1.0)), 0.0)

    def judge(self, p: Problem, A: Any, S: Any, obj: float) -> tuple[Any, bool]:
        """Keep the step's point or go back to the accepted one: ``(S, kept)``.

        A plain step is always kept (a monotone solver's own step; its rounding must
        not stall the fit); an extrapolated one only if its objective is not above the
        accepted one by more than the rounding noise of the objective (float32 work: a
        rise within it is not a rise one can tell).
        """
        xp = p.be.xp
        if self.plain or self.f_acc is None or obj <= self.f_acc + self.noise.at(self.f_acc):
            if self.A_acc is not None:
                self.dA = self._change(xp, A, self.A_acc)
                self.dS = self._change(xp, S, self.S_acc)
            self.A_acc, self.S_acc = xp.asarray(A, copy=True), S
            if not self.plain:
                self.beta = min(self.beta_max, GAMMA * self.beta)
                self.beta_max = min(1.0, GAMMA_BAR * self.beta_max)
            # a step kept within the noise does not raise the bar: rises within it
            # cannot add up over many steps
            plain_or_first = self.plain or self.f_acc is None
            self.f_acc = obj if plain_or_first else min(self.f_acc, obj)
            return S, True
        A[:, :] = self.A_acc
        self.dA = self.dS = None
        self.beta_max = self.beta
        self.beta = self.beta / ETA
        return self.S_acc, False

    def to_state(self) -> dict:
        """What a checkpoint needs to go on exactly as the uninterrupted fit (the accepted
        point itself is the checkpoint's iterate)."""
        f_acc = math.nan if self.f_acc is None else self.f_acc
        out = dict(zip(SCALARS, (self.beta, self.beta_max, f_acc), strict=True))
        if self.dA is not None:
            out.update(zip(ARRAYS, (self.dA, self.dS), strict=True))
        return out

    def restore(self, p: Problem, A: Any, S: Any, saved: dict | None) -> None:
        """Continue from a checkpoint's state, its iterate ``(A, S)`` the accepted point."""
        if not saved or SCALARS[0] not in saved:
            return
        self.beta, self.beta_max, f_acc = (float(saved[key]) for key in SCALARS)
        self.f_acc = None if math.isnan(f_acc) else f_acc
        self.A_acc, self.S_acc = p.be.xp.asarray(A, copy=True), S
        if ARRAYS[0] in saved:
            self.dA, self.dS = (p.be.asarray(saved[key]) for key in ARRAYS)
