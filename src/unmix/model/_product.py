"""Bounds on the model, ``lower <= A @ S <= upper`` (bounded matrix approximation).

:class:`ProductBounds` bounds every entry of the model ``A @ S`` (pixels, channels), not
the factors: e.g. a detector's saturation level, or a model that may not exceed the
measured counts.  The set is convex in each factor but no factor's projection reaches it,
so a solver holds it by splitting the model off (``Z = A S``, ``Z`` projected on the box:
AO-ADMM, ``solver="admm"``, see :mod:`unmix.engine.solvers._admm`); the other solvers
refuse it (``separable == "product"``).

The split holds the bound only at convergence, so after the fit :meth:`ProductBounds.finish`
makes every pixel feasible exactly: pixel ``i``'s maps ``a_i`` are multiplied by the scale
``t_i >= 0`` that minimizes its residual ``||x_i - t a_i S||`` (Frobenius: ``t* = <x_i,
y_i> / <y_i, y_i>`` with ``y_i = a_i S``; other losses: ``t* = 1``) among the scales whose
model ``t y_i`` lies within the bounds - an interval ``[t_lo, t_hi]`` computed exactly from
the entries of ``y_i`` - so ``t_i = clip(t*, t_lo, t_hi)``.  The loss rises by the least
any rescaling of the pixel allows; the model then holds the bounds to rounding (the
upper end is pulled in by a few ulps of the maps' dtype).  Where no scale meets both
bounds (a positive lower bound on a channel the pixel's model leaves at 0), the upper
bound wins and a warning counts the pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import to_numpy
from ._constraints import check_bound
from ._terms import BindContext, Constraint

__all__ = ["ProductBounds"]

logger = logging.getLogger("unmix")


@dataclass(frozen=True)
class ProductBounds(Constraint):
    """Bounds on the model: ``lower <= A @ S <= upper`` everywhere (not on the factors).

    ``X`` is (pixels, channels); the bounds are scalars or arrays broadcasting against it:
    (channels,) per channel, (pixels, 1) per pixel, or (pixels, channels).  They apply to
    the model of the data the solver sees (after ``preprocessing``).  Held by
    ``solver="admm"`` (``"auto"`` picks it), exactly after its last feasibility step (see
    the module); other solvers refuse it.

    Parameters
    ----------
    lower, upper : float or array, optional
        The bounds (None: unbounded on that side; at least one is needed).
    target : {"A"}
        The term sits with the maps: its rows are pixels.
    """

    lower: Any = None
    upper: Any = None
    _allowed_targets = ("A",)
    separable = "product"
    finishes = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lower is None and self.upper is None:
            raise ValueError(
                "ProductBounds: give lower and/or upper, e.g. ProductBounds(lower=0.0, "
                "upper=1000.0)."
            )
        for name, bound in (("lower", self.lower), ("upper", self.upper)):
            check_bound("ProductBounds", name, bound)

    def _prepare(self, ctx: BindContext) -> None:
        shape = (ctx.n_pixels, ctx.n_channels)
        start, stop, total = ctx.pixel_range
        out = {}
        for name, bound in (("lower", self.lower), ("upper", self.upper)):
            if bound is None:
                out[name] = None
                continue
            b = np.asarray(to_numpy(bound), dtype=float)
            if b.ndim == 2 and b.shape[0] == total and total != ctx.n_pixels:
                b = b[start:stop]  # this process's pixels
            try:
                np.broadcast_shapes(b.shape, shape)
            except ValueError:
                raise ValueError(
                    f"ProductBounds: {name} has shape {b.shape}, which does not broadcast "
                    f"against X (pixels, channels) of shape {shape}; give a scalar, "
                    "(channels,), (pixels, 1) or (pixels, channels)."
                ) from None
            out[name] = ctx.backend.asarray(b if b.ndim == 2 else b.reshape(1, -1))
        lo, hi = out["lower"], out["upper"]
        if lo is not None and hi is not None and bool(ctx.backend.xp.any(lo > hi)):
            raise ValueError("ProductBounds: lower > upper somewhere; the feasible set is empty.")
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)

    @property
    def scale_free(self) -> bool:
        """Bounds of 0 and infinity hold for ``c * X`` too; other bounds are absolute."""
        finite = [np.asarray(b, dtype=float) for b in (self.lower, self.upper) if b is not None]
        return all(np.all((b == 0) | ~np.isfinite(b)) for b in finite)

    def _cut(self, bound: Any, rows: Any) -> Any:
        """The bound for model rows ``rows`` (broadcasting against them)."""
        if bound is None or bound.shape[0] == 1:
            return bound
        return bound[rows, :]

    def project(self, M: Any) -> Any:
        """Clip the model ``M`` (this process's pixels, channels) to the bounds."""
        return self.project_part(M, slice(None), slice(None))

    def project_part(self, values: Any, rows: Any, cols: Any) -> Any:
        """Clip model rows ``rows`` (``values``: those pixels x all channels)."""
        xp = self.ctx.backend.xp
        lo, hi = self._cut(self._lo, rows), self._cut(self._hi, rows)
        if lo is not None:
            values = xp.maximum(values, xp.astype(lo, values.dtype))
        if hi is not None:
            values = xp.minimum(values, xp.astype(hi, values.dtype))
        return values

    def finish(self, A: Any, S: Any, XSt: Any, rows: slice) -> Any:
        """Each pixel's maps rescaled into the bounds at the least loss (see module)."""
        be = self.ctx.backend
        xp = be.xp
        if A.shape[0] == 0:
            return A
        A64, S64 = be.acc(A), be.acc(S)
        Y = A64 @ S64
        t_lo, t_hi = self._scale_interval(Y, rows)
        if XSt is None:
            t = xp.ones_like(t_lo)
        else:
            num = xp.sum(A64 * be.acc(XSt), axis=1)
            den = xp.sum(Y * Y, axis=1)
            t = xp.where(den > 0, num / xp.where(den > 0, den, 1.0), 1.0)
        empty = t_lo > t_hi
        n_empty = int(xp.sum(xp.astype(empty, xp.int64)))
        if n_empty:
            logger.warning(
                "ProductBounds: %d pixels cannot meet both bounds by a rescaling of their "
                "maps; the upper bound is held there.",
                n_empty,
            )
        eps = float(xp.finfo(A.dtype).eps)
        t = xp.minimum(xp.maximum(t, t_lo), t_hi * (1.0 - 8.0 * eps))
        t = xp.maximum(t, 0.0)
        return xp.astype(A64 * t[:, None], A.dtype)

    def _scale_interval(self, Y: Any, rows: Any) -> tuple[Any, Any]:
        """``(t_lo, t_hi)``: the scales ``t >= 0`` with ``lower <= t Y <= upper`` per row."""
        be = self.ctx.backend
        xp = be.xp
        inf = float("inf")
        t_lo = xp.zeros((Y.shape[0],), dtype=be.acc_dtype, device=be.device)
        t_hi = xp.full((Y.shape[0],), inf, dtype=be.acc_dtype, device=be.device)
        pos, neg = Y > 0, Y < 0
        safe = xp.where(pos | neg, Y, 1.0)
        for bound, upper in (
            (self._cut(self._hi, rows), True),
            (self._cut(self._lo, rows), False),
        ):
            if bound is None:
                continue
            ratio = be.acc(bound) / safe
            caps = pos if upper else neg  # entries whose bound caps t from above
            floors = neg if upper else pos  # ... and from below
            t_hi = xp.minimum(t_hi, xp.min(xp.where(caps, ratio, inf), axis=1))
            t_lo = xp.maximum(t_lo, xp.max(xp.where(floors, ratio, -inf), axis=1))
        return t_lo, t_hi
