"""The one HALS sweep (Cichocki & Phan 2009) with Gillis & Glineur's repeats (2012).

Rows ``m_j`` of a factor held as ``Mt`` (k x n: the transposed maps of a pixel block, or
the endmembers ``S`` itself) are minimized exactly one after the other, each over the
quadratic model::

    1/2 sum_i w_i m_i^T G m_i  -  <P, M>  +  1/2 tr(M^T Q M)  +  <g, M>
        +  1/2 sum c (M - M0)^2

(``m_i`` the i-th column of ``Mt``, ``w`` optional weights of the columns, ``Q`` a penalty's
Gram coupling, ``g`` and ``c`` a penalty's gradient and diagonal curvature at ``M0``), then
mapped by ``project(row, j)`` (clipping to non-negativity, bounds, fixed entries, unit norm).
The coordinate step of row ``j`` is::

    m_j  <-  project(m_j - (w * (G_j Mt) + Q_j Mt + g_j + c_j (m_j - m0_j) - p_j)
                          / (w G_jj + Q_jj + c_j))

Sweeps are repeated (at most ``inner_max``) while they still gain
(:func:`unmix.engine._stop.gains_little`), since the products behind ``P`` and ``G`` cost far
more than a sweep.  Without weights and penalty terms the lean form
``m_j <- project(m_j + p_j / G_jj - (G_j / G_jj) Mt)`` is used (few operations a row).
The compiled twin of the lean form for whole blocks is :mod:`unmix.engine.kernels`.
Leading batch dimensions (``Mt`` of shape (..., k, n)) are swept together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from .._problem import Problem
from .._stop import gains_little

__all__ = ["FactorParts", "PenaltyRows", "endmember_sweeps", "hals_sweeps"]


class FactorParts:
    """The constraints of one factor applied to one column of A (pixels of a block) or
    one row of S alone, through each constraint's :meth:`project_part`."""

    def __init__(self, p: Problem, target: str) -> None:
        self.constraints = list(p.constraints[target])
        self.target = target

    @property
    def plain(self) -> bool:
        """Only the non-negative orthant (or nothing): the lean sweep applies."""
        return all(c.is_orthant for c in self.constraints)

    @property
    def nonneg(self) -> bool:
        return any(c.is_orthant for c in self.constraints)

    @property
    def rescales(self) -> bool:
        return any(c.rescales for c in self.constraints)

    def column(self, a: Any, j: int, rows: slice) -> Any:
        """Project column ``j`` of A restricted to pixel ``rows``."""
        for c in self.constraints:
            a = c.project_part(a, rows, j)
        return a

    def vanishes(self, s: Any) -> bool:
        """True when the row ``s`` is all zero once clipped at 0 (where the factor is
        non-negative): a scale constraint (unit norm) has no direction to give it."""
        xp = array_namespace(s)
        return not bool(xp.any(s > 0) if self.nonneg else xp.any(s != 0))

    def row(self, s: Any, j: int) -> Any:
        """Project row ``j`` of S (as a 1 x channels part)."""
        part = s[None, :]
        for c in self.constraints:
            part = c.project_part(part, slice(j, j + 1), slice(None))
        return part[0, :]


@dataclass
class PenaltyRows:
    """A penalty's local model in the sweep's row orientation (k x n, or scalars).

    ``gram`` (k x k) couples rows; ``grad`` and ``curv`` are per-entry (k x n) or scalars;
    ``M0`` is the factor (k x n) at which ``grad`` and ``curv`` were formed.
    """

    gram: Any = None
    grad: Any = None
    curv: Any = None
    M0: Any = None

    @property
    def empty(self) -> bool:
        return self.gram is None and self.grad is None and self.curv is None


def _row(M: Any, j: int) -> Any:
    """Row ``j`` of a per-entry array (k x n, or 1 x n broadcast), or the scalar itself."""
    if isinstance(M, (int, float)) or getattr(M, "ndim", 0) == 0:
        return M
    return M[..., j, :] if M.shape[-2] > 1 else M[..., 0, :]


def hals_sweeps(
    Mt: Any,
    P: Any,
    G: Any,
    *,
    be: Any,
    project: Callable[[Any, int], Any] | None = None,
    nonneg: bool = True,
    w: Any = None,
    pen: PenaltyRows | None = None,
    rows: Sequence[int] | None = None,
    inner_max: int = 10,
    delta: float | None = 0.1,
) -> Any:
    """Sweep the rows of ``Mt`` (k x n, updated in place and returned); see the module.

    Parameters
    ----------
    Mt : array (..., k, n)
        The factor, rows = components.
    P : array (..., k, n)
        Linear term (e.g. ``S X^T`` for maps, ``A^T X`` for endmembers), weights applied.
    G : array (..., k, k)
        Quadratic coupling of the components (``S S^T`` or ``A^T A``).
    project : callable, optional
        ``project(row, j)`` maps an updated row onto the constraints; default: clip at 0
        when ``nonneg`` else nothing.
    w : array (1, n), optional
        Weights of the columns (pixel or channel weights) multiplying the ``G`` part.
    pen : PenaltyRows, optional
        The penalties' local model.
    rows : sequence of int, optional
        The rows to update (default all; e.g. the endmembers that are not fixed).
    inner_max, delta : int, float or None
        Most sweeps, and the gain rule that ends them early (``delta=None``: exactly
        ``inner_max`` sweeps, no change measured).
    """
    xp = be.xp
    if project is None:
        project = (lambda row, j: be.clip_min(row, 0.0)) if nonneg else (lambda row, j: row)
    lean = w is None and (pen is None or pen.empty)
    step = _lean_step(G, P, be) if lean else _full_step(Mt, P, G, be, w, pen)
    order = range(Mt.shape[-2]) if rows is None else rows
    measure = inner_max > 1 and delta is not None
    first = None
    for _ in range(inner_max):
        change = 0.0
        for j in order:
            new = project(step(Mt, j), j)
            if measure:
                change += float(xp.sum((new - Mt[..., j, :]) ** 2))
            Mt[..., j, :] = new
        if not measure:
            continue
        first = change if first is None else first
        if gains_little(change, first, delta):
            break
    return Mt


def _lean_step(G: Any, P: Any, be: Any) -> Callable[[Any, int], Any]:
    """``m_j + p_j / G_jj - (G_j / G_jj) Mt``: the unweighted, penalty-free update."""
    xp = be.xp
    d = be.clip_min(xp.linalg.diagonal(G), be.tiny)[..., :, None]
    Gs, Q = G / d, P / d

    def step(Mt: Any, j: int) -> Any:
        return Mt[..., j, :] + Q[..., j, :] - (Gs[..., j : j + 1, :] @ Mt)[..., 0, :]

    return step


def _full_step(
    Mt: Any, P: Any, G: Any, be: Any, w: Any, pen: PenaltyRows | None
) -> Callable[[Any, int], Any]:
    """The coordinate Newton step with weights and a penalty's local model."""
    pen = pen or PenaltyRows()
    gram, M0 = pen.gram, pen.M0

    def step(Mt: Any, j: int) -> Any:
        r = G[..., j : j + 1, :] @ Mt
        if w is not None:
            r = r * w
        g = r[..., 0, :] - P[..., j, :]
        d = G[..., j, j] if w is None else G[..., j, j] * w[..., 0, :]
        if gram is not None:
            g = g + (gram[j : j + 1, :] @ Mt)[..., 0, :]
            d = d + gram[j, j]
        if pen.grad is not None:
            g = g + _row(pen.grad, j)
        if pen.curv is not None:
            cj = _row(pen.curv, j)
            g = g + cj * (Mt[..., j, :] - M0[..., j, :])
            d = d + cj
        return Mt[..., j, :] - g / be.clip_min(d, be.tiny)

    return step


def endmember_sweeps(
    p: Problem,
    S: Any,
    sums: dict,
    parts: FactorParts,
    *,
    inner_max: int = 10,
    delta: float | None = 0.1,
) -> Any:
    """HALS sweeps over the endmembers ``S`` (k, channels) from a pass's ``A^T X`` and
    ``A^T A`` (``sums``), with channel weights and the endmembers' own penalties, each row
    projected on its constraints by ``parts``; a row whose target vanishes under a scale
    constraint (unit norm) keeps its value - it has no direction on the sphere.  HALS's
    endmember step, and BPP's when the maps' penalty holds the scale."""
    be, xp = p.be, p.be.xp
    mS = p.model("S", S)
    cw = p.data.channel_w
    P = be.work(sums["AtX"])
    St = xp.asarray(S, copy=True)
    pen = PenaltyRows(None if mS.gram is None else be.work(mS.gram), mS.grad, mS.curv, S)

    def project(row: Any, j: int) -> Any:
        if parts.rescales and parts.vanishes(row):
            return St[j, :]
        return parts.row(row, j)

    return hals_sweeps(
        St,
        P if cw is None else P * cw,
        be.work(sums["AtA"]),
        be=be,
        project=None if parts.plain else project,
        nonneg=parts.nonneg,
        w=cw,
        pen=pen,
        rows=p.free_rows(),
        inner_max=inner_max,
        delta=delta,
    )
