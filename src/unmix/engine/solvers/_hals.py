"""Accelerated HALS (Cichocki & Phan 2009; Gillis & Glineur 2012).

Objective: weighted Frobenius (see :mod:`unmix.solvers._frobenius`) plus penalties.  Each
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
from ._base import Solver, StepOut, register
from ._frobenius import data_norm, fit_of, frobenius_pass, gram_A

__all__ = ["HALS"]


class _Clipper:
    """Separable constraints of one factor applied to a single column (A) / row (S)."""

    def __init__(self, p: Problem, target: str, shape: tuple[int, int]) -> None:
        xp = p.be.xp
        self.xp = xp
        self.be = p.be
        self.nonneg = False
        self.lo, self.hi = [], []
        self.fixed = None
        self.unit = False
        for c in p.constraints[target]:
            if c.kind == "nonneg":
                self.nonneg = True
            elif c.kind == "box":
                if c._lo is not None:
                    self.lo.append(xp.broadcast_to(c._lo, shape))
                if c._hi is not None:
                    self.hi.append(xp.broadcast_to(c._hi, shape))
            elif c.kind == "fixed":
                self.fixed = c
            elif c.kind == "unitnorm":
                self.unit = True

    @property
    def plain(self) -> bool:
        """Only non-negativity (or nothing): the lean sweep applies."""
        return not (self.lo or self.hi or self.fixed is not None or self.unit)

    def column(self, a: Any, j: int, rows: slice) -> Any:
        """Clip column ``j`` of A restricted to pixel ``rows``."""
        xp = self.xp
        if self.nonneg:
            a = self.be.clip_min(a, 0.0)
        for lo in self.lo:
            a = xp.maximum(a, lo[rows, j])
        for hi in self.hi:
            a = xp.minimum(a, hi[rows, j])
        return a

    def row(self, s: Any, j: int) -> Any:
        """Clip row ``j`` of S."""
        xp = self.xp
        if self.nonneg:
            s = self.be.clip_min(s, 0.0)
        for lo in self.lo:
            s = xp.maximum(s, lo[j, :])
        for hi in self.hi:
            s = xp.minimum(s, hi[j, :])
        if self.fixed is not None:
            s = xp.where(self.fixed._fixed[j, :], self.fixed._values[j, :], s)
        return s


def _col(M: Any, j: int) -> Any:
    """Column j of a per-entry array, or the scalar itself."""
    if M is None:
        return 0.0
    if isinstance(M, (int, float)) or getattr(M, "ndim", 0) == 0:
        return M
    return M[:, j] if M.shape[1] > 1 else M[:, 0]


def _row(M: Any, j: int) -> Any:
    if M is None:
        return 0.0
    if isinstance(M, (int, float)) or getattr(M, "ndim", 0) == 0:
        return M
    return M[j, :] if M.shape[0] > 1 else M[0, :]


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
        (:mod:`unmix._onepass`, ``pip install "unmix[fast]"``) that compute ``X_b S^T``,
        the sweeps and ``A_b^T X_b`` for a block with ``X_b`` in cache - Frobenius loss,
        NumPy X in memory (C-contiguous, float32/float64), no weights or mask, only
        non-negativity (and a scalar L1) on A; a ValueError otherwise.  ``"blas"``: the
        BLAS products of :func:`~unmix.solvers._frobenius.frobenius_pass`.  ``"auto"``
        (default): ``"onepass"`` when numba is installed, the problem qualifies and X has
        at least ``unmix._onepass.AUTO_MIN_ENTRIES`` entries (4 M), else ``"blas"``.  Both
        give the same iterates up to rounding.
    """

    name = "hals"
    kinds_A = frozenset({"nonneg", "box"})
    kinds_S = frozenset({"nonneg", "box", "fixed", "unitnorm"})
    weights = frozenset({"none", "mask", "separable"})
    monotone = True

    def setup(self, p: Problem, A: Any, S: Any) -> dict:
        from ...executors.base import SerialExecutor
        from ..kernels._onepass import resolve

        return {
            "onepass": resolve(self.options.get("kernel", "auto"), p, "hals"),
            "xx": data_norm(p, SerialExecutor()) if p.data.mask is None else 0.0,
            "clip_A": _Clipper(p, "A", tuple(A.shape)),
            "clip_S": _Clipper(p, "S", tuple(S.shape)),
        }

    def step(self, p: Problem, A: Any, S: Any, state: dict, executor: Executor) -> StepOut:
        be, xp = p.be, p.be.xp
        k = p.k
        inner_max = int(self.options.get("inner_max", 10))
        delta = float(self.options.get("inner_delta", 0.1))
        _, G64 = gram_A(p, S)
        mA = p.model("A", A)
        G = be.work(G64)
        gram = None if mA.gram is None else be.work(mA.gram)
        clip = state["clip_A"]

        def update_block(block: Block, Ab: Any, XSt: Any) -> Any:
            sl = block.slice
            pw = p.data.pw(block)
            At = xp.asarray(Ab.T, copy=True)  # k x n_b, rows contiguous
            A0t = Ab.T
            Pt = XSt.T
            if pw is not None:
                Pt = Pt * pw.T
            if pw is None and gram is None and mA.grad is None and mA.curv is None and clip.plain:
                return _plain_sweeps(At, Pt, G, clip.nonneg, inner_max, delta, be).T
            gradT = None if mA.grad is None else _block_T(mA.grad, sl)
            curvT = None if mA.curv is None else _block_T(mA.curv, sl)
            pwT = None if pw is None else pw.T
            first = None
            for _ in range(inner_max):
                change = 0.0
                for j in range(k):
                    r = G[j : j + 1, :] @ At
                    if pwT is not None:
                        r = r * pwT
                    g = r[0, :] - Pt[j, :]
                    d = G[j, j] if pwT is None else G[j, j] * pwT[0, :]
                    if gram is not None:
                        g = g + (gram[j : j + 1, :] @ At)[0, :]
                        d = d + gram[j, j]
                    if gradT is not None:
                        g = g + _row(gradT, j)
                    if curvT is not None:
                        cj = _row(curvT, j)
                        g = g + cj * (At[j, :] - A0t[j, :])
                        d = d + cj
                    new = clip.column(At[j, :] - g / be.clip_min(d, be.tiny), j, sl)
                    change += float(xp.sum((new - At[j, :]) ** 2))
                    At[j, :] = new
                if first is None:
                    first = change
                if change <= delta * delta * first or first == 0.0:
                    break
            return At.T

        if state.get("onepass"):
            from ..kernels._onepass import hals_pass

            sums = hals_pass(p, A, S, G, executor, self.options)
        else:
            sums = frobenius_pass(p, A, S, executor, update_block)
        S_new = self._update_S(p, S, sums, state) if p.update_S else S
        fit, fit_S = fit_of(p, sums, S_new, S, state["xx"])
        return StepOut(S=S_new, fit=fit, fit_S=fit_S)

    def _update_S(self, p: Problem, S: Any, sums: dict, state: dict) -> Any:
        be, xp = p.be, p.be.xp
        inner_max = int(self.options.get("inner_max", 10))
        delta = float(self.options.get("inner_delta", 0.1))
        H = be.work(sums["AtA"])
        P = be.work(sums["AtX"])
        mS = p.model("S", S)
        gram = None if mS.gram is None else be.work(mS.gram)
        cw = p.data.channel_w
        clip = state["clip_S"]
        S0 = S
        S = xp.asarray(S, copy=True)
        rows = p.free_rows()
        first = None
        for _ in range(inner_max):
            change = 0.0
            for j in rows:
                g = (H[j : j + 1, :] @ S)[0, :] - P[j, :]
                d = H[j, j]
                if cw is not None:
                    g = g * cw[0, :]
                    d = d * cw[0, :]
                if gram is not None:
                    g = g + (gram[j : j + 1, :] @ S)[0, :]
                    d = d + gram[j, j]
                if mS.grad is not None:
                    g = g + _row(mS.grad, j)
                if mS.curv is not None:
                    cj = _row(mS.curv, j)
                    g = g + cj * (S[j, :] - S0[j, :])
                    d = d + cj
                new = clip.row(S[j, :] - g / be.clip_min(d, be.tiny), j)
                if clip.unit:
                    nrm = xp.sqrt(xp.sum(new * new))
                    new = new / nrm if float(nrm) > 0 else S[j, :]
                change += float(xp.sum((new - S[j, :]) ** 2))
                S[j, :] = new
            if first is None:
                first = change
            if change <= delta * delta * first or first == 0.0:
                break
        return S


def _plain_sweeps(
    At: Any, Pt: Any, G: Any, nonneg: bool, inner_max: int, delta: float, be: Any
) -> Any:
    """HALS sweeps over the rows of ``At`` (k x n_b) for the plain problem, few ops a row.

    ``a_j <- max(0, a_j + (p_j - G_j A) / G_jj)``, repeated while a sweep still changes
    the block by more than ``delta`` times the first sweep's change.
    """
    xp = be.xp
    k = At.shape[0]
    d = be.clip_min(xp.linalg.diagonal(G), be.tiny)[:, None]
    Gs, Q = G / d, Pt / d
    first = None
    for _ in range(inner_max):
        before = xp.asarray(At, copy=True) if inner_max > 1 else None
        for j in range(k):
            new = At[j, :] + Q[j, :] - (Gs[j : j + 1, :] @ At)[0, :]
            At[j, :] = be.clip_min(new, 0.0) if nonneg else new
        if before is None:
            break
        change = float(xp.sum((At - before) ** 2))
        first = change if first is None else first
        if change <= delta * delta * first or first == 0.0:
            break
    return At


def _block_T(M: Any, sl: slice) -> Any:
    """Rows ``sl`` of a per-pixel array, transposed; scalars pass through."""
    if isinstance(M, (int, float)) or getattr(M, "ndim", 0) == 0:
        return M
    return M[sl, :].T
