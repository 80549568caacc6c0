"""Soft regularizers (penalties added to the objective) and between-iteration filters.

The objective of :func:`unmix.factorize` is ``loss(X, f(A @ S)) + sum_i penalty_i``.  The
penalties here, for a factor ``M`` (``A``: pixels x k, or ``S``: k x channels):

================================  ====================================================
``L1(lam)``                       ``lam * sum |M|``                       (sparsity)
``L2(lam)``                       ``lam / 2 * ||M||_F^2``                 (ridge)
``SpatialSmoothness(lam, ...)``   ``lam / 2 * tr(A^T L A)``, ``L`` the graph Laplacian of
                                  the 4/8-neighbour scan grid (Cai et al. 2011)
``MinVolume(lam, delta)``         ``lam / 2 * logdet(S S^T + delta I)``
                                  (Leplat, Gillis & Ang 2020)
================================  ====================================================

Filters act between iterations and are not part of the objective:
``GaussianMapFilter(sigma)`` smooths each map on the scan grid (sigma in pixels; the
probe's spatial resolution of Uesugi et al. 2021), ``SpectralSmoothing`` applies a
Gaussian or a median filter to each spectrum, or to each 2-D pattern when
``signal_shape`` is 2-D (removing "downward-convex peaks" of 4D-STEM patterns).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._backend import to_numpy
from .._linalg import svd_blocks
from .._ops import grid_neighbor_sum, line_window
from ._constraints import holds_scale
from ._grid import grid_shape, line_grid, slab, with_halo
from ._smoothing import (
    check_median_size,
    check_positive,
    gaussian_reach,
    gaussian_smooth,
    median_smooth,
)
from ._terms import BindContext, Filter, Penalty, PenaltyModel

__all__ = [
    "L1",
    "L2",
    "GaussianMapFilter",
    "MinVolume",
    "SpatialSmoothness",
    "SpectralSmoothing",
]


def _label(name: str, target: str) -> str:
    return f"{name}({target})"


@dataclass(frozen=True)
class L1(Penalty):
    """Sparsity: ``lam * sum |M|``.  On a non-negative factor it is linear."""

    has_prox = True
    smooth = False
    quadratic = True  # linear on a non-negative factor (its model is then exact)

    def constant_gradient(self) -> float | None:
        """``lam`` on a non-negative factor (a linear penalty), else None."""
        return float(self.lam) if self._nonneg() and np.isscalar(self.lam) else None

    @property
    def label(self) -> str:
        return _label("L1", self.target)

    def value(self, M: Any) -> float:
        xp = self.ctx.backend.xp
        return self.lam * float(xp.sum(xp.abs(M)))

    def model(self, M: Any) -> PenaltyModel:
        if not self._nonneg():
            xp = self.ctx.backend.xp
            g = self.lam * xp.sign(M)
            return PenaltyModel(grad=g)
        return PenaltyModel(grad=self.lam, mu_pos=self.lam)

    def _nonneg(self) -> bool:
        return self.ctx.nonneg_A if self.target == "A" else self.ctx.nonneg_S

    def prox(self, V: Any, step: float) -> Any:
        xp = self.ctx.backend.xp
        t = step * self.lam
        return xp.sign(V) * xp.clip(xp.abs(V) - t, min=0.0)


@dataclass(frozen=True)
class L2(Penalty):
    """Ridge: ``lam / 2 * ||M||_F^2`` (exactly quadratic: a ``lam * I`` Gram term)."""

    has_prox = True
    quadratic = True

    @property
    def label(self) -> str:
        return _label("L2", self.target)

    def value(self, M: Any) -> float:
        xp = self.ctx.backend.xp
        return 0.5 * self.lam * float(xp.sum(M * M))

    def model(self, M: Any) -> PenaltyModel:
        be = self.ctx.backend
        return PenaltyModel(
            gram=self.lam * be.eye(self.ctx.k, dtype=be.acc_dtype), mu_pos=self.lam * M
        )

    def prox(self, V: Any, step: float) -> Any:
        return V / (1.0 + step * self.lam)


@dataclass(frozen=True)
class SpatialSmoothness(Penalty):
    """Graph-Laplacian smoothness of the maps on the scan grid.

    ``lam / 2 * tr(A^T L A) = lam / 2 * sum_(i~j) ||a_i - a_j||^2`` over neighbouring
    pixels ``i ~ j`` of the scan grid ``spatial_shape`` (taken from the problem).

    Parameters
    ----------
    lam : float
        Strength.
    neighbors : {4, 8}
        Grid connectivity for 2-D scans (8 adds diagonals); N-D scans use axis neighbours.

    With the pixels split over processes (:class:`unmix.mpi.MPIExecutor`) each process
    receives the scan line just above and just below its rows from its neighbours
    (a halo exchange) and evaluates the penalty on its own pixels; the sum over the
    processes is the serial value.
    """

    neighbors: int = 4
    target: str = field(default="A", kw_only=True)
    _allowed_targets = ("A",)
    couples_pixels = True  # its model majorizes by a diagonal (not exact: quadratic False)

    @property
    def label(self) -> str:
        return "Smooth(A)"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.neighbors not in (4, 8) or isinstance(self.neighbors, bool):
            raise ValueError(
                f"SpatialSmoothness: neighbors must be 4 or 8; got {self.neighbors!r}."
            )

    def _prepare(self, ctx: BindContext) -> None:
        shape = grid_shape(ctx, "SpatialSmoothness")
        diagonal = self.neighbors == 8
        if diagonal and len(shape) != 2:
            raise ValueError("SpatialSmoothness: neighbors=8 needs a 2-D spatial_shape.")
        be = ctx.backend
        start, stop, total = ctx.pixel_range
        lo, hi = line_window(start, stop, total, 1, slab(shape))
        ones = be.ones((*line_grid(shape, hi - lo), 1))
        deg = grid_neighbor_sum(ones, be.xp, n_axes=len(shape), diagonal=diagonal)
        deg = be.xp.reshape(deg, (-1, 1))[start - lo : stop - lo, :]
        small = be.ones((*(min(s, 3) for s in shape), 1))  # has every degree of the grid
        max_deg = grid_neighbor_sum(small, be.xp, n_axes=len(shape), diagonal=diagonal)
        object.__setattr__(self, "_shape", shape)
        object.__setattr__(self, "_diag", diagonal)
        object.__setattr__(self, "_deg", deg)
        object.__setattr__(self, "_max_deg", float(be.xp.max(max_deg)) if total > 1 else 0.0)

    def _neighbors(self, A: Any) -> Any:
        """``W A`` on this process's pixels (neighbours' scan lines fetched when split)."""
        xp = self.ctx.backend.xp
        ext, off = with_halo(self.ctx, A, 1, slab(self._shape))
        V = xp.reshape(ext, (*line_grid(self._shape, ext.shape[0]), A.shape[1]))
        W = grid_neighbor_sum(V, xp, n_axes=len(self._shape), diagonal=self._diag)
        W = xp.reshape(W, ext.shape)
        return W if ext is A else W[off : off + A.shape[0], :]

    def value(self, M: Any) -> float:
        xp = self.ctx.backend.xp
        LA = self._deg * M - self._neighbors(M)
        return 0.5 * self.lam * float(xp.sum(M * LA))

    def model(self, M: Any) -> PenaltyModel:
        # L = D - W and L <= 2 D, so the diagonal 2 lam D majorizes the quadratic.
        WA = self._neighbors(M)
        DA = self._deg * M
        lam = self.lam
        return PenaltyModel(
            grad=lam * (DA - WA),
            curv=2.0 * lam * self._deg,
            lipschitz=2.0 * lam * self._max_deg,
            mu_pos=lam * DA,
            mu_neg=lam * WA,
        )


#: MinVolume(scale="residual"): the strength's energy is at most this share of the spread
SPREAD_CAP = 0.1


def _residual_energy(problem: Any) -> tuple[float, float]:
    """``(residual, spread)``: the energy of ``X`` outside its best rank-``k``
    approximation and the energy its components 2..k span, in the units of the loss.

    Frobenius: of ``X`` itself (pixel weights included), ``sum_{j>k} sigma_j^2`` and
    ``sum_{1<j<=k} sigma_j^2`` - twice the loss of the best rank-k fit.  A beta-divergence
    ``d(x | y) ~ (x - y)^2 y^(beta-2) / 2`` near a good fit: the same energies of ``X``
    scaled entry by entry by the square root of that curvature at the independence model
    ``y_ij = r_i c_j / T`` (pixel and channel sums; for KL the Poisson scaling
    ``X / sqrt(r_i c_j)``), so the strength is in the divergence's units and follows
    ``c * X`` as the divergence does (``c^beta``).  From the squared norm of ``X`` on a KL
    fit of the EELS map the strength was 1.5x the whole objective (1.7e9 against 1.1e9)
    and two of three endmembers collapsed; it also grew as ``c^2`` with the data's unit.
    """
    from ..blocks import ScaledData, curvature_scales

    data, beta = problem.data, float(problem.loss.beta)
    if problem.loss.is_frobenius:
        view, unit, total = data.weighted_view(), 1.0, data.norm2()
    else:
        view = ScaledData(data, *curvature_scales(data, beta))
        mean = float(np.sum(data.count_sums()[1])) / max(data.n_total * data.n_channels, 1)
        unit = mean ** (2.0 - beta) if mean > 0 else 0.0
        total = view.norm2()
    _, s, _ = svd_blocks(view, problem.k, problem.be, rng=np.random.default_rng(0), n_iter=4)
    energies = np.sort(_host(s) ** 2)[::-1]
    residual = max(total - float(np.sum(energies)), 0.0)
    return unit * residual, unit * float(np.sum(energies[1:]))


@dataclass(frozen=True)
class MinVolume(Penalty):
    """Minimum volume of the endmember simplex: ``lam / 2 * logdet(S S^T + delta I)``.

    Majorized at the current ``S`` by the quadratic ``lam / 2 * tr(Y S S^T)`` with
    ``Y = (S S^T + delta I)^-1`` (a Gram term ``lam * Y``).

    Parameters
    ----------
    lam : float
        Strength, made scale-free according to ``scale``.
    delta : float
        Regularization of the log-determinant, also scaled according to ``scale``.
    scale : {"init", "residual", "none"}
        ``"init"`` (default): ``lam`` is multiplied by ``loss(A0, S0) /
        |logdet(S0 S0^T + delta I)|`` (Leplat et al.) and ``delta`` by
        ``max(diag(S0 S0^T))``, so values near 0.1-1 suit any data scale, but they
        depend on the start.  ``"residual"``: ``lam`` is multiplied by the energy of ``X``
        outside its best rank-k approximation, ``sum_{j>k} sigma_j^2`` (pixel weights
        included), capped at :data:`SPREAD_CAP` times the energy its components 2..k
        span, ``sum_{1<j<=k} sigma_j^2``, and ``delta`` by the mean weighted squared pixel
        norm (endmembers on the data's scale, the maps summing to one) or not at all
        (endmembers of unit norm, :class:`UnitNorm`) - independent of the start (the
        blind-unmixing preset).  For a beta-divergence the energies are those of ``X``
        scaled by the divergence's curvature (:func:`_residual_energy`; KL: the Poisson
        scaling), in the divergence's units; not for l2,1.  The cap binds only
        on noise-dominated data: on the hyperspectral scenes the residual is 2-4 % of that
        spread, on EDS maps at a few counts per pixel 4-6 times it, where the uncapped
        penalty flattened the simplex (every component but one collapsed).  ``"none"``:
        both absolute.

    Something must hold the endmembers' scale - :class:`SumToOne` on the maps or
    :class:`UnitNorm` on the endmembers - or they shrink while the maps grow, the
    penalty fades and the fit ends as plain NMF's (a ``RuntimeWarning`` says so).
    """

    delta: float = 0.1
    scale: str = "init"
    target: str = field(default="S", kw_only=True)
    _allowed_targets = ("S",)

    @property
    def scale_free(self) -> bool:
        """Relative strengths (``scale="init"`` or ``"residual"``) follow the data."""
        return self.scale != "none" or not self.lam

    @property
    def label(self) -> str:
        return "MinVol(S)"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.delta, "MinVolume", "delta")
        if self.scale not in ("init", "residual", "none"):
            raise ValueError(
                f"MinVolume: scale must be 'init', 'residual' or 'none'; got {self.scale!r}."
            )

    def _prepare(self, ctx: BindContext) -> None:
        delta = self.delta if self.scale == "none" else None
        object.__setattr__(self, "_state", {"delta": delta, "lam": self.lam})

    def on_data(self, problem: Any) -> None:
        unit_norm = any(c.rescales for c in problem.constraints["S"])
        if not holds_scale(problem.constraints["A"] + problem.constraints["S"]):
            warnings.warn(
                "MinVolume without SumToOne() on the maps or UnitNorm() on the endmembers: "
                "nothing holds the endmembers' scale, so they shrink (the maps grow) until "
                "the volume penalty fades and the fit ends as plain NMF's. Add SumToOne() "
                "or UnitNorm() (the command line adds a unit norm to --min-volume without "
                "--sum-to-one).",
                RuntimeWarning,
                stacklevel=2,
            )
        if self.scale != "residual":
            return
        if problem.loss.reweights_pixels:
            raise ValueError(
                "MinVolume(scale='residual') scales lam by the energy of X outside its best "
                "rank-k approximation, in the units of a squared norm or a beta-divergence; "
                "loss='l21' is a sum of norms: use scale='init' (lam relative to the loss at "
                "the start; the command line's --min-volume picks it)."
            )
        residual, spread = _residual_energy(problem)
        self._state["lam"] = self.lam * min(residual, SPREAD_CAP * spread)
        data = problem.data
        total = data.norm2()
        if unit_norm:  # rows of S of norm 1: delta is on their scale already
            self._state["delta"] = self.delta
        else:  # S on the data's scale (the maps' rows sum to one)
            self._state["delta"] = self.delta * total / max(data.weight_total(), 1e-300)

    def on_init(self, A: Any, S: Any, loss_value: float) -> None:
        if self.scale != "init":
            return
        G = _host(S @ S.T)
        delta = self.delta * max(float(np.max(np.diag(G))), 1e-30)
        self._state["delta"] = delta
        logdet = abs(self._logdet(G, delta))
        self._state["lam"] = self.lam * loss_value / max(logdet, 1e-12)

    @staticmethod
    def _logdet(G: np.ndarray, delta: float) -> float:
        """``logdet(G / delta + I) = logdet(G + delta I) - k log(delta)``: the volume
        relative to ``delta``, >= 0 and free of the data's units (``delta`` carries them);
        the same gradient as ``logdet(G + delta I)``."""
        _, logabs = np.linalg.slogdet(G / delta + np.eye(G.shape[0]))
        return float(logabs)

    @property
    def effective_lam(self) -> float:
        return self._state["lam"]

    def effective(self) -> dict[str, float]:
        """The absolute ``lam`` and ``delta`` in use (after scaling)."""
        return {"lam": float(self._state["lam"]), "delta": float(self._state["delta"])}

    def value(self, M: Any) -> float:
        if self._state["delta"] is None:
            raise RuntimeError("MinVolume: on_data/on_init must run before it is evaluated.")
        return 0.5 * self._state["lam"] * self._logdet(_host(M @ M.T), self._state["delta"])

    def model(self, M: Any) -> PenaltyModel:
        be = self.ctx.backend
        xp = be.xp
        lam, delta = self._state["lam"], self._state["delta"]
        G = be.acc(M @ M.T)
        Y = xp.linalg.inv(G + delta * be.eye(G.shape[0], dtype=be.acc_dtype))
        gram = lam * Y
        Yp = be.work(xp.clip(gram, min=0.0))
        Yn = be.work(xp.clip(-gram, min=0.0))
        return PenaltyModel(gram=gram, mu_pos=Yp @ M, mu_neg=Yn @ M)


def _host(a: Any) -> np.ndarray:
    return np.asarray(to_numpy(a), dtype=float)


@dataclass(frozen=True)
class GaussianMapFilter(Filter):
    """Smooth each abundance map on the scan grid with a Gaussian of ``sigma`` pixels.

    The kernel reaches ``ceil(3 sigma)`` pixels (reflecting boundaries), at most the
    grid's extent: a ``sigma`` far wider than the map makes (to rounding) a plain mean
    over the reflected map, in memory of the map's size (see
    :mod:`unmix.model._smoothing`); ``sigma`` must be a finite number > 0.  With the pixels
    split over processes (:class:`unmix.mpi.MPIExecutor`) each process receives that many
    scan lines above and below its rows from its neighbours (a halo exchange) and filters
    its own pixels exactly as a serial run does.
    """

    sigma: float = 1.0
    target: str = field(default="A", kw_only=True)
    _allowed_targets = ("A",)
    couples_pixels = True

    @property
    def label(self) -> str:
        return "GaussianMapFilter(A)"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.sigma, "GaussianMapFilter", "sigma", " (pixels)")

    def _prepare(self, ctx: BindContext) -> None:
        shape = grid_shape(ctx, "GaussianMapFilter")
        object.__setattr__(self, "_shape", shape)
        reach = gaussian_reach(self.sigma, shape[0])
        object.__setattr__(self, "_reach", reach)  # scan lines (along the first axis)

    def apply(self, M: Any) -> Any:
        xp = self.ctx.backend.xp
        ext, off = with_halo(self.ctx, M, self._reach, slab(self._shape))
        if ext.shape[0] == 0:
            return M
        V = xp.reshape(ext, (*line_grid(self._shape, ext.shape[0]), M.shape[1]))
        axes = tuple(range(len(self._shape)))
        V = gaussian_smooth(V, xp, self.sigma, axes, lengths=self._shape)
        V = xp.reshape(V, ext.shape)
        return V if ext is M else V[off : off + M.shape[0], :]


@dataclass(frozen=True)
class SpectralSmoothing(Filter):
    """Smooth each endmember between iterations.

    Parameters
    ----------
    method : {"gaussian", "median"}
        Gaussian low-pass (``sigma`` in channels) or median filter (``size`` channels).
        The median filter removes isolated dips and spikes ("downward-convex peaks").
    sigma : float
        Width of the Gaussian, in channels.
    size : int
        Window of the median filter, in channels (odd).

    When the problem's ``signal_shape`` is 2-D (diffraction patterns), each endmember is
    filtered as a 2-D image.  The Gaussian reaches at most the signal's extent (a huge
    ``sigma`` is a mean); a median window must fit in the signal reflected at its ends
    and in a bounded memory (:mod:`unmix.model._smoothing`), or it is refused.
    """

    method: str = "gaussian"
    sigma: float = 1.0
    size: int = 3
    target: str = field(default="S", kw_only=True)
    _allowed_targets = ("S",)

    @property
    def label(self) -> str:
        return f"SpectralSmoothing[{self.method}](S)"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in ("gaussian", "median"):
            raise ValueError(
                f"SpectralSmoothing: method must be 'gaussian' or 'median'; got {self.method!r}."
            )
        if self.method == "gaussian":
            check_positive(self.sigma, "SpectralSmoothing", "sigma", " (channels)")
        else:
            check_positive(self.size, "SpectralSmoothing", "size", " (channels)")
            if int(self.size) != self.size:
                raise ValueError(
                    f"SpectralSmoothing: size must be a positive int; got {self.size!r}."
                )

    def _prepare(self, ctx: BindContext) -> None:
        shape = ctx.signal_shape or (ctx.n_channels,)
        if math.prod(shape) != ctx.n_channels:
            raise ValueError(
                f"SpectralSmoothing: signal_shape {tuple(shape)} has {math.prod(shape)} channels "
                f"but X has {ctx.n_channels}."
            )
        object.__setattr__(self, "_shape", tuple(int(s) for s in shape))
        if self.method == "median":
            itemsize = getattr(ctx.backend.dtype, "itemsize", 8)
            check_median_size(self.size, self._shape, itemsize, "SpectralSmoothing")

    def apply(self, M: Any) -> Any:
        xp = self.ctx.backend.xp
        V = xp.reshape(M, (M.shape[0], *self._shape))
        axes = tuple(range(1, V.ndim))
        if self.method == "gaussian":
            V = gaussian_smooth(V, xp, self.sigma, axes)
        else:
            V = median_smooth(V, xp, int(self.size), axes)
        return xp.reshape(V, M.shape)
