"""Hard sparsity of the maps: at most ``m`` endmembers in each pixel.

:class:`MaxActive` keeps at most ``m`` non-zeros in every row of ``A`` (pixels, k).  Its
projection (used inside the iterations by the solvers that project whole rows: ADMM and
the gradient solver) is the exact Euclidean projection onto ``{a >= 0, ||a||_0 <= m}``:
clip at 0, then keep the ``m`` largest entries of the row.  That set is not convex, so
the projecting solvers only find a good support; exact ANLS (``solver="bpp"``) solves
each pixel's subproblem exactly every iteration (:meth:`MaxActive.solve_rows`, as
below).  After the fit :meth:`MaxActive.finish` refits every pixel exactly (Frobenius
loss): the non-negative least squares of its spectrum against ``S`` over every support
of size ``m`` (which covers the smaller ones), the best kept.  With more than
:data:`MAX_SUBSETS` supports (``C(k, m)``) the supports tried are a greedy forward
selection (``m`` rounds, each adding to every pixel the component that lowers its
residual most) and the support the fit ended with (in ``solve_rows``: the ``m`` largest
entries of the unconstrained NNLS); the best of the two is kept (exact among those, not
over all supports).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from .._linalg import nnls_bpp
from ._constraints import unit_endmembers
from ._terms import Constraint

__all__ = ["MAX_SUBSETS", "MaxActive"]

#: most supports ``C(k, m)`` refitted exhaustively after the fit (else greedy)
MAX_SUBSETS = 200
#: the diagonal weight that pins a component outside a pixel's support to 0, relative to
#: the largest diagonal entry of ``S S^T`` (the greedy refit's masked NNLS)
PIN_WEIGHT = 1e10


@dataclass(frozen=True)
class MaxActive(Constraint):
    """At most ``m`` endmembers per pixel: every row of ``A`` has ``<= m`` non-zeros.

    The maps are non-negative (the projection clips at 0).  Solvers that project whole
    rows of ``A`` hold it (``solver="admm"``, ``"gradient"``), and exact ANLS
    (``solver="bpp"``, which ``"auto"`` picks for Frobenius; monotone) solves each pixel's
    sparse least squares exactly every iteration; HALS (its column sweeps cannot hold a
    row's count) and MU refuse it.  After the fit each pixel's maps are
    refitted exactly for the fitted ``S`` (see the module), so the objective is that of
    the best support of size ``m`` per pixel (Frobenius or l2,1 loss, identity link, no
    mask or channel weights; otherwise the projected iterate is kept).

    Parameters
    ----------
    m : int
        The most endmembers a pixel may hold (``1 <= m``; ``m >= k`` leaves the maps
        free of this constraint).
    target : {"A", "S"}
        The maps (pixels, k), or the endmembers (k, channels): ``target="S"`` keeps at
        most ``m`` endmembers non-zero in every *channel* (column of ``S``).  With
        ``m = 1`` the endmembers have disjoint supports, so ``S S^T`` is diagonal:
        **orthogonal NMF** (non-negative ``A`` and ``S`` with orthogonal rows of ``S``,
        Ding et al. 2006), each channel assigned to one endmember.  Exact ANLS
        (``solver="bpp"``) solves every channel's subproblem exactly (monotone);
        ``"admm"`` and ``"gradient"`` project; HALS and MU refuse it.  No refit after the
        fit for ``target="S"``.
    """

    m: int = 1
    _allowed_targets = ("A", "S")
    finishes = True  # only constraints on the maps refine them after the fit
    solves_rows = True  # rows of the subproblem: pixels (target "A") or channels ("S")

    @property
    def separable(self) -> str:  # type: ignore[override]
        """``"rows"`` on the maps (each pixel alone); ``"none"`` on the endmembers (a
        channel's count couples the rows of ``S``)."""
        return "rows" if self.target == "A" else "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.m, bool) or not isinstance(self.m, int) or self.m < 1:
            raise ValueError(
                f"MaxActive: m must be an integer >= 1 (the most endmembers a pixel holds); "
                f"got {self.m!r}, e.g. MaxActive(2)."
            )

    @property
    def implies_nonneg(self) -> bool:
        """The projection clips at 0: every feasible map is ``>= 0``."""
        return True

    @property
    def one_per_row(self) -> bool:
        """``m = 1`` on the maps: one endmember a pixel (on ``S`` the count is per
        channel, a column)."""
        return self.m == 1 and self.target == "A"

    @property
    def one_per_column(self) -> bool:
        """``m = 1`` on the endmembers: one endmember a channel (orthogonal NMF)."""
        return self.m == 1 and self.target == "S"

    def project(self, M: Any) -> Any:
        """Clip at 0, then keep the ``m`` largest entries of each row of ``A`` (pixels,
        k), or of each column of ``S`` (k, channels)."""
        return self._row_support(M) if self.target == "A" else self._row_support(M.T).T

    def rescale(self, A: Any, S: Any) -> tuple[Any, Any]:
        """A start's balance for ``target="S"``: unit-norm endmembers, their norms moved
        into the maps (``A @ S`` unchanged).  The projection compares a channel's entries
        of the endmembers, so they must share one scale first: from NNDSVDa, whose first
        endmember (the mean spectrum) dwarfs the others, every channel went to it and
        orthogonal NMF on the STM grid lost two of three components.  (On the maps the
        start is kept: balanced or not, neither won on the EELS, Raman and XRD maps.)"""
        if self.target != "S":
            return A, S
        return unit_endmembers(A, S, self.ctx.backend.xp)

    def solve_rows(self, G: Any, B: Any, diag_add: Any = None) -> Any:
        """Exact for every row of ``B`` (pixels, k; for ``target="S"`` channels, k: the
        transposed subproblem of ``S``) up to :data:`MAX_SUBSETS` supports:
        ``argmin 1/2 a (G + diag(c)) a^T - a . b`` over ``a >= 0`` with ``<= m`` non-zeros
        (greedy beyond, see the module).  Returns (rows, k) in the accumulation dtype."""
        be = self.ctx.backend
        k = B.shape[1]
        if self.m >= k:
            return nnls_bpp(G, B, be, diag_add=diag_add)
        if math.comb(k, self.m) <= MAX_SUBSETS:
            return self._exhaustive(be.acc(G), be.acc(B), diag_add)
        return self._greedy(be.acc(G), be.acc(B), diag_add, None)

    def finish(self, A: Any, S: Any, XSt: Any, rows: slice) -> Any:
        """Each pixel refitted by NNLS over the best support of size ``m`` (see module)."""
        k = A.shape[1]
        if XSt is None or self.m >= k or A.shape[0] == 0:
            return A
        be = self.ctx.backend
        G, B = be.acc(S @ S.T), be.acc(XSt)
        if math.comb(k, self.m) <= MAX_SUBSETS:
            best = self._exhaustive(G, B, None)
        else:
            best = self._greedy(G, B, None, self._row_support(A) != 0)
        return be.xp.astype(best, A.dtype)

    def _exhaustive(self, G: Any, B: Any, diag_add: Any) -> Any:
        """NNLS over every support of size ``m``; the best per pixel."""
        be = self.ctx.backend
        xp = be.xp
        n, k = B.shape
        best = xp.zeros((n, k), dtype=be.acc_dtype, device=be.device)
        best_obj = xp.full((n,), float("inf"), dtype=be.acc_dtype, device=be.device)
        for support in itertools.combinations(range(k), self.m):
            idx = xp.asarray(support, device=be.device)
            G_T = xp.take(xp.take(G, idx, axis=0), idx, axis=1)
            B_T = xp.take(B, idx, axis=1)
            c_T = _columns(diag_add, idx, k, be)
            a = nnls_bpp(G_T, B_T, be, diag_add=c_T)
            obj = _objective(a, G_T, B_T, c_T, xp)
            better = obj < best_obj
            best_obj = xp.where(better, obj, best_obj)
            full = xp.zeros((n, k), dtype=be.acc_dtype, device=be.device)
            for pos, j in enumerate(support):
                full[:, j] = a[:, pos]
            best = xp.where(better[:, None], full, best)
        return best

    def _row_support(self, M: Any) -> Any:
        """The ``m`` largest entries of each row of ``M`` (rows, k), clipped at 0."""
        xp = self.ctx.backend.xp
        M = self.ctx.backend.clip_min(M, 0.0)
        if self.m >= M.shape[1]:
            return M
        order = xp.argsort(-M, axis=1, stable=True)
        rank = xp.argsort(order, axis=1, stable=True)
        return xp.where(rank < self.m, M, xp.zeros_like(M))

    def _greedy(self, G: Any, B: Any, diag_add: Any, current: Any) -> Any:
        """Greedy forward selection of each pixel's support, or ``current`` (a boolean
        (pixels, k) mask: the fit's own support; None: the ``m`` largest entries of the
        unconstrained NNLS), whichever fits better."""
        be = self.ctx.backend
        xp = be.xp
        n, k = B.shape
        if current is None:
            current = self._row_support(nnls_bpp(G, B, be, diag_add=diag_add)) != 0
        chosen = xp.zeros((n, k), dtype=xp.bool, device=be.device)
        for _ in range(self.m):
            best_obj = xp.full((n,), float("inf"), dtype=be.acc_dtype, device=be.device)
            pick = xp.zeros((n,), dtype=xp.int64, device=be.device)
            for j in range(k):
                trial = xp.asarray(chosen, copy=True)
                trial[:, j] = True
                _, obj = _masked_nnls(G, B, trial, diag_add, be)
                better = (obj < best_obj) & ~chosen[:, j]
                best_obj = xp.where(better, obj, best_obj)
                pick = xp.where(better, j, pick)
            chosen = chosen | (xp.arange(k, device=be.device)[None, :] == pick[:, None])
        a_greedy, obj_greedy = _masked_nnls(G, B, chosen, diag_add, be)
        a_fit, obj_fit = _masked_nnls(G, B, current, diag_add, be)
        return xp.where((obj_fit < obj_greedy)[:, None], a_fit, a_greedy)


def _columns(diag_add: Any, idx: Any, k: int, be: Any) -> Any:
    """The diagonal additions of the support's columns (None, per row or per entry)."""
    if diag_add is None:
        return None
    c = be.acc(diag_add)
    return be.xp.take(c, idx, axis=1) if c.shape[-1] == k else c


def _objective(a: Any, G: Any, B: Any, c: Any, xp: Any) -> Any:
    """``1/2 a (G + diag(c)) a^T - a . b`` per row (the residual up to a constant)."""
    quad = (a @ G) * a if c is None else (a @ G) * a + c * a * a
    return 0.5 * xp.sum(quad, axis=1) - xp.sum(a * B, axis=1)


def _masked_nnls(G: Any, B: Any, support: Any, diag_add: Any, be: Any) -> tuple[Any, Any]:
    """NNLS of every row of ``B`` with its components outside ``support`` (a boolean
    (pixels, k) mask) pinned to 0 by a large diagonal weight; ``(maps, objective)``."""
    xp = be.xp
    big = PIN_WEIGHT * max(float(xp.max(xp.linalg.diagonal(G))), be.tiny)
    pin = xp.where(support, 0.0, big)
    c = None if diag_add is None else be.acc(diag_add) * xp.ones_like(pin)
    total = pin if c is None else pin + c
    a = nnls_bpp(G, xp.where(support, B, 0.0), be, diag_add=xp.astype(total, be.acc_dtype))
    a = xp.where(support, a, 0.0)
    return a, _objective(a, G, B, c, xp)
