"""Hard constraints on the maps ``A`` (pixels x k) or the endmembers ``S`` (k x channels).

Each is a projection (see :mod:`unmix.model`).  Pass them as
``factorize(X, k, constraints=[NonNegative(), SumToOne()])``.  ``constraints=None`` means
the NMF default ``[NonNegative()]`` (both factors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._backend import to_numpy
from .._ops import project_simplex_rows
from ._terms import BindContext, Constraint

__all__ = [
    "Bounds",
    "FixedEndmembers",
    "NonNegative",
    "Orthogonal",
    "SumToOne",
    "UnitNorm",
    "holds_scale",
    "unit_endmembers",
]


def _is_number(value: Any) -> bool:
    """A real number (booleans and strings are not)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True)
class NonNegative(Constraint):
    """``A >= 0`` and/or ``S >= 0``.

    Parameters
    ----------
    target : {"both", "A", "S"}
        Which factor is non-negative.  ``"both"`` is standard NMF; ``"S"`` alone is
        semi-NMF (signed maps, e.g. for centered data).
    """

    target: str = field(default="both", kw_only=True)
    _allowed_targets = ("both", "A", "S")
    separable = "entries"
    is_orthant = True

    def parts(self) -> list[NonNegative]:
        """One term a factor (``"both"`` becomes an A and an S term)."""
        if self.target == "both":
            return [NonNegative(target="A"), NonNegative(target="S")]
        return [self]

    def project(self, M: Any) -> Any:
        return self.ctx.backend.clip_min(M, 0.0)

    def project_part(self, values: Any, rows: Any, cols: Any) -> Any:
        return self.ctx.backend.clip_min(values, 0.0)


@dataclass(frozen=True)
class SumToOne(Constraint):
    """Each pixel's abundances are non-negative and sum to ``total`` (rows of ``A``).

    The projection onto the scaled simplex is exact (sort based), so the constraint
    holds to rounding error after every iteration.
    """

    total: float = 1.0
    _allowed_targets = ("A",)
    separable = "rows"
    simplex_rows = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (_is_number(self.total) and np.isfinite(self.total) and self.total > 0):
            raise ValueError(f"SumToOne: total must be a finite number > 0; got {self.total!r}.")

    @property
    def row_sum(self) -> float:  # type: ignore[override]
        return float(self.total)

    def project(self, M: Any) -> Any:
        return project_simplex_rows(M, self.ctx.backend.xp, self.total)

    def rescale(self, A: Any, S: Any) -> tuple[Any, Any]:
        """One scale for all pixels: ``A`` divided by its mean row sum over ``total``,
        ``S`` multiplied by it, so that the projection onto the simplex moves each pixel's
        abundances little (instead of leaving one component per pixel)."""
        xp = self.ctx.backend.xp
        sums = xp.sum(xp.abs(A), axis=1)
        total = float(self.ctx.reduce(float(xp.sum(sums))))  # every process: collective
        mean = total / max(self.ctx.pixel_range[2], 1) / self.total
        if not (np.isfinite(mean) and mean > 0):
            return A, S
        return A / mean, S * mean


def check_bound(owner: str, name: str, bound: Any, wrong: float | None = None) -> None:
    """Refuse a bound that is not a number or an array of numbers, holds NaN, or (when
    ``wrong`` is given) the infinity that would make the set empty."""
    if bound is None:
        return
    try:
        values = np.asarray(to_numpy(bound), dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: {name} must be a number or an array; got {bound!r}.") from None
    bad = np.any(np.isnan(values)) or (wrong is not None and np.any(values == wrong))
    if bad:
        what = "NaN" if wrong is None else f"NaN or {wrong:+}"
        raise ValueError(
            f"{owner}: {name} holds {what}; give numbers (-inf/+inf for no bound), e.g. "
            f"{owner}(lower=0.0, upper=1.0)."
        )


@dataclass(frozen=True)
class Bounds(Constraint):
    """Box bounds ``lower <= M <= upper`` (scalars or arrays broadcasting against ``M``).

    For ``target="S"`` a 1-D array of length n_channels bounds each channel; for
    ``target="A"`` a 1-D array of length k bounds each component.
    """

    lower: Any = 0.0
    upper: Any = None
    separable = "entries"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, bound, wrong in (("lower", self.lower, np.inf), ("upper", self.upper, -np.inf)):
            check_bound("Bounds", name, bound, wrong)

    def _prepare(self, ctx: BindContext) -> None:
        be = ctx.backend
        shape = ctx.shape_of(self.target)
        lo = None if self.lower is None else be.asarray(np.asarray(self.lower, dtype=float))
        hi = None if self.upper is None else be.asarray(np.asarray(self.upper, dtype=float))
        for name, b in (("lower", lo), ("upper", hi)):
            if b is not None:
                try:
                    np.broadcast_shapes(tuple(b.shape), shape)
                except ValueError:
                    raise ValueError(
                        f"Bounds: {name} has shape {tuple(b.shape)}, which does not broadcast "
                        f"against {self.target} of shape {shape}."
                    ) from None
        if lo is not None and hi is not None and bool(be.xp.any(lo > hi)):
            raise ValueError("Bounds: lower > upper somewhere; the feasible set is empty.")
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)

    @property
    def implies_nonneg(self) -> bool:
        """True when the lower bound is >= 0 everywhere."""
        return self.lower is not None and bool(np.all(np.asarray(self.lower) >= 0))

    @property
    def scale_free(self) -> bool:
        """Bounds of 0 and infinity hold for ``c * X`` too; other bounds are absolute."""
        finite = [np.asarray(b, dtype=float) for b in (self.lower, self.upper) if b is not None]
        return all(np.all((b == 0) | ~np.isfinite(b)) for b in finite)

    def project(self, M: Any) -> Any:
        xp = self.ctx.backend.xp
        if self._lo is not None:
            M = xp.maximum(M, self._lo)
        if self._hi is not None:
            M = xp.minimum(M, self._hi)
        return M

    def project_part(self, values: Any, rows: Any, cols: Any) -> Any:
        xp = self.ctx.backend.xp
        shape = self.ctx.shape_of(self.target)
        for bound, clip in ((self._lo, xp.maximum), (self._hi, xp.minimum)):
            if bound is not None:
                values = clip(values, xp.broadcast_to(bound, shape)[rows, cols])
        return values


@dataclass(frozen=True)
class FixedEndmembers(Constraint):
    """Known spectra (e.g. from a library) held fixed while the others are fitted.

    Parameters
    ----------
    spectra : array, shape (r, n_channels)
        The known endmembers.
    rows : sequence of int, optional
        Which rows of ``S`` they occupy (default: the first ``r``).
    mask : bool array, shape (r, n_channels), optional
        Partly known spectra: only entries where ``mask`` is True are fixed.
    """

    spectra: Any = None
    rows: Any = None
    mask: Any = None
    target: str = field(default="S", kw_only=True)
    _allowed_targets = ("S",)
    separable = "entries"

    @property
    def scale_free(self) -> bool:
        """The known spectra carry the data's units."""
        return False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.spectra is None:
            raise ValueError("FixedEndmembers: spectra (r, n_channels) is required.")

    def _prepare(self, ctx: BindContext) -> None:
        values = np.asarray(to_numpy(self.spectra), dtype=float)
        if values.ndim == 1:
            values = values[None, :]
        r = values.shape[0]
        if values.shape[1] != ctx.n_channels:
            raise ValueError(
                f"FixedEndmembers: spectra have {values.shape[1]} channels but X has "
                f"{ctx.n_channels}."
            )
        rows = list(range(r)) if self.rows is None else [int(i) for i in self.rows]
        if len(rows) != r or len(set(rows)) != r or min(rows) < 0 or max(rows) >= ctx.k:
            raise ValueError(
                f"FixedEndmembers: rows={rows} must be {r} distinct indices in [0, k={ctx.k})."
            )
        if not np.all(np.isfinite(values)):
            raise ValueError("FixedEndmembers: spectra contain NaN or Inf.")
        if ctx.nonneg_S and np.any(values < 0):
            raise ValueError(
                "FixedEndmembers: spectra have negative entries but S is constrained >= 0."
            )
        full = np.zeros((ctx.k, ctx.n_channels))
        fixed = np.zeros((ctx.k, ctx.n_channels), dtype=bool)
        full[rows] = values
        if self.mask is None:
            fixed[rows] = True
        else:
            m = np.asarray(to_numpy(self.mask), dtype=bool).reshape(values.shape)
            fixed[rows] = m
        be = ctx.backend
        object.__setattr__(self, "_values", be.asarray(full))
        object.__setattr__(self, "_fixed", be.asarray(fixed, dtype=be.xp.bool))
        object.__setattr__(self, "_fixed_np", fixed)

    @property
    def frozen_rows(self) -> list[int]:
        """Rows of ``S`` that are fixed entirely."""
        return [int(i) for i in np.nonzero(self._fixed_np.all(axis=1))[0]]

    @property
    def whole_rows(self) -> bool:
        """True when every fixed entry belongs to a fully fixed row."""
        rows_any = self._fixed_np.any(axis=1)
        return bool(np.all(self._fixed_np[rows_any]))

    def fixed(self) -> tuple[Any, Any]:
        return self._fixed, self._values

    def project(self, M: Any) -> Any:
        return self.ctx.backend.xp.where(self._fixed, self._values, M)

    def project_part(self, values: Any, rows: Any, cols: Any) -> Any:
        return self.ctx.backend.xp.where(self._fixed[rows, cols], self._values[rows, cols], values)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["spectra"] = np.asarray(self._values_host()).tolist() if hasattr(self, "_ctx") else None
        return d

    def _values_host(self) -> np.ndarray:
        return to_numpy(self._values)[self._fixed_np.any(axis=1)]


def holds_scale(constraints: Any) -> bool:
    """Whether the constraints fix the share of scale between maps and endmembers:
    unit-norm endmembers (``rescales``) or maps whose rows sum to a constant
    (``simplex_rows``).  Without either, a penalty on one factor is escaped by
    shrinking it and growing the other."""
    return any(c.rescales or c.simplex_rows for c in constraints)


def unit_endmembers(A: Any, S: Any, xp: Any) -> tuple[Any, Any]:
    """``(A, S)`` with every non-zero endmember (row of ``S``) at unit norm and its norm
    moved into the matching map (column of ``A``): ``A @ S`` unchanged."""
    norms = xp.sqrt(xp.sum(S * S, axis=1))
    norms = xp.where(norms > 0, norms, 1.0)
    return A * norms[None, :], S / norms[:, None]


@dataclass(frozen=True)
class UnitNorm(Constraint):
    """Each endmember (row of ``S``) has unit Euclidean norm (removes the scale ambiguity)."""

    target: str = field(default="S", kw_only=True)
    _allowed_targets = ("S",)
    separable = "rows"
    rescales = True

    def rescale(self, A: Any, S: Any) -> tuple[Any, Any]:
        """Each endmember to unit norm, its norm moved into the matching map."""
        return unit_endmembers(A, S, self.ctx.backend.xp)

    def project(self, M: Any) -> Any:
        """Each row to unit norm (after clipping at 0 with non-negative ``S``); an
        all-zero row, equally far from every unit row, goes to the flat one
        ``1 / sqrt(m)``."""
        xp = self.ctx.backend.xp
        if self.ctx.nonneg_S:
            M = xp.clip(M, min=0.0)
        norms = xp.sqrt(xp.sum(M * M, axis=1, keepdims=True))
        dead = norms <= self.ctx.backend.tiny
        M = xp.where(dead, 1.0 / math.sqrt(M.shape[1]), M)
        return M / xp.where(dead, 1.0, norms)


@dataclass(frozen=True)
class Orthogonal(Constraint):
    """Orthonormal endmembers, ``S @ S.T = I`` (PCA / SVD in the same framework).

    Projection: the polar factor ``U @ Vt`` of ``S = U diag(s) Vt``.
    """

    target: str = field(default="S", kw_only=True)
    _allowed_targets = ("S",)
    is_orthonormal = True

    def _prepare(self, ctx: BindContext) -> None:
        if ctx.nonneg_S:
            raise ValueError(
                "Orthogonal (orthonormal rows, as PCA) with S >= 0: for orthogonal NMF "
                "(non-negative S with orthogonal rows: each channel in one endmember) use "
                "constraints=[NonNegative(), MaxActive(1, target='S')]; for PCA-like factors "
                "drop NonNegative on S (constraints=[Orthogonal()])."
            )

    def project(self, M: Any) -> Any:
        xp = self.ctx.backend.xp
        U, _, Vt = xp.linalg.svd(M, full_matrices=False)
        return U @ Vt
