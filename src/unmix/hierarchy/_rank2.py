"""Exact rank-2 NMF (Kuang & Park 2013), batched over many independent pixel groups.

Orientation as everywhere in unmix: ``X`` is (pixels, channels).  Each group ``b`` of
pixels (a node of a tree) gets its own two-component model ``X_b ~= A_b @ S_b`` and the
alternating non-negative least squares (ANLS) minimize, for every group at once::

    min_{A_b >= 0, S_b >= 0}  1/2 ||X_b - A_b S_b||_F^2,   A_b (n_b, 2), S_b (2, channels)

Each half-step is a non-negative least squares problem with only two unknowns a row, whose
optimal active set is found by exhaustive search (Kuang & Park 2013): either the
unconstrained solution is non-negative, or the best of the two one-variable solutions is
optimal.  :func:`nnls2` solves millions of them in a few vectorized array operations.

Batching: one iteration handles every group with two products over the stacked pixels
(``X @ S_all.T`` and ``Z.T @ X`` with ``Z`` the block one-hot maps), never a Python loop
over groups, so a GPU sees a few large kernels per iteration whatever the number of nodes.
Everything follows ``X``'s array library, device and dtype; the 2 x 2 Gram matrices and
per-group sums are accumulated in float64 where the device has it.  Sparse ``X`` (SciPy
or pydata/sparse; fitted as CSR rows on the host) enters through the same two products
and its stored values alone (:mod:`~unmix.hierarchy._sparse`): it is never densified.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import Backend, backend_of, to_numpy
from ..blocks import entry_rows
from ._sparse import as_csr_rows, backend, dense_rows, is_sparse, row_sq, tmatmul

logger = logging.getLogger("unmix")

__all__ = ["Rank2Fit", "group_rank1", "nnls2", "rank2_nmf", "spa_start"]


def nnls2(G: Any, B: Any, xp: Any = None) -> Any:
    """Exact NNLS with two unknowns for a batch: ``min_x 1/2 x^T G x - b^T x, x >= 0``.

    Parameters
    ----------
    G : array (..., 2, 2)
        Symmetric positive semi-definite Gram matrices (e.g. ``S @ S.T`` of two spectra).
    B : array (..., 2)
        Right-hand sides (e.g. ``S @ x`` for a pixel ``x``); broadcasts against ``G``.
    xp : namespace, optional
        Array namespace (default: that of ``B``).

    Returns
    -------
    array (..., 2)
        The minimizers.  For ``G = S S^T``, ``B = x S^T`` this is
        ``argmin_{a >= 0} ||x - a S||^2``, exactly (up to rounding), also when the two rows
        of ``S`` are parallel or zero.
    """
    if xp is None:
        xp = backend_of(B).xp
    g11, g12, g22 = G[..., 0, 0], G[..., 0, 1], G[..., 1, 1]
    b1, b2 = B[..., 0], B[..., 1]
    det = g11 * g22 - g12 * g12
    eps = float(xp.finfo(B.dtype).eps)
    regular = det > 64 * eps * g11 * g22
    safe = xp.where(regular, det, 1.0)
    u1 = (g22 * b1 - g12 * b2) / safe
    u2 = (g11 * b2 - g12 * b1) / safe
    interior = regular & (u1 >= 0) & (u2 >= 0)
    # best one-variable solutions: the objective drops by b_j^2 / (2 g_jj)
    ok1 = (b1 > 0) & (g11 > 0)
    ok2 = (b2 > 0) & (g22 > 0)
    s1 = xp.where(ok1, b1 / xp.where(g11 > 0, g11, 1.0), 0.0)
    s2 = xp.where(ok2, b2 / xp.where(g22 > 0, g22, 1.0), 0.0)
    first = b1 * s1 >= b2 * s2
    x1 = xp.where(interior, u1, xp.where(first, s1, 0.0))
    x2 = xp.where(interior, u2, xp.where(first, 0.0, s2))
    return xp.stack([x1, x2], axis=-1)


@dataclass
class Rank2Fit:
    """Rank-2 models of several pixel groups, fitted together.

    Attributes
    ----------
    A : array (n, 2)
        Abundances of every stacked pixel in its own group's model (working dtype).
    S : array (n_groups, 2, channels)
        The two endmembers of every group (working dtype).
    error : ndarray (n_groups,)
        ``||X_b - A_b S_b||_F^2`` of every group (host, float64).
    norm2 : ndarray (n_groups,)
        ``||X_b||_F^2`` of every group.
    n_iter : int
        ANLS iterations run.
    converged : ndarray of bool (n_groups,)
        Groups whose relative decrease fell below ``tol``.
    """

    A: Any
    S: Any
    error: np.ndarray
    norm2: np.ndarray
    n_iter: int
    converged: np.ndarray


def _group_setup(X: Any, groups: Any, n_groups: int | None, be: Backend) -> tuple:
    xp = be.xp
    n = int(X.shape[0])
    g = np.zeros(n, dtype=np.int64) if groups is None else np.asarray(to_numpy(groups))
    if g.shape != (n,):
        raise ValueError(f"groups must have one entry per pixel ({n}); got shape {g.shape}.")
    if g.size and (g.min() < 0 or not np.issubdtype(g.dtype, np.integer)):
        raise ValueError("groups must hold non-negative integer group indices.")
    B = int(g.max()) + 1 if n_groups is None else int(n_groups)
    counts = np.bincount(g, minlength=B)
    if np.any(counts == 0):
        empty = np.flatnonzero(counts == 0)[:5].tolist()
        raise ValueError(f"groups {empty} have no pixels; every group needs at least one.")
    gd = xp.asarray(g, device=be.device)
    onehot = gd[:, None] == xp.arange(B, dtype=gd.dtype, device=be.device)[None, :]
    return gd, onehot, B


def _per_group_sum(onehot: Any, v: Any, be: Backend) -> Any:
    """Sum of ``v`` (n,) over each group: (B,), in the accumulation dtype."""
    xp = be.xp
    return xp.sum(xp.where(onehot, be.acc(v)[:, None], 0.0), axis=0)


def group_rank1(
    X: Any, groups: Any = None, n_groups: int | None = None, *, n_iter: int = 100
) -> tuple[Any, np.ndarray]:
    """Best rank-one model ``X_b ~= u_b v_b`` of every group, batched (power iteration).

    Returns ``(V, error)``: ``V`` (n_groups, channels) the unit leading right singular
    vectors (non-negative for non-negative data, Perron-Frobenius) and the residuals
    ``||X_b - X_b v_b^T v_b||_F^2`` computed directly (accurate also for nearly rank-one
    groups, where ``||X_b||^2 - sigma_1^2`` would cancel).  ``X`` (pixels, channels) may
    be a sparse matrix (never densified).
    """
    X = _rows(X)
    be = backend(X)
    xp = be.xp
    gd, onehot, _ = _group_setup(X, groups, n_groups, be)
    W = xp.astype(onehot, be.dtype)  # (n, B)
    V = tmatmul(W, X)  # group sums: the Perron vector's direction for non-negative data
    V = V / xp.clip(xp.linalg.vector_norm(V, axis=1, keepdims=True), min=be.tiny)
    for _ in range(n_iter):
        u = xp.take_along_axis(X @ V.T, gd[:, None], axis=1)  # (n, 1)
        Vn = tmatmul(W * u, X)
        Vn = Vn / xp.clip(xp.linalg.vector_norm(Vn, axis=1, keepdims=True), min=be.tiny)
        change = float(xp.max(xp.abs(Vn - V)))
        V = Vn
        if change < 10 * be.eps:
            break
    if is_sparse(X):
        return V, _rank1_residuals_sparse(X, V, gd, onehot, be)
    Vp = xp.take(V, gd, axis=0)  # (n, m) per pixel; the residual needs the data anyway
    proj = xp.sum(X * Vp, axis=1, keepdims=True)
    R = X - proj * Vp
    err = to_numpy(_per_group_sum(onehot, xp.sum(R * R, axis=1), be)).astype(float)
    return V, err


def _rows(X: Any) -> Any:
    """Sparse ``X`` as CSR rows of a floating dtype; dense ``X`` as it is."""
    return as_csr_rows(X) if is_sparse(X) else X


def _rank1_residuals_sparse(X: Any, V: Any, gd: Any, onehot: Any, be: Backend) -> np.ndarray:
    """Every group's ``||X_b - X_b v_b^T v_b||^2`` for CSR ``X``, from its stored entries.

    A pixel ``x`` with projection ``p = x . v`` leaves ``(x_j - p v_j)^2`` at its stored
    channels and ``p^2 v_j^2`` at the others; the latter sum is 0 exactly when the stored
    channels cover the support of ``v`` (identical pixels stay exactly rank one).
    """
    g = np.asarray(gd)
    V64 = np.asarray(V, dtype=np.float64)
    p = np.asarray(X @ V.T, dtype=np.float64)[np.arange(g.size), g]
    rows = entry_rows(X)
    v = V64[g[rows], X.indices]  # v_j of every stored entry's group
    r = np.asarray(X.data, dtype=np.float64) - p[rows] * v
    n = int(X.shape[0])
    on = np.bincount(rows, weights=r * r, minlength=n)
    v2_in = np.bincount(rows, weights=v * v, minlength=n)
    covered = np.bincount(rows, weights=(v != 0).astype(np.float64), minlength=n)
    support = np.count_nonzero(V64, axis=1)[g]
    off = np.where(covered >= support, 0.0, np.maximum(np.sum(V64 * V64, axis=1)[g] - v2_in, 0.0))
    per_pixel = on + p * p * off
    return to_numpy(_per_group_sum(onehot, per_pixel, be)).astype(float)


def _spa_init(X: Any, gd: Any, onehot: Any, B: int, be: Backend) -> Any:
    """Two pixels a group by the successive projection algorithm: (B, 2, m)."""
    xp = be.xp
    norms = row_sq(X)
    neg = xp.asarray(-1.0, dtype=norms.dtype, device=be.device)
    p1 = xp.argmax(xp.where(onehot.T, norms[None, :], neg), axis=1)
    U = dense_rows(X, p1) if is_sparse(X) else xp.take(X, p1, axis=0)  # (B, m)
    un = xp.sum(U * U, axis=1)
    own = xp.take_along_axis(X @ U.T, gd[:, None], axis=1)[:, 0]
    res = norms - own * own / xp.clip(xp.take(un, gd, axis=0), min=be.tiny)
    p2 = xp.argmax(xp.where(onehot.T, res[None, :], neg), axis=1)
    U2 = dense_rows(X, p2) if is_sparse(X) else xp.take(X, p2, axis=0)
    return xp.stack([U, U2], axis=1)


def spa_start(X: Any) -> Any:
    """The default start of :func:`rank2_nmf` for one group of pixels.

    Parameters
    ----------
    X : array or sparse matrix (pixels, channels)
        The group's pixels (at least one).

    Returns
    -------
    array (2, n_channels)
        Two pixels of ``X`` picked by the successive projection algorithm: the pixel of
        largest norm, then the one farthest from its line (deterministic; ties go to the
        lower index).
    """
    X = _rows(X)
    be = backend(X)
    gd, onehot, B = _group_setup(X, None, 1, be)
    return _spa_init(X, gd, onehot, B, be)[0]


def rank2_nmf(
    X: Any,
    groups: Any = None,
    n_groups: int | None = None,
    *,
    S0: Any = None,
    max_iter: int = 300,
    tol: float = 1e-7,
) -> Rank2Fit:
    """Rank-2 NMF of every pixel group of ``X`` (pixels, channels) at once, by exact ANLS.

    Minimizes ``1/2 ||X_b - A_b S_b||_F^2`` over ``A_b >= 0`` (n_b, 2) and ``S_b >= 0``
    (2, channels) for every group ``b`` independently; each half-step is solved exactly
    (:func:`nnls2`), so every group's error decreases monotonically.

    Parameters
    ----------
    X : array or sparse matrix (pixels, channels)
        Non-negative data (NumPy, PyTorch or CuPy; the factors follow its dtype/device),
        or a SciPy / pydata sparse matrix (fitted as CSR rows on the host, never densified).
    groups : int array (n_pixels,), optional
        Group index of every pixel (default: one group).
    n_groups : int, optional
        Number of groups (default ``groups.max() + 1``); every group must be non-empty.
    S0 : array (n_groups, 2, n_channels), optional
        Initial endmembers (default: two pixels a group by the successive projection
        algorithm, deterministic).
    max_iter : int
        Most ANLS iterations.
    tol : float
        A group has converged when its error decreases by less than ``tol * ||X_b||^2``
        in one iteration; the loop ends when every group has.

    Returns
    -------
    Rank2Fit
    """
    X = _rows(X)
    be = backend(X)
    gd, onehot, B = _group_setup(X, groups, n_groups, be)
    norm2 = _per_group_sum(onehot, row_sq(X), be)
    S = _spa_init(X, gd, onehot, B, be) if S0 is None else be.asarray(S0)
    m = int(X.shape[1])
    if tuple(S.shape) != (B, 2, m):
        raise ValueError(f"S0 must have shape ({B}, 2, {m}); got {tuple(S.shape)}.")
    S, done, n_done = _anls(X, be.acc(S), gd, onehot, norm2, be, max_iter, tol)
    # final maps for the final S (one more exact A step), and the exact error
    A, err_h = _final_maps(X, S, gd, onehot, be)
    logger.debug("rank2_nmf: %d groups, %d iterations", B, n_done)
    return Rank2Fit(
        A=be.work(A),
        S=be.work(S),
        error=err_h,
        norm2=to_numpy(norm2).astype(float),
        n_iter=n_done,
        converged=done,
    )


def _anls(
    X: Any,
    S: Any,
    gd: Any,
    onehot: Any,
    norm2: Any,
    be: Backend,
    max_iter: int,
    tol: float,
) -> tuple[Any, np.ndarray, int]:
    """Alternate exact A and S steps from ``S`` (acc dtype) until every group has converged.

    Returns the endmembers, the converged flag of every group and the iterations run.
    """
    xp = be.xp
    B = int(S.shape[0])
    W = xp.astype(onehot, be.dtype)
    prev = None
    done = np.zeros(B, dtype=bool)
    n_done = 0
    for it in range(1, max_iter + 1):
        n_done = it
        A, _, _ = _maps_step(X, S, gd, be)
        S_new, R, H = _endmembers_step(X, A, W, onehot, be)
        frozen = xp.asarray(done, device=be.device)[:, None, None]
        S = xp.where(frozen, S, S_new)  # converged groups keep their endmembers
        err_h = _gram_error(S, R, H, norm2, be)
        if prev is not None:
            done = done | ((prev - err_h) <= tol * np.maximum(to_numpy(norm2), 1e-300))
            if done.all():
                break
        prev = err_h
    return S, done, n_done


def _maps_step(X: Any, S: Any, gd: Any, be: Backend) -> tuple[Any, Any, Any]:
    """A step: per pixel, a 2-variable NNLS with its group's Gram matrix.

    Returns the maps ``A`` (n, 2), the right-hand sides ``X_i S_g^T`` (n, 2) and the Gram
    matrix ``S_g S_g^T`` of every pixel's group (n, 2, 2), all in the accumulation dtype.
    """
    xp = be.xp
    B, _, m = (int(s) for s in S.shape)
    Sw = be.work(xp.reshape(S, (2 * B, m)))
    XS = X @ Sw.T  # (n, 2B)
    cols = xp.stack([2 * gd, 2 * gd + 1], axis=1)
    rhs = be.acc(xp.take_along_axis(XS, cols, axis=1))  # (n, 2)
    G = S @ xp.permute_dims(S, (0, 2, 1))  # (B, 2, 2)
    Gp = xp.take(G, gd, axis=0)
    return nnls2(Gp, rhs, xp), rhs, Gp


def _endmembers_step(X: Any, A: Any, W: Any, onehot: Any, be: Backend) -> tuple[Any, Any, Any]:
    """S step: per group and channel, a 2-variable NNLS with the group's ``A^T A``.

    Returns the new endmembers (B, 2, m), ``A_b^T X_b`` (B, 2, m) and the entries
    ``(a1.a1, a1.a2, a2.a2)`` of every group's ``A^T A`` (B, 3).
    """
    xp = be.xp
    n, m = (int(s) for s in X.shape)
    B = int(W.shape[1])
    Aw = be.work(A)
    Z = xp.reshape(W[:, :, None] * Aw[:, None, :], (n, 2 * B))
    R = be.acc(xp.reshape(tmatmul(Z, X), (B, 2, m)))
    Ha = be.acc(A)
    H = xp.stack(
        [
            _per_group_sum(onehot, Ha[:, 0] * Ha[:, 0], be),
            _per_group_sum(onehot, Ha[:, 0] * Ha[:, 1], be),
            _per_group_sum(onehot, Ha[:, 1] * Ha[:, 1], be),
        ],
        axis=1,
    )
    Hm = xp.reshape(xp.stack([H[:, 0], H[:, 1], H[:, 1], H[:, 2]], axis=1), (B, 1, 2, 2))
    S_new = xp.permute_dims(nnls2(Hm, xp.permute_dims(R, (0, 2, 1)), xp), (0, 2, 1))
    return S_new, R, H


def _gram_error(S: Any, R: Any, H: Any, norm2: Any, be: Backend) -> np.ndarray:
    """Every group's error by the Gram identity: ||X||^2 - 2 <S, A^T X> + <A^T A, S S^T>."""
    xp = be.xp
    SS = S @ xp.permute_dims(S, (0, 2, 1))
    quad = H[:, 0] * SS[:, 0, 0] + 2 * H[:, 1] * SS[:, 0, 1] + H[:, 2] * SS[:, 1, 1]
    err = norm2 - 2 * xp.sum(S * R, axis=(1, 2)) + quad
    return np.maximum(to_numpy(err).astype(float), 0.0)


def _final_maps(X: Any, S: Any, gd: Any, onehot: Any, be: Backend) -> tuple[Any, np.ndarray]:
    """The exact maps of the final ``S`` and every group's exact error (host, float64)."""
    xp = be.xp
    A, rhs, Gp = _maps_step(X, S, gd, be)
    quad = (
        A[:, 0] * A[:, 0] * Gp[:, 0, 0]
        + 2 * A[:, 0] * A[:, 1] * Gp[:, 0, 1]
        + A[:, 1] * A[:, 1] * Gp[:, 1, 1]
    )
    per_pixel = be.acc(row_sq(X)) - 2 * xp.sum(A * rhs, axis=1) + quad
    return A, np.maximum(to_numpy(_per_group_sum(onehot, per_pixel, be)).astype(float), 0.0)
