"""``init="poisson"``: the KL fit's start from a Frobenius fit of Poisson-scaled ``X``.

For counts, a Frobenius NMF of ``X' = D_r X D_c`` (Keenan & Kotula's scaling,
:mod:`unmix.blocks._scaled`) weighs every entry about as the KL divergence of ``X`` does,
and HALS solves it at the price of two products with ``X`` an iteration.  Its factors
``A' , S'`` map back to ``A = D_r^-1 A'``, ``S = S' D_c^-1`` (``X' = (D_r A)(S D_c)``),
which starts the KL solver close to its optimum: on a 16384 x 1024 planted count image
the start alone has a lower KL divergence than scikit-learn's KL MU reaches
(``benchmarks/results/counts.md``).

A mask's missing entries are filled for the start alone by the independence model of the
observed ones (pixel mean x channel mean / overall mean, :func:`hole_filled`; data held
in memory, dense): with them read as 0 counts the scaled fit would model holes, and
NNDSVDa, the start before, was far worse for KL (EELS map, 5 % of entries masked: a
divergence of 3.1e7 at the start against 1.5e6 from the zero-filled scaled fit).

Mostly-zero data (more than :data:`ZERO_LIMIT` of the entries) start from NNDSVDa
instead.  The scaled fit starts from NNDSVDa of ``X'`` and runs HALS (ten inner sweeps a
pass, so the answer does not depend on the block grid) until its endmembers move by less
than :data:`START_STEP` (relative) in an iteration, at most :data:`START_ITER` times.
Entries that HALS sets to exactly zero get a small positive value (:data:`ZERO_FILL` of
their column's or row's largest entry) so that multiplicative updates can still move them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from .._backend import to_numpy
from ..blocks import LowRankData, PixelData, ScaledData, poisson_scales
from ..model import Frobenius, make_link
from ._problem import Problem
from .solvers import get_solver

logger = logging.getLogger("unmix")

__all__ = [
    "COMPRESS_ENTRIES",
    "START_ITER",
    "START_STEP",
    "ZERO_FILL",
    "ZERO_LIMIT",
    "hole_filled",
    "poisson_start",
    "starts_dense_counts",
    "takes_poisson_start",
]

#: relative change of the endmembers in an iteration at which the start stops
START_STEP = 1e-3
#: most HALS iterations of the start
START_ITER = 50
#: the start iterates on a truncated SVD of the scaled data from this many entries of X
COMPRESS_ENTRIES = 1 << 22
#: above this share of zero entries in X the start is NNDSVDa's
ZERO_LIMIT = 0.5
#: exact zeros of the start become this share of their column's (A) / row's (S) maximum
ZERO_FILL = 1e-6


def takes_poisson_start(p: Problem) -> bool:
    """True for KL on non-negative factors with nothing else that shapes them: no
    constraint beyond the orthant, identity link, no mask or one whose holes can be
    filled (:func:`fillable`)."""
    plain = all(c.is_orthant for t in ("A", "S") for c in p.constraints[t])
    return (
        p.loss.beta == 1
        and p.link.is_identity
        and plain
        and p.nonneg_A
        and p.nonneg_S
        and (p.data.mask is None or fillable(p.data))
        and p.update_S
    )


def fillable(data: Any) -> bool:
    """Whether the start can fill ``data``'s holes: a dense array held in memory."""
    return bool(data.in_memory) and not getattr(data, "sparse", False)


def hole_filled(data: PixelData) -> PixelData:
    """``data`` (dense, in memory) without its mask: each missing entry ``(i, j)`` set to
    ``xbar_i cbar_j / mu`` - the means of pixel ``i`` and of channel ``j`` over their
    observed entries, over the mean of all observed entries (the independence model, the
    maximum-likelihood rank one of Poisson counts); 0 where a pixel or a channel has no
    observed entry.  A copy of ``X``; the sums of ``X`` are the data's cached
    :meth:`~unmix.blocks.PixelData.count_sums` (masked entries read as 0), those of the
    mask are reduced over the processes; only sums leave the device."""
    be, xp, M = data.be, data.be.xp, data.mask
    rows, cols, _ = data.count_sums()  # of the observed entries; cached, no pass of its own
    observed = xp.astype(M, be.dtype)
    row_obs = np.asarray(to_numpy(be.acc(xp.sum(observed, axis=1))), dtype=np.float64)
    col_obs = np.asarray(data.reduce(to_numpy(be.acc(xp.sum(observed, axis=0)))))
    mu = float(cols.sum()) / max(float(col_obs.sum()), 1.0)
    xbar = np.where(row_obs > 0, rows / np.maximum(row_obs, 1.0), 0.0) / (mu if mu > 0 else 1.0)
    cbar = np.where(col_obs > 0, cols / np.maximum(col_obs, 1.0), 0.0)
    fill = be.asarray(xbar[:, None]) * be.asarray(cbar[None, :])
    X = xp.where(M, data.X, xp.astype(fill, data.X.dtype))
    return PixelData(
        X, be, block_size=data.block_size, executor=data.executor, n_total=data.n_total
    )


def starts_dense_counts(p: Problem) -> bool:
    """True when the default start of ``p`` is the Poisson-scaled fit: plain KL NMF
    (:func:`takes_poisson_start`) on data with at most :data:`ZERO_LIMIT` zeros."""
    return takes_poisson_start(p) and p.data.zero_share() <= ZERO_LIMIT


def poisson_start(
    p: Problem, start: Callable[[Problem], tuple], rng: np.random.Generator
) -> tuple[Any, Any] | None:
    """``(A, S)`` from HALS on Poisson-scaled ``X``; ``start(sub)`` gives its first point.

    None when more than :data:`ZERO_LIMIT` of ``X``'s entries are zero: at a fraction of
    a count per entry the scaled Frobenius fit is a poor stand-in for KL (on the TEM EDS
    map, 99.7 % zeros, it starts MU far from where NNDSVDa does), and the caller starts
    from NNDSVDa instead.
    """
    if p.data.mask is not None:
        p = replace(p, data=hole_filled(p.data))
    zeros = p.data.zero_share()
    if zeros > ZERO_LIMIT:
        logger.info("init='poisson': %.1f %% of X is zero; NNDSVDa instead", 100 * zeros)
        return None
    d_r, d_c = poisson_scales(p.data)
    sub = replace(
        p,
        loss=Frobenius(),
        link=make_link("identity"),
        data=_scaled_data(p, d_r, d_c, rng),
        constraints=p.constraints,  # the orthant (takes_poisson_start)
        penalties={"A": [], "S": []},
        filters={"A": [], "S": []},
    )
    A, S = start(sub)
    slv = get_solver("hals", inner_max=10, inner_delta=0.0)  # the same on any block grid
    state = slv.setup(sub, A, S)
    it = 0
    for it in range(1, START_ITER + 1):  # noqa: B007 - the count is logged
        S_prev = S
        S = slv.step(sub, A, S, state, p.data.executor).S
        if _settled(S_prev, S, p):
            break
    logger.info("init='poisson': %d HALS iterations on Poisson-scaled X", it)
    return _unscale(p, A, S, d_r, d_c)


def _scaled_data(p: Problem, d_r: np.ndarray, d_c: np.ndarray, rng: np.random.Generator) -> Any:
    """``X' = D_r X D_c`` for the start's HALS: on large data (at least
    :data:`COMPRESS_ENTRIES` entries) its rank-``k + 10`` truncated SVD, so that an
    iteration costs ``O((n + m)(k + 10) k)`` instead of two products with ``X`` (the
    low-rank NMF of Zhou, Cichocki & Xie 2012; the start's NNDSVDa reuses the SVD)."""
    scaled = ScaledData(p.data, d_r, d_c)
    n, m = p.data.n_total, p.data.n_channels
    rank = p.k + 10
    if n * m < COMPRESS_ENTRIES or 4 * rank > min(n, m):
        return scaled
    U, s, Vt = scaled.svd(rank, rng)
    return LowRankData(
        U,
        s,
        Vt,
        p.be,
        block_size=p.data.block_size,
        executor=p.data.executor,
        n_total=n,
    )


def _settled(before: Any, after: Any, p: Problem) -> bool:
    """``||S_new - S|| <= START_STEP ||S_new||`` in float64: a rule that float32 data
    meet where float64 data do (the scaled fit's objective, a difference of large sums,
    is too coarse in float32 for a relative change of 1e-4)."""
    a, b = to_numpy(after).astype(np.float64), to_numpy(before).astype(np.float64)
    return float(np.linalg.norm(a - b)) <= START_STEP * float(np.linalg.norm(a))


def _unscale(p: Problem, A: Any, S: Any, d_r: np.ndarray, d_c: np.ndarray) -> tuple[Any, Any]:
    """``A = D_r^-1 A'``, ``S = S' D_c^-1`` (0 where a scale is 0), exact zeros filled."""
    be = p.be
    inv_r = np.where(d_r > 0, 1.0 / np.where(d_r > 0, d_r, 1.0), 0.0)
    inv_c = np.where(d_c > 0, 1.0 / np.where(d_c > 0, d_c, 1.0), 0.0)
    A_np = to_numpy(A).astype(np.float64) * inv_r[:, None]
    S_np = to_numpy(S).astype(np.float64) * inv_c[None, :]
    col_max = A_np.max(axis=0, initial=0.0)
    reducer = getattr(p.data.executor, "allreduce_max", None)
    if reducer is not None:  # the maps' rows may be split over processes
        col_max = np.asarray([reducer(float(v)) for v in col_max])
    A_np = np.where((A_np == 0) & (inv_r[:, None] > 0), ZERO_FILL * col_max[None, :], A_np)
    row_max = S_np.max(axis=1, keepdims=True)
    S_np = np.where((S_np == 0) & (inv_c[None, :] > 0), ZERO_FILL * row_max, S_np)
    return be.asarray(A_np), be.asarray(S_np)
