"""Alternating projected (Newton-scaled) gradient descent: any loss, link, projection.

Objective::

    F(A, S) = sum_ij W_ij d_beta(X_ij | f((A S)_ij)) + sum_t lam_t r_t(A or S)

with ``d_beta`` the beta-divergence of the loss, ``f`` the link, ``W`` the weights (the
mask included) and ``r_t`` the penalties.  Every iteration is one pass over the pixel
blocks and lowers ``F``: first the maps, then the endmembers (block Gauss-Seidel).

- **Maps.**  In each block, the gradient of pixel ``i``'s objective ``g_i = Gz_i S^T``
  (``Gz = d'_beta(X | Y) f'(Z)``, ``Z = A_b S``, ``Y = f(Z)``, plus the penalties' local
  model, a majorizer row by row) and its curvature ``H_i = S diag(h_i) S^T`` (Gauss-
  Newton: ``h = d''_beta f'(Z)^2``) give a direction ``d_i``: projected Newton
  (Bertsekas 1982: ``-H_FF^{-1} g_F`` on the entries the constraints leave free) where
  the constraints project entry by entry; the Newton step within the simplex's face for
  sum-to-one maps; else the diagonal Newton step ``-g / diag(H)`` (one scale a row where
  the constraints project whole rows, one for the block where they do not separate).
  Each pixel then backtracks along the projection arc ``a(t) = P(a + t d)`` until
  Armijo's condition ``F_i(a(t)) <= F_i(a) + sigma <g_i, a(t) - a>`` holds (``sigma =
  1e-4``; ``t <= 1`` for Newton steps, starting from the pixel's last step, doubled after
  a first-trial success).  Given ``S`` a pixel's objective involves its maps alone, so
  these searches run inside the pass.
- **Endmembers.**  The same direction for ``S`` (a channel a row) is formed from the
  pass's sums at the new maps; the trial point ``P(S + t dS)`` is evaluated during the
  next pass, right after that pass's maps, and each channel (or all of ``S``, where
  constraints or penalties on ``S`` couple the channels) takes it if it passes Armijo's
  test there, or stays (and tries an eighth of the step next).

For the Frobenius loss with the identity link (no full weights) both subproblems are
quadratics known from ``X_b S^T`` and the sums ``A^T X``, ``A^T A``: the pass is HALS's
(:func:`._frobenius.frobenius_pass`) and each factor takes repeated steps of the same
kind on the exact quadratic while they still gain (as accelerated HALS repeats sweeps).

For KL with the identity link and no weights but pixel weights, blocks of counts at most
10 % nonzero are worked on by their nonzeros (:mod:`._gradient_counts`: the same sums, a
few passes over the model instead of dozens of elementwise ones; 4.7x faster on the TEM
EDS map).

A non-identity link's model is trusted where a step moves ``Z`` by at most
:data:`TRUST_Z` (over the link's ``scale``).  Changes of ``F`` are formed as differences
(``log1p``, ``expm1``), so that rounding does not decide the tests near convergence.
Every accepted step lowers the objective: it never increases (up to rounding; filters
act between iterations and are no part of it).
"""

from __future__ import annotations

import warnings
from typing import Any

from ...blocks import is_sparse
from ...executors.base import Block, Executor
from .._problem import Problem
from ._base import Solver, StepOut, register
from ._frobenius import fit_of, frobenius_pass, gram_A
from ._gradient_counts import (
    block_x,
    change_sums,
    curvature_Z,
    divergence_sums,
    grad_maps,
    grad_S,
    left_times,
)
from ._gradient_endmembers import choose_S, free_scale_terms
from ._gradient_steps import (
    T_MAX,
    Majorizer,
    curv_S,
    direction,
    hessian_S,
    inner_steps,
    newton_direction,
    pen_grad,
    pen_value_S,
    project_all,
    project_cols,
    project_rows,
    scaled,
    search_rows,
    separability,
    simplex_newton_direction,
    take_rows,
    transposed,
)

__all__ = ["Gradient"]

#: the smallest model value the gradients see (divergences but Frobenius), relative to
#: the data's mean (their ``1/Y`` would otherwise overflow where a model entry nears 0)
Y_FLOOR = 1e-6
#: projected Newton steps solve a (k, k) system a row: up to this k (the quadratics of
#: Frobenius; the divergences' per-row curvatures cost k^2 products a pass, so fewer)
NEWTON_K_QUAD = 16
NEWTON_K = 6
#: the trust region of a non-identity link: a step may move ``Z = A S`` by at most this
#: over the link's ``scale``.  A logistic's Gauss-Newton model holds within a few units,
#: and where the data are 0 or 1 its objective falls on as ``Z`` grows without bound:
#: unbounded steps would chase that to overflow
TRUST_Z = 4.0
#: most repeated steps on a factor's quadratic a pass, and the gain that ends them (a
#: step that moves a row by at most this times its first, squared norms)
INNER_MAX = 10
INNER_DELTA = 0.1


@register
class Gradient(Solver):
    """Alternating projected Newton-scaled gradient descent with Armijo line searches.

    The solver of non-identity links (e.g. logistic), of divergences with constraints no
    other solver takes (KL with sum-to-one maps) and of new terms: it needs only the
    loss's derivatives, a projection onto each constraint and each penalty's local
    model.  Every iteration is one pass over the data and lowers the objective (see the
    module).

    Options
    -------
    lr : float
        The first trial step, as a multiple of the (diagonal or projected) Newton step
        (default 1.0); each pixel's and channel's steps adapt from there.
    inner_max : int
        Most steps a factor takes a pass where its subproblem is a known quadratic
        (Frobenius loss, identity link; default 10).
    betas : tuple of float
        Accepted for compatibility and ignored, with a ``FutureWarning``: the solver was
        projected Adam, whose moment decay rates they were.
    extrapolate : bool
        Extrapolation with restarts between iterations, as for HALS and BPP
        (:mod:`unmix.engine._extrapolate`; where a step reports the fit at the previous
        maps - divergences, links, entry weights - the loop evaluates it at the new point,
        one more pass).  Default: on when the maps sum to one (and no filter is set),
        else from iteration :attr:`extrapolates_after` (50) on, if the fit is still
        running.  KL + sum-to-one on the raw Raman map: 500 iterations (max_iter) plain,
        222 to tol extrapolated, at an objective 48 % lower.  The switch at 50, on the
        NMF, NMF + L1 and KL sets of the eleven real maps of
        ``benchmarks/bench_constraints.py`` (33 fits): 19 end lower (by up to 0.57 %,
        Jasper), 14 the same, none higher; CPU 0.34-1.75x the plain fit's (Raman 279 -> 97
        iterations, Jasper 424 -> 187; Jasper KL 105 -> 185), 59.0 -> 57.8 s in all
        (``benchmarks/results/kl_extrapolate.md``); ``--loss kl --graph-smooth 0.01`` on
        the EELS map stopped at ``max_iter`` 500, 1 % above the extrapolated fit.
    """

    name = "gradient"
    option_names = frozenset({"lr", "betas", "inner_max", "extrapolate"})
    extrapolates = True
    extrapolates_after = 50
    step_projects_S = False  # a row whose line search takes no step keeps its entries
    betas = "any"
    links = True
    weights = frozenset({"none", "mask", "separable", "full"})
    monotone = True
    persistent = ("tA", "tS", "dS", "has_d", "y_floor", "pullS")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if "betas" in options:
            warnings.warn(
                "solver_options: 'betas' has no effect: solver='gradient' is a descent "
                "method now (not projected Adam); drop it.",
                FutureWarning,
                stacklevel=2,
            )

    def setup(self, p: Problem, A: Any, S: Any) -> dict:
        be = p.be
        floor = be.tiny if p.loss.is_frobenius else max(Y_FLOOR * abs(p.data.mean()), be.tiny)
        lr = float(self.options.get("lr", 1.0))
        quad = p.loss.is_frobenius and p.link.is_identity and p.data.full_w is None
        small = p.k <= (NEWTON_K_QUAD if quad else NEWTON_K)
        sepA, sepS = separability(p.constraints["A"]), separability(p.constraints["S"])
        scale = float(getattr(p.link, "scale", 1.0) or 1.0)
        projA, projS = p.projection_terms("A"), p.projection_terms("S")
        freeS = None if quad else free_scale_terms(p, projS)
        sepS = "entries" if freeS is not None else sepS
        return {
            "tA": be.ones((A.shape[0], 1)) * lr,  # each pixel's first step
            "tS": be.ones((1, S.shape[1])) * lr,  # each channel's
            "dS": be.zeros(S.shape),  # the endmembers' direction for the next pass
            "pullS": be.zeros(S.shape),  # the maps' penalties on the scale (freeS)
            "has_d": 0,
            "y_floor": floor,
            "by_block": {},  # each block's CSR view of X, or None (dense): block_x
            "trust": None if p.link.is_identity else TRUST_Z / scale,
            "quad": quad,
            "xx": p.data.norm2() if (quad and p.data.mask is None) else 0.0,
            "projA": projA,
            "projS": projS,
            "sepA": sepA,
            "sepS": sepS,
            "newtonA": sepA == "entries" and small,
            # rows of A on a simplex and nothing else: Newton steps within its faces
            "simplexA": small and [c.simplex_rows for c in projA] == [True],
            "newtonS": sepS == "entries" and small,
            # each channel of S alone: constraints entry by entry, no penalty on S
            "by_channel": sepS == "entries" and not any(t.lam for t in p.penalties["S"]),
            # endmembers held at a scale (unit norm) and otherwise only non-negative:
            # steps free in scale, then the scale moved into the maps (rescaled)
            "freeS": freeS,
            "stepS": projS if freeS is None else freeS,  # the set each step is projected on
        }

    def regauge(self, state: dict, d: Any) -> None:
        """The endmembers' direction (and pull) follow their rows; the step sizes, one per
        pixel and one per channel over all components, cannot follow a scaling per
        component and are left to the line search (the loop's factors are near 1)."""
        state["dS"] = state["dS"] / d[:, None]
        state["pullS"] = state["pullS"] / d[:, None]

    def step(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> StepOut:
        # maps off their set (a component the loop restarted, a filter) are put back on it
        # first: a pixel whose steps all fail keeps its maps
        terms = state["projA"]
        if state["sepA"] != "none":
            A[...] = project_all(terms, A)
        else:
            for b in p.data.blocks:
                A[b.slice, :] = project_all(terms, A[b.slice, :])
        if state["quad"]:
            return self._step_quadratic(p, A, S, state, executor)
        return self._step_general(p, A, S, state, executor)

    # ------------------------------------------------------- Frobenius quadratics
    def _step_quadratic(
        self, p: Problem, A: Any, S: Any, state: dict, executor: Executor
    ) -> StepOut:
        _, G64 = gram_A(p, S)
        G = p.be.work(G64)
        model = p.model("A", A)
        inner = int(self.options.get("inner_max", INNER_MAX))

        def update_block(block: Block, Ab: Any, XSt: Any) -> Any:
            sl = block.slice
            maj = Majorizer(model, Ab, sl, p.be)
            w = p.data.pw(block)
            Ab, state["tA"][sl, :] = self._quad_rows(
                p, Ab, XSt, G, w, maj, state["tA"][sl, :], sl, inner, state
            )
            return Ab

        sums = frobenius_pass(p, A, S, executor, update_block)
        S_new = self._quad_S(p, S, sums, state, inner) if p.update_S else S
        fit, fit_S = fit_of(p, sums, S_new, S, state["xx"])
        return StepOut(S=S_new, fit=fit, fit_S=fit_S)

    def _quad_rows(
        self,
        p: Problem,
        A0: Any,
        P: Any,
        G: Any,
        w: Any,
        maj: Majorizer,
        t: Any,
        sl: slice,
        inner: int,
        state: dict,
    ) -> tuple[Any, Any]:
        """Repeated steps on the rows' quadratics ``w_i (1/2 a G a^T - a p_i)`` plus the
        penalties' majorizer; returns the new rows and their next first steps."""
        be, xp = p.be, p.be.xp
        sep, terms = state["sepA"], state["projA"]

        def change(M: Any, C: Any, idx: Any) -> Any:
            q = xp.sum((M - C) * (0.5 * ((M + C) @ G) - P[idx, :]), axis=1)
            if w is not None:
                q = q * w[idx, 0]
            return be.acc(q) + maj.change(M, C, idx, xp)

        def project(M: Any, idx: Any) -> Any:
            return (
                project_rows(terms, M, idx + sl.start) if sep != "none" else project_all(terms, M)
            )

        def gradient(M: Any, idx: Any) -> Any:
            g = M @ G - P[idx, :]
            g = g if w is None else g * w[idx, :]
            extra = maj.grad_at(M, idx)
            return g if extra is None else g + extra

        newton = state["newtonA"] or state["simplexA"]
        diag = xp.reshape(xp.linalg.diagonal(G), (1, -1))
        H = (diag if w is None else diag * w) + maj.curvature(xp)
        Hw = G if w is None else w[:, :, None] * G
        solve = simplex_newton_direction if state["simplexA"] else newton_direction

        def step(g: Any, M: Any, idx: Any) -> Any:
            if not newton:
                return direction(g, take_rows(H, idx), sep, xp=xp)
            Hf = maj.hessian(Hw if w is None else Hw[idx, ...], xp, idx)
            return solve(g, Hf, M, lambda T: project(T, idx), xp=xp)

        return inner_steps(
            A0,
            t,
            gradient,
            step,
            change,
            project,
            xp=xp,
            rowwise=sep != "none",
            dtype=be.acc_dtype,
            inner=inner,
            delta=INNER_DELTA,
            t_max=1.0 if newton else T_MAX,
            bb_metric=None if newton else scaled(H, sep, xp=xp),
        )

    def _quad_S(self, p: Problem, S: Any, sums: dict, state: dict, inner: int) -> Any:
        """Repeated steps on ``1/2 <A^T W A S, S c> - <A^T W X, S c>`` plus the penalties
        on ``S`` (exact), each channel alone where nothing couples them; ``S`` is handled
        transposed (a channel a row)."""
        be, xp = p.be, p.be.xp
        cw = p.data.channel_w
        AtX, AtA = be.work(sums["AtX"]), be.work(sums["AtA"])
        AtXc = (AtX if cw is None else AtX * cw).T
        by_channel, c = state["by_channel"], S.shape[1]
        cwt = None if cw is None else xp.reshape(cw, (-1, 1))

        def change(Mt: Any, C: Any, idx: Any) -> Any:
            quad = 0.5 * xp.sum((Mt - C) * ((Mt + C) @ AtA), axis=1)
            if cwt is not None:
                quad = quad * cwt[idx, 0]
            q = be.acc(quad - xp.sum(AtXc[idx, :] * (Mt - C), axis=1))
            if not by_channel:  # all channels at once: the penalties' change, spread
                q = q + (pen_value_S(p, Mt.T) - pen_value_S(p, C.T)) / c
            return q

        def project(Mt: Any, idx: Any) -> Any:
            if by_channel:
                return project_cols(state["projS"], Mt, idx)
            return project_all(state["projS"], Mt.T).T

        def gradient(Mt: Any, idx: Any) -> Any:
            g = Mt @ AtA
            g = (g if cwt is None else g * cwt[idx, :]) - AtXc[idx, :]
            pg = pen_grad(p, "S", Mt.T)
            return g if pg is None else g + transposed(pg)

        sep = "entries" if by_channel else state["sepS"]
        diag = xp.reshape(xp.linalg.diagonal(AtA), (1, -1))
        H0 = diag if cwt is None else diag * cwt

        def step(g: Any, Mt: Any, idx: Any) -> Any:
            model = p.model("S", Mt.T)
            if not state["newtonS"]:
                return direction(g, take_rows(H0, idx) + transposed(curv_S(model, xp)), sep, xp=xp)
            Hf = hessian_S(AtA if cwt is None else cwt[idx, :, None] * AtA, model, be)
            return newton_direction(g, Hf, Mt, lambda T: project(T, idx), xp=xp)

        St, t = inner_steps(
            xp.asarray(S.T, copy=True),
            xp.reshape(state["tS"], (-1, 1)),
            gradient,
            step,
            change,
            project,
            xp=xp,
            rowwise=by_channel,
            dtype=be.acc_dtype,
            inner=inner,
            delta=INNER_DELTA,
            t_max=1.0 if state["newtonS"] else T_MAX,
        )
        state["tS"] = xp.reshape(t, (1, -1))
        return xp.asarray(St.T, copy=True)

    # --------------------------------------------------------------- any loss
    def _step_general(
        self, p: Problem, A: Any, S: Any, state: dict, executor: Executor
    ) -> StepOut:
        model = p.model("A", A)
        trial = None
        if p.update_S and state["has_d"]:  # the endmembers' trial point of this pass
            trial = project_all(state["stepS"], S + state["tS"] * state["dS"])

        first = p.update_S and trial is None
        be = p.be

        def kernel(block: Block) -> dict:
            Wb = p.data.w(block)
            Xb = block_x(p, block, Wb, state)  # read once a pass; KL counts as CSR
            A1, Z, Y, h, Y0 = self._maps(p, block, Xb, Wb, A, S, model, state)
            out = self._sums(p, Xb, Wb, A1, S, Z, Y, h, trial, state)
            if first:  # the fit before the step (see below)
                out["fit0"] = be.xp.sum(divergence_sums(p.loss.beta, Xb, Y0, Wb, 1, be=be))
            return out

        sums = executor.map_reduce(kernel, p.data.blocks)
        if not p.update_S:
            return StepOut(S=S, fit=float(be.xp.sum(sums["cols"])), fit_S=S)
        S_new, fit = choose_S(p, S, sums, trial, state, A)
        if first:
            # the endmembers have not moved yet: report the fit before the step, so that
            # the loop does not take an unchanged start (maps already fitted to S) for
            # convergence (it does not judge a first iteration that lags)
            return StepOut(S=S, fit=float(sums["fit0"]), fit_S=S, fit_at_old_A=True)
        return StepOut(S=S_new, fit=fit, fit_S=S_new)

    def _maps_direction(
        self,
        p: Problem,
        Xb: Any,
        Wb: Any,
        A0: Any,
        S: Any,
        maj: Majorizer,
        project: Any,
        state: dict,
    ) -> tuple[Any, Any, Any, Any, Any]:
        """The maps' gradient ``g`` and direction ``d`` at the block's maps ``A0``;
        returns ``(g, d, Z, Y, h)`` with the model ``Z = A0 S``, ``Y = f(Z)`` and ``h``
        the curvature in ``Z`` (None: all ones)."""
        be, xp = p.be, p.be.xp
        Z = A0 @ S
        Y = p.link.forward(Z, xp)
        fp = p.link.derivative(Z, Y, xp)
        g = grad_maps(p.loss.beta, Xb, Y, Wb, fp, S, be=be, floor=state["y_floor"])
        extra = maj.grad_at(A0, None)
        g = g if extra is None else g + extra
        h = curvature_Z(p, Xb, Y, Wb, fp, state["y_floor"])
        if not (state["newtonA"] or state["simplexA"]):
            SS = S * S
            H = xp.reshape(xp.sum(SS, axis=1), (1, -1)) if h is None else h @ SS.T
            return g, direction(g, H + maj.curvature(xp), state["sepA"], xp=xp), Z, Y, h
        k = S.shape[0]  # each pixel's (k, k) curvature S diag(h_i) S^T
        if h is None:
            Hf = S @ S.T
        else:
            Hf = xp.reshape(
                h @ xp.reshape(S[:, None, :] * S[None, :, :], (k * k, -1)).T, (-1, k, k)
            )
        every = xp.arange(A0.shape[0], device=getattr(A0, "device", None))
        solve = simplex_newton_direction if state["simplexA"] else newton_direction
        d = solve(g, maj.hessian(Hf, xp, None), A0, lambda T: project(T, every), xp=xp)
        return g, d, Z, Y, h

    def _maps(
        self,
        p: Problem,
        block: Block,
        Xb: Any,
        Wb: Any,
        A: Any,
        S: Any,
        model: Any,
        state: dict,
    ) -> tuple[Any, Any, Any, Any, Any]:
        """The maps' line searches of one block (its data ``Xb``, weights ``Wb``; in
        place); returns the new maps, the model ``Z = A_b S``, ``Y = f(Z)`` there, the
        curvature ``h`` in ``Z`` at the old maps (or None: all ones) and ``Y`` there."""
        be, xp = p.be, p.be.xp
        beta, link, sl = p.loss.beta, p.link, block.slice
        A0 = A[sl, :]
        rowwise, terms, trust = state["sepA"] != "none", state["projA"], state["trust"]

        def project(M: Any, idx: Any) -> Any:
            return project_rows(terms, M, idx + sl.start) if rowwise else project_all(terms, M)

        maj = Majorizer(model, A0, sl, be)
        g, d, Z, Y, h = self._maps_direction(p, Xb, Wb, A0, S, maj, project, state)
        n, last = A0.shape[0], {}
        s1 = xp.sum(S, axis=1) if is_sparse(Xb) else None  # the model's row sums
        cur = {"Z": Z, "Y": Y, "copied": False}  # the model at the accepted rows

        def rows(M: Any, idx: Any) -> Any:
            return M if M is None or idx.shape[0] == n or M.shape[0] == 1 else M[idx, :]

        def change(M: Any, idx: Any) -> Any:
            last["Z"] = M @ S
            last["Y"] = link.forward(last["Z"], xp)
            X_, W_ = rows(Xb, idx), rows(Wb, idx)
            step = None if s1 is None else (M - rows(A0, idx)) @ s1  # each row's sum
            step = step if step is None or W_ is None else step * W_[:, 0]
            df = change_sums(beta, X_, rows(Y, idx), last["Y"], W_, 1, be=be, step=step)
            df = df + maj.change(M, rows(A0, idx), idx, xp)
            if trust is None:
                return df
            far = xp.max(xp.abs(last["Z"] - rows(Z, idx)), axis=1) > trust
            return xp.where(far, xp.inf, df)  # outside the trust region of f's model

        def keep(ok: Any, hit: Any) -> None:
            if hit.shape[0] == n:  # every row took the first trial
                cur["Z"], cur["Y"] = last["Z"], last["Y"]
                return
            if not cur["copied"]:
                cur["Z"], cur["Y"] = xp.asarray(Z, copy=True), xp.asarray(Y, copy=True)
                cur["copied"] = True
            cur["Z"][hit, :] = last["Z"][ok, :]
            cur["Y"][hit, :] = last["Y"][ok, :]

        newton = state["newtonA"] or state["simplexA"]
        A1, _, t, _ = search_rows(
            A0,
            g,
            d,
            state["tA"][sl, :],
            change,
            project,
            xp=xp,
            rowwise=rowwise,
            on_accept=keep,
            dtype=be.acc_dtype,
            t_max=1.0 if newton else T_MAX,
        )
        A[sl, :] = A1
        state["tA"][sl, :] = t
        return A1, cur["Z"], cur["Y"], h, Y

    def _sums(
        self,
        p: Problem,
        Xb: Any,
        Wb: Any,
        A1: Any,
        S: Any,
        Z: Any,
        Y: Any,
        h: Any,
        trial: Any,
        state: dict,
    ) -> dict:
        """One block's sums for the endmembers ``S`` at the new maps ``A1``: the fit of each
        channel, the gradient and the curvature of ``S`` (from the pass's curvature
        ``h``), and at the trial point the change of each channel's fit and the
        gradient."""
        be, xp = p.be, p.be.xp
        beta, link, floor = p.loss.beta, p.link, state["y_floor"]
        out = {"cols": divergence_sums(beta, Xb, Y, Wb, 0, be=be)}
        if not p.update_S:
            return out
        fp = link.derivative(Z, Y, xp)
        out["g"] = be.acc(grad_S(beta, Xb, Y, Wb, fp, A1, be=be, floor=floor))
        k = A1.shape[1]
        if state["newtonS"]:  # each channel's (k, k) curvature A^T diag(h_c) A
            A2 = xp.reshape(A1[:, :, None] * A1[:, None, :], (-1, k * k))
        else:
            A2 = A1 * A1
        out["H"] = be.acc(
            xp.reshape(xp.sum(A2, axis=0), (-1, 1)) if h is None else left_times(A2, h)
        )
        if trial is None:
            return out
        Zt = A1 @ trial
        Yt = link.forward(Zt, xp)
        step = None
        if is_sparse(Xb):  # the channels' sums of w (Yt - Y), w the pixel weights (a column)
            step = xp.sum(A1 if Wb is None else Wb * A1, axis=0) @ (trial - S)
        out["dt"] = change_sums(beta, Xb, Y, Yt, Wb, 0, be=be, step=step)
        if state["trust"] is not None:  # entries moved beyond the trust region
            far = xp.abs(Zt - Z) > state["trust"]
            out["far"] = be.acc(xp.sum(xp.astype(far, Zt.dtype), axis=0))
        fpt = link.derivative(Zt, Yt, xp)
        out["gt"] = be.acc(grad_S(beta, Xb, Yt, Wb, fpt, A1, be=be, floor=floor))
        return out
