"""Shape constraints on the endmembers: no dips (:class:`NoDips`), one peak (:class:`Unimodal`).

Both act on each endmember ``s`` (a row of ``S``, k x channels) along the channel axis and
keep it non-negative; both are exact Euclidean projections, row by row, so a solver that
minimizes each row's isotropic quadratic and projects it (HALS) still minimizes the
objective exactly over the set at each step: the fit stays monotone.

:class:`NoDips` is the polyhedral cone::

    s[0] >= 0,   s[m-1] >= 0,   s[c] >= (1 - depth) (s[c-1] + s[c+1]) / 2   for 0 < c < m - 1

i.e. ``(s[c-1] + s[c+1]) / 2 - s[c] <= depth * (s[c-1] + s[c+1]) / 2``: no channel lies
below its two neighbours' mean by more than the fraction ``depth`` of that mean (scale
free: ``A @ S`` moves scale freely between the factors).  The inner inequalities imply
``s >= 0`` (at a negative minimum ``s[c]`` the inequality fails), so ``G s <= 0`` with one
row per channel and ``G`` tridiagonal, diagonally dominant, invertible: a simplicial cone.
Its projection solves the dual ``min_{lam >= 0} 1/2 |v - G^T lam|^2`` (an LCP with the
positive definite, pentadiagonal matrix ``G G^T``) by block principal pivoting (Kim &
Park 2011): each pivot a banded Cholesky, ``O(m)``; a few pivots per row, warm-started
from the row's previous active set (about 1 ms for 3 rows of 394 channels).

:class:`Unimodal` is the union over the mode ``t`` of the convex sets "non-decreasing up to
``t``, non-increasing after, ``>= 0``".  Its projection is the best of those fits: the
squared errors of the non-negative isotonic fits of every prefix (rising) and every suffix
(falling) by pool-adjacent-violators in one pass each (``O(m)``, Stout 2008), the best split
kept, then the two fits rebuilt.

Neither applies to 2-D patterns (``signal_shape`` with two axes): a ValueError says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.linalg import solveh_banded
from scipy.optimize import nnls

from .._backend import to_numpy
from ._terms import BindContext, Constraint

__all__ = ["DEFAULT_DEPTH", "NoDips", "Unimodal", "dip_depths"]

log = logging.getLogger(__name__)

#: the default tolerance of :class:`NoDips`: a dip of at most 0.5 % of the neighbours' mean
DEFAULT_DEPTH = 0.005
#: a violation smaller than this times the row's largest magnitude counts as met
TOL = 1e-10
#: band width of the dual's Gram matrix ``G G^T``
BAND = 2


def dip_depths(S: Any) -> np.ndarray:
    """``(s[c-1] + s[c+1]) / 2 - s[c]`` for every row and inner channel, shape (k, m - 2):
    how far each channel lies below its two neighbours' mean (positive: a dip)."""
    S = np.atleast_2d(np.asarray(to_numpy(S), dtype=float))
    return 0.5 * (S[:, :-2] + S[:, 2:]) - S[:, 1:-1]


def _check_spectra(owner: str, ctx: BindContext) -> None:
    """Refuse 2-D patterns and spectra too short to have an inner channel."""
    if ctx.signal_shape is not None and len(ctx.signal_shape) > 1:
        raise ValueError(
            f"{owner} acts along one spectral axis; the endmembers are 2-D patterns "
            f"{tuple(ctx.signal_shape)}. Drop {owner} (or flatten the patterns yourself)."
        )
    if ctx.n_channels < 3:
        raise ValueError(f"{owner} needs at least 3 channels; X has {ctx.n_channels}.")


class _DipSystem:
    """The constraints ``G s <= 0`` of :class:`NoDips` for ``m`` channels, one per channel:
    ``-s[0] <= 0``, ``beta (s[c-1] + s[c+1]) - s[c] <= 0`` (``beta = (1 - depth) / 2``),
    ``-s[m-1] <= 0``.  ``G`` is tridiagonal and diagonally dominant, hence invertible: the
    set is a simplicial cone, and the Gram matrix ``Q = G G^T`` of the dual is positive
    definite and pentadiagonal (stored as its upper diagonals)."""

    def __init__(self, m: int, depth: float) -> None:
        self.m = self.n = m
        self.beta = 0.5 * (1.0 - depth)
        inner = np.full(m - 1, self.beta)
        upper, lower = inner.copy(), inner.copy()
        upper[0], lower[-1] = 0.0, 0.0  # the end rows are -s[0] and -s[m-1] alone
        G = self.G = sp.diags([lower, -np.ones(m), upper], [-1, 0, 1], format="csr")
        Q = (G @ G.T).todia()
        self.diags = np.zeros((BAND + 1, m))
        for off in range(BAND + 1):
            self.diags[off, : m - off] = Q.diagonal(off)

    def values(self, s: np.ndarray) -> np.ndarray:
        """``G s`` (<= 0 where met)."""
        g = -s.copy()
        g[1:-1] += self.beta * (s[:-2] + s[2:])
        return g

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        """``G^T lam``."""
        out = -lam.copy()
        inner = self.beta * lam[1:-1]
        out[:-2] += inner
        out[2:] += inner
        return out

    def solve(self, F: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``Q[F, F]^{-1} b[F]`` by a banded Cholesky (``Q[F, F]`` keeps the band)."""
        Fi = np.flatnonzero(F)
        ab = np.zeros((BAND + 1, Fi.size))
        ab[BAND] = self.diags[0, Fi]
        for r in range(1, min(BAND, Fi.size - 1) + 1):
            gap = Fi[r:] - Fi[:-r]
            ab[BAND - r, r:] = np.where(gap <= BAND, self.diags[np.minimum(gap, BAND), Fi[:-r]], 0)
        return solveh_banded(ab, b[Fi], check_finite=False)


def _project_no_dips(v: np.ndarray, system: _DipSystem, F0: np.ndarray | None) -> tuple:
    """The Euclidean projection of ``v`` on ``{G s <= 0}`` and its active set, from the
    active set ``F0`` (a cold start when that one does not converge, then the active-set
    method of Lawson & Hanson on the same dual, :func:`_lawson_hanson`)."""
    s, F, done = _pivot(v, system, F0)
    if not done and F0 is not None:
        s, F, done = _pivot(v, system, None)
    if not done:
        s, F, done = _lawson_hanson(v, system, (s, F))
    if not done:
        log.warning("NoDips: the projection of a row stopped before it converged.")
    return s, F


def _lawson_hanson(v: np.ndarray, system: _DipSystem, fallback: tuple) -> tuple:
    """The projection by the dual ``min_{lam >= 0} |v - G^T lam|`` solved as a non-negative
    least-squares problem (``scipy.optimize.nnls``, Lawson & Hanson: finite, each step one
    least-squares solve of the active columns; a dense ``m x m`` matrix).

    Block principal pivoting cycles on some rows: on the EDS TEM JEOL map (295 channels,
    ``unmix run --no-dips``) two rows kept 13-23 infeasible variables after 610 pivots
    and were returned with dips 0.28 and 0.12 deep (of a largest value of 17 and 9).
    Here: about 10 ms each, met to 1e-13.  ``(s, F, converged)``; ``fallback`` (the
    pivoting's last point) where this one fails too."""
    Gt = system.G.T.toarray()
    try:
        lam, _ = nnls(Gt, v, maxiter=50 * system.n)
    except RuntimeError:  # its iteration limit
        return (*fallback, False)
    s = v - Gt @ lam
    tol = TOL * max(float(np.max(np.abs(v))), 1e-300)
    return np.maximum(s, 0.0), lam > 0, bool(np.all(system.values(s) <= tol))


def _pivot(v: np.ndarray, system: _DipSystem, F0: np.ndarray | None) -> tuple:
    """The Euclidean projection of ``v`` on ``{G s <= 0}``: block principal pivoting on the
    dual ``min_{lam >= 0} 1/2 |v - G^T lam|^2`` (Kim & Park 2011, full exchange with the
    backup rule); ``s = v - G^T lam``.  Returns ``(s, active set, converged)``."""
    tol = TOL * max(float(np.max(np.abs(v))), 1e-300)
    if np.all(system.values(v) <= tol):
        return v, np.zeros(system.n, dtype=bool), True
    F = np.zeros(system.n, dtype=bool) if F0 is None else F0.copy()
    b = system.values(v)
    best, chances = system.n + 1, 3
    for _ in range(2 * system.n + 20):
        lam = np.zeros(system.n)
        if F.any():
            lam[F] = system.solve(F, b)
        shift = system.adjoint(lam)
        s = v - shift
        y = -system.values(s)
        slack = max(tol, TOL * float(np.max(np.abs(shift))))  # the rounding of y
        bad = np.flatnonzero((F & (lam < -slack)) | (~F & (y < -slack)))
        if bad.size == 0:
            return np.maximum(s, 0.0), F, True
        if bad.size < best:
            best, chances = bad.size, 3
        elif chances > 0:
            chances -= 1
        else:
            bad = bad[-1:]
        F[bad] = ~F[bad]
    return np.maximum(s, 0.0), F, False


@dataclass(frozen=True)
class NoDips(Constraint):
    """No endmember channel dips below its neighbours' mean by more than a fraction.

    Every endmember ``s`` (a row of ``S``, ``m`` channels) satisfies::

        (s[c-1] + s[c+1]) / 2 - s[c] <= depth * (s[c-1] + s[c+1]) / 2,   0 < c < m - 1
        s >= 0   (implied by the above with s[0], s[m-1] >= 0)

    A convex cone: the scale of a row is free, so the constraint is scale free.
    A small ``depth`` asks every endmember to be nearly concave; ``depth = 1`` is ``s >= 0``
    alone (``depth = 0``, exact concavity, makes the projection ill-conditioned: refused).
    The default (0.5 %) keeps real peaks and removes the negative peaks plain NMF carves
    into a component where another one has a peak.  The projection is exact (see the
    module); put ``NoDips`` instead of ``NonNegative`` on ``S`` (``[NonNegative(target="A"),
    NoDips()]``: it holds ``S >= 0`` itself; a clip before it makes the step inexact).
    Solvers that project rows of ``S`` take it: HALS (``"auto"`` for Frobenius,
    monotone), ADMM and the gradient solver.

    Parameters
    ----------
    depth : float
        The largest dip allowed, as a fraction of the neighbours' mean (``0 < depth <= 1``).
    target : {"S"}
        The endmembers (k, channels); 1-D spectra only.
    """

    depth: float = DEFAULT_DEPTH
    target: str = field(default="S", kw_only=True)
    _allowed_targets = ("S",)
    separable = "rows"

    def __post_init__(self) -> None:
        super().__post_init__()
        d = self.depth
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not (0 < d <= 1):
            raise ValueError(
                f"NoDips: depth must be a number in (0, 1] (the dip allowed, a fraction of "
                f"the neighbours' mean; 0, strict concavity, is ill-conditioned); got {d!r}, "
                f"e.g. NoDips(depth={DEFAULT_DEPTH})."
            )

    def _prepare(self, ctx: BindContext) -> None:
        _check_spectra("NoDips", ctx)
        object.__setattr__(self, "_system", _DipSystem(ctx.n_channels, float(self.depth)))
        object.__setattr__(self, "_active", {})

    @property
    def implies_nonneg(self) -> bool:
        """Every feasible endmember is ``>= 0``."""
        return True

    def project(self, M: Any) -> Any:
        """Each row of ``M`` (k, channels) projected on the cone (see the class)."""
        return self._rows(M, range(M.shape[0]))

    def project_part(self, values: Any, rows: Any, cols: Any) -> Any:
        if not (isinstance(cols, slice) and cols == slice(None)):
            return super().project_part(values, rows, cols)
        return self._rows(values, range(self.ctx.k)[rows])

    def _rows(self, M: Any, rows: Any) -> Any:
        host = np.asarray(to_numpy(M), dtype=np.float64)
        out = np.empty_like(host)
        for i, j in enumerate(rows):
            out[i], self._active[j] = _project_no_dips(host[i], self._system, self._active.get(j))
        return self.ctx.backend.asarray(out, dtype=M.dtype)


def _isotonic_errors(v: np.ndarray) -> np.ndarray:
    """``err[i]``: the squared error of the best non-negative non-decreasing fit of
    ``v[:i + 1]``, for every ``i`` (pool adjacent violators, one pass).  The fit of a
    block of mean ``mu`` is ``max(mu, 0)``: its error is ``sum v^2 - n max(mu, 0)^2``."""
    sums: list[float] = []
    counts: list[int] = []
    gain = 0.0  # sum over blocks of n max(mu, 0)^2
    sq = 0.0
    err = np.empty(v.size)
    for i, x in enumerate(v.tolist()):
        sq += x * x
        total, n = x, 1
        while sums and sums[-1] * n >= total * counts[-1]:
            t, c = sums.pop(), counts.pop()
            gain -= t * t / c if t > 0 else 0.0
            total, n = total + t, n + c
        sums.append(total)
        counts.append(n)
        gain += total * total / n if total > 0 else 0.0
        err[i] = sq - gain
    return err


def _isotonic_fit(v: np.ndarray) -> np.ndarray:
    """The best non-negative non-decreasing fit of ``v`` (pool adjacent violators)."""
    sums: list[float] = []
    counts: list[int] = []
    for x in v.tolist():
        total, n = x, 1
        while sums and sums[-1] * n >= total * counts[-1]:
            total, n = total + sums.pop(), n + counts.pop()
        sums.append(total)
        counts.append(n)
    means = np.maximum(np.array(sums) / np.array(counts), 0.0)
    return np.repeat(means, counts)


def project_unimodal(v: np.ndarray) -> np.ndarray:
    """The nearest non-negative unimodal vector to ``v`` (1-D): rising up to some
    ``t``, falling after; the best ``t`` from the prefix and suffix errors."""
    v = np.asarray(v, dtype=np.float64)
    up = np.concatenate([[0.0], _isotonic_errors(v)])  # up[t]: fit of v[:t]
    down = np.concatenate([_isotonic_errors(v[::-1])[::-1], [0.0]])  # down[t]: v[t:]
    t = int(np.argmin(up + down))
    return np.concatenate([_isotonic_fit(v[:t]), _isotonic_fit(v[t:][::-1])[::-1]])


@dataclass(frozen=True)
class Unimodal(Constraint):
    """Every endmember rises to one peak and falls after it, and is non-negative.

    The set ``{s >= 0 : s[0] <= ... <= s[t] >= s[t+1] >= ... >= s[m-1] for some t}``
    (a union of convex sets, scale free).  The projection is the exact least-squares
    unimodal fit (see the module), so HALS (``"auto"`` for Frobenius) stays monotone;
    ADMM and the gradient solver take it too.  For components that are one band or one
    peak (an elution profile, a single emission line); a spectrum with several peaks
    is flattened between them.  Put it instead of ``NonNegative`` on ``S``.

    Parameters
    ----------
    target : {"S"}
        The endmembers (k, channels); 1-D spectra only.
    """

    target: str = field(default="S", kw_only=True)
    _allowed_targets = ("S",)
    separable = "rows"

    def _prepare(self, ctx: BindContext) -> None:
        _check_spectra("Unimodal", ctx)

    @property
    def implies_nonneg(self) -> bool:
        """Every feasible endmember is ``>= 0``."""
        return True

    def project(self, M: Any) -> Any:
        """Each row of ``M`` (k, channels) replaced by its best unimodal fit."""
        host = np.asarray(to_numpy(M), dtype=np.float64)
        out = np.stack([project_unimodal(row) for row in host]) if host.size else host
        return self.ctx.backend.asarray(out, dtype=M.dtype)
