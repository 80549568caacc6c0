"""Multiplicative updates for any beta-divergence (Lee & Seung 2001; Fevotte & Idier 2011).

Objective: ``sum W d_beta(X | A S) + penalties`` with ``A, S >= 0``.  With the gradient of
the objective split as ``grad = Q - P`` (``P, Q >= 0``)::

    A <- A * (P_A / Q_A) ** gamma(beta),   S <- S * (P_S / Q_S) ** gamma(beta)

where the data parts are ``P_A = (W X Y^(beta-2)) S^T``, ``Q_A = (W Y^(beta-1)) S^T`` and each
penalty adds its ``mu_neg`` to ``P`` and ``mu_pos`` to ``Q``.  For plain Frobenius
(no weights, no mask) the Gram form ``P_A = X S^T``, ``Q_A = A S S^T`` is used; otherwise
the block's model ``Y_b = A_b S`` is formed while ``X_b`` is in cache; for dense
unweighted KL a compiled kernel fuses a block's whole step (:mod:`unmix.engine.kernels`).
Without penalties (or with L1 / L2) the objective never increases.

MU shrinks an entry whose optimum is 0 geometrically, never to 0 itself; after every
update the entries below the backend's ``tiny`` (a million times the dtype's smallest
normal number, the floor every denominator already has) are set to 0 (:func:`_times`),
the limit they approach.  Left alone they sink into subnormal numbers (below 1.2e-38 in
float32, within a few hundred iterations), and on many x86 CPUs every product with a
subnormal takes a slow microcode path: float32 KL MU on the EDS SEM map went from 22 to
195 ms an iteration on an Intel Xeon, with 3 % of the maps' entries subnormal.
"""

from __future__ import annotations

from typing import Any

from ...executors.base import Block, Executor
from ...model import PenaltyModel
from .._problem import Problem
from .._stop import gains_little
from ..kernels import available, kl_mu_pass, kl_resolve, mu_pass, resolve
from ._base import Solver, StepOut, register
from ._frobenius import fit_from_sums
from ._kl_cd import kl_fit_at, kl_views, views_weigh
from ._kl_sparse import kl_sparse_pass, uses_sparse_kl

__all__ = ["MU"]


def _ratio(
    num: Any,
    den: Any,
    m: PenaltyModel,
    rows: Any,
    be: Any,
    gamma: float,
    sphere: Any = None,
) -> Any:
    """``((num + mu_neg) / (den + mu_pos)) ** gamma`` with the penalties' rows.

    ``sphere``: the current unit-norm rows ``M`` of the factor; the gradient's part along
    each row is then moved to the other side (Le Roux et al. 2015: ``num + (m . den) m``
    over ``den + (m . num) m``), so the update's fixed points are stationary on the unit
    sphere, not of the problem without it.
    """
    if m.mu_neg is not None:
        num = num + _rows(m.mu_neg, rows)
    if m.mu_pos is not None:
        den = den + _rows(m.mu_pos, rows)
    if sphere is not None:
        xp = be.xp
        along_den = xp.sum(sphere * den, axis=1, keepdims=True)
        along_num = xp.sum(sphere * num, axis=1, keepdims=True)
        num, den = num + along_den * sphere, den + along_num * sphere
    r = be.clip_min(num, 0.0) / be.clip_min(den, be.tiny)
    return r if gamma == 1.0 else r**gamma


def _times(M: Any, ratio: Any, be: Any) -> Any:
    """The multiplicative update ``M * ratio``, its entries below ``be.tiny`` set to 0
    (NaN kept, for the loop's check)."""
    new = M * ratio
    return be.xp.where(new < be.tiny, be.xp.zeros_like(new), new)


def _repeat(update: Any, M: Any, n: int, delta: float, xp: Any) -> Any:
    """Apply ``update`` up to ``n`` times while it still changes ``M`` noticeably."""
    first = None
    for _ in range(n):
        new = update(M)
        if n == 1:
            return new
        change = float(xp.sum((new - M) ** 2))
        M = new
        first = change if first is None else first
        if gains_little(change, first, delta):
            break
    return M


def _rows(M: Any, rows: Any) -> Any:
    if rows is None or isinstance(M, (int, float)) or getattr(M, "ndim", 0) == 0:
        return M
    return M[rows, :]


def _pin(p: Problem, S: Any) -> Any:
    """The endmember entries that constraints pin, put back after an update."""
    pins = p.fixed()
    return S if pins is None else p.be.xp.where(pins[0], pins[1], S)


@register
class MU(Solver):
    """Multiplicative updates (any beta-divergence, any weights and masks).

    Options
    -------
    inner_max : int
        For plain Frobenius: most repeated updates of a block's maps (and of S) per data
        pass, reusing ``X_b S^T`` (accelerated MU, Gillis & Glineur 2012; default 10).
    inner_delta : float
        Stop repeating once an update changes the factor by less than ``delta`` times the
        first one (default 0.1).
    kernel : {"auto", "onepass", "blas"}
        Per-block work of the plain-Frobenius and the dense KL paths.  ``"onepass"``:
        compiled numba loops (:mod:`unmix.engine.kernels`, ``pip install "unmix[fast]"``)
        that do a block's work with ``X_b`` in cache - Frobenius: ``X_b S^T``, the inner
        repeats and ``A_b^T X_b``; KL: the model, the ratio ``X_b / (A_b S)``, the maps'
        update and ``A_b^T (X_b / Y_b)`` a few rows at a time, without a block-sized
        temporary - for NumPy X in memory or streamed (C-contiguous, float32/float64), no
        weights or mask, the identity link, only non-negativity (and a scalar L1) on A; a
        ValueError otherwise.  ``"blas"``: the NumPy/BLAS reference path.  ``"auto"``
        (default): ``"onepass"`` when numba is installed, the problem qualifies and X has
        at least ``unmix.engine.kernels.AUTO_MIN_ENTRIES`` entries (4 M), else ``"blas"``.
        Both give the same iterates up to rounding.
    extrapolate : bool
        Extrapolation with restarts between iterations (:mod:`unmix.engine._extrapolate`),
        of the factors' logarithms: ``A_n (A_n / A_{n-1})^beta`` entry by entry, so no
        entry is clipped to 0, where a multiplicative update could never grow it again.
        Default: on when a penalty couples pixels, else from iteration
        :attr:`extrapolates_after` (50) on, if the fit is still running.  On the
        constraint matrix's XRD map (k 3, seed 0) the plain fit ran to ``max_iter`` 500,
        2.1 % (Frobenius) and 4.0 % (KL) above a converged HALS / KL-CD fit; with the
        switch it stops by ``tol`` at 240 (0.34 %) and 242 (1.2 %)
        (``benchmarks/results/kl_extrapolate.md``).  Where the loss is KL on the compiled
        paths the judge's divergence at the new point comes from KL-CD's kernels.
    """

    name = "mu"
    #: multiplicative steps are cheap and short: on the XRD map at k 6 the fits that keep
    #: every component (the collapse check's random start) stop by ``tol`` at 896
    #: (Frobenius) and 1,183 (KL) iterations; at 500 they were cut off 3 % above
    #: (``benchmarks/results/constraints.md``)
    default_max_iter = 2000
    option_names = frozenset({"inner_max", "inner_delta", "kernel", "extrapolate"})
    extrapolates = True
    extrapolates_geometrically = True
    extrapolates_after = 50
    betas = "any"
    weights = frozenset({"none", "mask", "separable", "full"})
    needs_nonneg = True
    monotone = True
    reweightable = True

    def accepts(self, c: Any, target: str) -> bool:
        """Maps: the non-negative orthant; endmembers: also pinned entries and constraints
        met by moving scale into the maps (unit norm)."""
        if target == "A":
            return c.is_orthant
        return c.is_orthant or c.fixed() is not None or c.rescales

    def setup(self, p: Problem, A: Any, S: Any) -> dict:
        fast = p.loss.is_frobenius and not p.data.weighted
        kernel = self.options.get("kernel", "auto")
        onepass = resolve(kernel, p, "mu") if p.loss.is_frobenius else False
        fused_kl = False if p.loss.is_frobenius else kl_resolve(kernel, p)
        xx = p.data.norm2() if fast else 0.0
        return {
            "fast": fast,
            "xx": xx,
            "onepass": onepass,
            "fused_kl": fused_kl,
            "sparse_kl": uses_sparse_kl(p),
        }

    def fit_at(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> float | None:
        """KL on the compiled paths (fused dense blocks, sparse ``X``) of NumPy data: the
        divergence at ``(A, S)`` by KL-CD's kernels (:func:`._kl_cd.kl_fit_at`; dense
        blocks read as they are, sparse ones through CSR views made on the first call);
        else None (the loop's entry-by-entry evaluation), and so with channel weights,
        which those kernels do not weigh (the unweighted divergence, 18 % below the
        objective on a planted sparse map, made every extrapolated step look better)."""
        compiled = state["fused_kl"] or state["sparse_kl"]
        if not compiled or p.be.name != "numpy" or not available():
            return None
        if not views_weigh(p.data):  # the kernels weigh pixels and holes only
            return None
        if "kl_views" not in state:
            choice = "auto" if state["sparse_kl"] else False  # no CSR copies of dense X
            state["kl_views"] = kl_views(p, choice=choice, model=False)
        return kl_fit_at(p, A, S, state["kl_views"], executor)

    def step(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> StepOut:
        if state["fast"]:
            return self._step_gram(p, A, S, state, executor)
        if state["sparse_kl"]:
            return self._step_sparse_kl(p, A, S, executor)
        if state["fused_kl"]:  # the compiled block step (kernels._klmu): same sums
            return _step_from_sums(p, A, S, kl_mu_pass(p, A, S, executor), 1.0)
        return self._step_elementwise(p, A, S, executor)

    # --------------------------------------------------------------- Frobenius
    def _step_gram(self, p: Problem, A: Any, S: Any, state: dict, ex: Executor) -> StepOut:
        be, xp = p.be, p.be.xp
        mA = p.model("A", A)
        G = be.work(be.acc(S @ S.T))

        inner_A = self._inner(p, "A")
        inner_S = self._inner(p, "S")
        delta = float(self.options.get("inner_delta", 0.1))

        def kernel(block: Block) -> dict:  # the reference (BLAS) per-block work
            sl = block.slice
            XSt = p.data.x_times(block, S.T)
            Ab = _repeat(
                lambda M: _times(M, _ratio(XSt, M @ G, mA, sl, be, 1.0), be),
                A[sl, :],
                inner_A,
                delta,
                xp,
            )
            A[sl, :] = Ab
            return {"AtX": be.acc(p.data.t_times(block, Ab)), "AtA": be.acc(Ab.T @ Ab)}

        if state.get("onepass"):
            sums = mu_pass(p, A, S, G, ex, self.options, inner_A)
        else:
            sums = ex.map_reduce(kernel, p.data.blocks)
        S_new = S
        if p.update_S:
            mS = p.model("S", S)
            num = be.work(sums["AtX"])
            H = be.work(sums["AtA"])
            sph = p.scale_held_by_penalty()
            S_new = _repeat(
                lambda M: _times(M, _ratio(num, H @ M, mS, None, be, 1.0, M if sph else None), be),
                S,
                inner_S,
                delta,
                xp,
            )
            S_new = _pin(p, S_new)
        fit = fit_from_sums(p, sums, S_new, state["xx"])
        S_new = p.rescale_into_maps(A, S_new)
        return StepOut(S=S_new, fit=fit, fit_S=S_new)

    def _inner(self, p: Problem, target: str) -> int:
        """Repeated cheap updates per pass (Gillis & Glineur 2012) when the penalties'
        multiplicative terms do not depend on the factor (none, or L1)."""
        if p.constant_penalty_gradient(target) is None:
            return 1
        return int(self.options.get("inner_max", 10))

    # ------------------------------------------------- any beta, weights, masks
    def _step_elementwise(self, p: Problem, A: Any, S: Any, ex: Executor) -> StepOut:
        be, xp = p.be, p.be.xp
        loss, gamma = p.loss, p.loss.mu_exponent
        mA = p.model("A", A)
        S_sum = xp.sum(S, axis=1)[None, :]  # 1 S^T for unweighted KL

        def kernel(block: Block) -> dict:
            sl = block.slice
            Xb = p.data.x(block)
            Wb = p.data.w(block)
            Ab = A[sl, :]
            Pn, Qn = loss.mu_factors(Xb, Ab @ S, Wb, xp=xp, tiny=be.tiny)
            num = Pn @ S.T
            den = S_sum if Qn is None else Qn @ S.T
            Ab = _times(Ab, _ratio(num, den, mA, sl, be, gamma), be)
            A[sl, :] = Ab
            Y = Ab @ S
            Pn, Qn = loss.mu_factors(Xb, Y, Wb, xp=xp, tiny=be.tiny)
            out = {
                "num": be.acc(Ab.T @ Pn),
                "den": be.acc(xp.sum(Ab, axis=0)[:, None] if Qn is None else Ab.T @ Qn),
                "fit": be.acc(loss.value(Xb, Y, Wb, xp=xp, tiny=be.tiny)),
            }
            return out

        sums = ex.map_reduce(kernel, p.data.blocks)
        return _step_from_sums(p, A, S, sums, gamma)

    # --------------------------------------------------- KL on sparse X (CSR)
    def _step_sparse_kl(self, p: Problem, A: Any, S: Any, ex: Executor) -> StepOut:
        """The KL update from the nonzeros of sparse ``X`` (:mod:`._kl_sparse`)."""
        be = p.be
        mA = p.model("A", A)

        def update(sl: slice, Ab: Any, num: Any, den: Any) -> Any:
            return _times(Ab, be.asarray(_ratio(num, den, mA, sl, be, 1.0), dtype=be.dtype), be)

        return _step_from_sums(p, A, S, kl_sparse_pass(p, A, S, ex, update), 1.0)


def _step_from_sums(p: Problem, A: Any, S: Any, sums: dict, gamma: float) -> StepOut:
    """The endmembers' multiplicative update from a pass's sums ``num`` and ``den``
    (``(k, 1)`` when the denominator is the same for every channel); the fit is the
    pass's, at the new maps and the old ``S``."""
    be, xp = p.be, p.be.xp
    S_new = S
    if p.update_S:
        mS = p.model("S", S)
        num, den = be.work(sums["num"]), be.work(sums["den"])
        if den.shape[1] == 1:
            den = den * xp.ones_like(S)
        sphere = S if p.scale_held_by_penalty() else None
        S_new = _times(S, _ratio(num, den, mS, None, be, gamma, sphere), be)
        S_new = p.rescale_into_maps(A, _pin(p, S_new))
    return StepOut(S=S_new, fit=float(sums["fit"]), fit_S=S)
