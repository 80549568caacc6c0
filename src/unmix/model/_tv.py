"""Total variation of the maps on the scan grid: piecewise-constant abundance maps.

:class:`TotalVariation` adds ``lam * sum_(i~j) sum_r phi(a_ir - a_jr)`` over neighbouring
pixels ``i ~ j`` of the scan grid (axis neighbours) and every component ``r``, with the
Charbonnier function ``phi(d) = sqrt(d^2 + eps^2) - eps``: ``|d|`` for ``|d| >> eps``, a
parabola near 0 (so the penalty is differentiable).  Unlike the Laplacian of
:class:`~unmix.SpatialSmoothness` (``d^2``), a step between two regions costs its height
once, not its square: edges between phases stay sharp while the noise within a region is
smoothed.

Every solver sees the quadratic that majorizes the penalty at the current maps ``A0``
(``phi(d) <= phi(d0) + (d^2 - d0^2) / (2 sqrt(d0^2 + eps^2))``, half-quadratic / IRLS):
a graph Laplacian whose edge weights ``w = 1 / sqrt(d0^2 + eps^2)`` are refreshed at
every iteration, with the diagonal majorizer ``2 lam D_w`` of :class:`SpatialSmoothness`
(``L_w <= 2 D_w``) - so HALS stays monotone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._grid import grid_shape, line_grid, slab, with_halo
from ._terms import BindContext, Penalty, PenaltyModel

__all__ = ["TotalVariation"]


@dataclass(frozen=True)
class TotalVariation(Penalty):
    """Total variation of the maps: ``lam * sum_(i~j) sum_r (sqrt((a_ir - a_jr)^2 +
    eps^2) - eps)`` over the axis neighbours of the scan grid (4 in 2-D).

    Parameters
    ----------
    lam : float
        Strength (in the units of the data fit per unit of map difference).
    eps : float or None
        Width of the smooth core of the Charbonnier function, in the units of the maps;
        None (the default): ``1e-3`` times the largest map value when the fit starts (on
        every process the same value).
    """

    eps: float | None = None
    target: str = field(default="A", kw_only=True)
    _allowed_targets = ("A",)
    couples_pixels = True  # its model majorizes by a diagonal (not exact)

    @property
    def label(self) -> str:
        return "TV(A)"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eps is not None and not (isinstance(self.eps, (int, float)) and self.eps > 0):
            raise ValueError(
                f"TotalVariation: eps must be a positive number or None; got {self.eps!r}."
            )

    def _prepare(self, ctx: BindContext) -> None:
        object.__setattr__(self, "_shape", grid_shape(ctx, "TotalVariation"))
        object.__setattr__(self, "_eps", None if self.eps is None else float(self.eps))

    def value(self, M: Any) -> float:
        """Each edge counted half at each end (so split pixels add up to the serial sum)."""
        xp = self.ctx.backend.xp
        phi, _, _ = self._edges(M)
        return 0.5 * self.lam * float(xp.sum(phi))

    def model(self, M: Any) -> PenaltyModel:
        lam = self.lam
        _, deg, nbr = self._edges(M)
        eps = self._eps_value(M)
        n_axes = len(self._shape)
        return PenaltyModel(
            grad=lam * (deg * M - nbr),
            curv=2.0 * lam * deg,
            lipschitz=4.0 * lam * n_axes / eps,  # 2 lam max(D_w), w <= 1 / eps
            mu_pos=lam * deg * M,
            mu_neg=lam * nbr,
        )

    def _eps_value(self, M: Any) -> float:
        """``eps``, or ``1e-3`` the largest map value of the first call (all processes)."""
        if self._eps is None:
            xp = self.ctx.backend.xp
            local = float(xp.max(xp.abs(M))) if M.shape[0] else 0.0
            top = self._global_max(local)
            object.__setattr__(self, "_eps", 1e-3 * top if top > 0 else 1e-12)
        return self._eps

    def _global_max(self, local: float) -> float:
        ex = self.ctx.executor
        if not self.ctx.distributed or ex is None:
            return local
        onehot = np.zeros(int(getattr(ex, "size", 1)))
        onehot[int(getattr(ex, "rank", 0))] = local
        return float(np.max(ex.allreduce(onehot)))

    def _edges(self, M: Any) -> tuple[Any, Any, Any]:
        """Per own pixel and component: ``sum_j phi(a_i - a_j)``, the weighted degree
        ``sum_j w_ij`` and ``sum_j w_ij a_j`` over its grid neighbours ``j``."""
        xp = self.ctx.backend.xp
        eps = self._eps_value(M)
        shape = self._shape
        ext, off = with_halo(self.ctx, M, 1, slab(shape))
        k = M.shape[1]
        V = xp.reshape(ext, (*line_grid(shape, ext.shape[0]), k))
        phi, deg, nbr = xp.zeros_like(V), xp.zeros_like(V), xp.zeros_like(V)
        for ax in range(len(shape)):
            if V.shape[ax] < 2:
                continue
            lo, hi = _cut(V.ndim, ax, 0, -1), _cut(V.ndim, ax, 1, None)
            D = V[hi] - V[lo]
            root = xp.sqrt(D * D + eps * eps)
            w = 1.0 / root
            for a, b in ((lo, hi), (hi, lo)):  # each edge seen from both of its ends
                phi[a] += root - eps
                deg[a] += w
                nbr[a] += w * V[b]
        out = [xp.reshape(t, ext.shape) for t in (phi, deg, nbr)]
        if ext is not M:
            out = [t[off : off + M.shape[0], :] for t in out]
        return out[0], out[1], out[2]


def _cut(ndim: int, axis: int, start: int, stop: int | None) -> tuple:
    """The index that slices ``axis`` from ``start`` to ``stop`` (all of the others)."""
    index = [slice(None)] * ndim
    index[axis] = slice(start, stop)
    return tuple(index)
