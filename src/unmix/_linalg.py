"""Linear algebra kernels written against the array API.

- :func:`nnls_bpp`: non-negative least squares for many right-hand sides sharing one
  Gram matrix, by block principal pivoting (Kim & Park 2011), vectorized over rows.
- :func:`svd_topk`: the leading singular triplets, exact for small problems and
  randomized (Halko, Martinsson & Tropp 2011) for large ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._backend import Backend
from .executors.base import SerialExecutor

__all__ = ["nnls_bpp", "svd_blocks", "svd_topk"]


def _masked_system(G: Any, F: Any, diag_add: Any, xp: Any) -> Any:
    """Per-row matrices ``G_FF`` padded with the identity on the active set."""
    k = G.shape[0]
    Ff = xp.astype(F, G.dtype)
    M = G[None, :, :] * (Ff[:, :, None] * Ff[:, None, :])
    eye = xp.eye(k, dtype=G.dtype, device=_dev(G))
    M = M + eye[None, :, :] * (1.0 - Ff)[:, None, :]
    if diag_add is not None:
        M = M + eye[None, :, :] * (diag_add * Ff)[:, None, :]
    return M


def _lift_singular(G: Any, xp: Any) -> Any:
    """``G``, or ``G + d I`` when it is singular to working precision (two equal rows of
    ``S``, or a zero row: a user's start, a restart): ``d = k eps lambda_max``, enough
    for every passive-set system ``G_FF`` to be solvable (its eigenvalues lie between
    ``G``'s), and far below the data's own scale (the solve failed before)."""
    k = G.shape[0]
    if k == 0:
        return G
    ev = xp.linalg.eigvalsh(G)
    low, high = float(ev[0]), float(ev[-1])
    floor = k * float(xp.finfo(G.dtype).eps) * max(high, 0.0)
    if high > 0 and low > floor:
        return G
    lift = (floor - min(low, 0.0)) if high > 0 else 1.0
    return G + lift * xp.eye(k, dtype=G.dtype, device=_dev(G))


def _solve_by_pattern(G: Any, F: Any, B: Any) -> Any:
    """``x_F = G_FF^-1 b_F`` (0 off ``F``) for every row, one solve per distinct passive
    set ``F`` with all its rows as right-hand sides; None when the rows are not NumPy
    arrays or hold too many distinct sets for that to pay (then one batched solve of
    per-row padded systems does it)."""
    if not isinstance(B, np.ndarray):
        return None
    n, k = B.shape
    if k > 62 or n == 0:
        return None
    codes = F.astype(np.int64) @ (np.int64(1) << np.arange(k, dtype=np.int64))
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]])
    if len(starts) > max(_MAX_PATTERNS, n // 32):
        return None
    out = np.zeros_like(B)
    for lo, hi in zip(starts, np.r_[starts[1:], n], strict=True):
        rows = order[lo:hi]
        f = np.flatnonzero(F[rows[0]])
        if f.size:
            out[np.ix_(rows, f)] = np.linalg.solve(G[np.ix_(f, f)], B[np.ix_(rows, f)].T).T
    return out


def _least_squares_start(G: Any, B: Any, X: Any, Y: Any, F: Any) -> tuple[Any, Any, Any]:
    """BPP's start from the passive sets of the unconstrained solutions ``B G^-1``
    (NumPy rows with few distinct sets; else the empty sets as given): most rows of a
    good fit are then solved by the first pivoting step, not the third or fourth."""
    if not isinstance(B, np.ndarray) or B.shape[0] == 0:
        return X, Y, F
    F0 = np.linalg.solve(G, B.T).T > 0  # G is not singular (see _lift_singular)
    sol = _solve_by_pattern(G, F0, B)
    if sol is None:
        return X, Y, F
    return sol, np.where(F0, 0.0, sol @ G - B), F0


#: distinct passive sets below which :func:`_solve_by_pattern` always groups the rows
_MAX_PATTERNS = 16


def _dev(a: Any) -> Any:
    import array_api_compat as aac

    return aac.device(a)


def nnls_bpp(
    G: Any,
    B: Any,
    be: Backend,
    *,
    diag_add: Any = None,
    max_iter: int | None = None,
) -> Any:
    """Solve ``min_x 1/2 x^T (G + diag(c)) x - b^T x`` s.t. ``x >= 0`` for every row ``b`` of B.

    Parameters
    ----------
    G : array (k, k)
        Symmetric positive (semi-)definite Gram matrix, e.g. ``S @ S.T``.
    B : array (n, k)
        Right-hand sides, e.g. ``X @ S.T`` (n = pixels).
    diag_add : array (n, 1), optional
        Per-row addition to the diagonal of ``G``.

    Returns
    -------
    X : array (n, k), in ``be.acc_dtype``, exactly optimal up to rounding.
    """
    xp = be.xp
    G = _lift_singular(be.acc(G), xp)
    B = be.acc(B)
    n, k = B.shape
    if diag_add is not None:
        diag_add = be.acc(diag_add) * xp.ones((n, k), dtype=be.acc_dtype, device=be.device)
    # tolerances in each quantity's own units (scale-free): gradients are in B's units,
    # the solution in B's over G's (x ~ b / G_jj)
    scale = float(xp.max(xp.abs(B))) if n else 0.0
    tol_y = 1e-11 * max(scale, 1e-300)
    g_max = float(xp.max(xp.linalg.diagonal(G))) if k else 0.0
    tol_x = tol_y / g_max if g_max > 0 else tol_y
    X = xp.zeros((n, k), dtype=be.acc_dtype, device=be.device)
    Y = -B
    F = xp.zeros((n, k), dtype=xp.bool, device=be.device)
    if diag_add is None:
        X, Y, F = _least_squares_start(G, B, X, Y, F)
    alpha = xp.full((n,), 3, dtype=xp.int64, device=be.device)
    beta = xp.full((n,), k + 1, dtype=xp.int64, device=be.device)
    idx = xp.arange(1, k + 1, dtype=xp.int64, device=be.device)
    max_iter = 5 * k + 20 if max_iter is None else max_iter
    for _ in range(max_iter):
        V = (F & (X < -tol_x)) | (~F & (Y < -tol_y))
        nV = xp.sum(xp.astype(V, xp.int64), axis=1)
        todo = nV > 0
        if not bool(xp.any(todo)):
            break
        improve = nV < beta
        use_full = improve | (alpha >= 1)
        beta = xp.where(improve, nV, beta)
        alpha = xp.where(improve, 3, xp.where(todo & ~improve, alpha - 1, alpha))
        last = xp.argmax(xp.astype(V, xp.int64) * idx[None, :], axis=1)
        backup = idx[None, :] == (last[:, None] + 1)
        flip = xp.where(use_full[:, None], V, backup & V) & todo[:, None]
        F = F ^ flip
        rows = xp.nonzero(todo)[0]
        Fr = xp.take(F, rows, axis=0)
        Br = xp.take(B, rows, axis=0)
        dr = None if diag_add is None else xp.take(diag_add, rows, axis=0)
        sol = _solve_by_pattern(G, Fr, Br) if dr is None else None
        if sol is None:
            M = _masked_system(G, Fr, dr, xp)
            rhs = Br * xp.astype(Fr, G.dtype)
            sol = xp.linalg.solve(M, rhs[:, :, None])[:, :, 0]
            sol = xp.where(Fr, sol, 0.0)
        grad = sol @ G - Br
        if dr is not None:
            grad = grad + dr * sol
        X[rows, :] = sol
        Y[rows, :] = xp.where(Fr, 0.0, grad)
    return xp.clip(X, min=0.0)


def svd_topk(X: Any, k: int, be: Backend, *, rng: np.random.Generator, n_iter: int = 4) -> tuple:
    """Leading ``k`` singular triplets ``(U, s, Vt)`` of ``X`` (pixels, channels).

    Exact (LAPACK) when ``min(X.shape) <= 4 * (k + 10)``; otherwise a randomized range
    finder with ``n_iter`` power iterations.  Signs are fixed so that the largest-magnitude
    entry of each row of ``Vt`` is positive (deterministic output).
    """
    xp = be.xp
    n, m = X.shape
    small = min(n, m) <= 4 * (k + 10)
    if small:
        U, s, Vt = xp.linalg.svd(X, full_matrices=False)
    else:
        ell = min(k + 10, min(n, m))
        Omega = be.asarray(rng.standard_normal((m, ell)))
        Q, _ = xp.linalg.qr(X @ Omega)
        for _ in range(n_iter):
            Z, _ = xp.linalg.qr(X.T @ Q)
            Q, _ = xp.linalg.qr(X @ Z)
        Ub, s, Vt = xp.linalg.svd(Q.T @ X, full_matrices=False)
        U = Q @ Ub
    return _leading_signed(U, s, Vt, k, xp)


def _leading_signed(U: Any, s: Any, Vt: Any, k: int, xp: Any) -> tuple:
    """The leading ``k`` triplets, each signed so that its largest ``|Vt|`` entry is > 0
    (deterministic signs whatever the LAPACK or backend)."""
    U, s, Vt = U[:, :k], s[:k], Vt[:k, :]
    pivot = xp.argmax(xp.abs(Vt), axis=1)
    signs = xp.sign(xp.take_along_axis(Vt, pivot[:, None], axis=1))
    signs = xp.where(signs == 0, 1.0, signs)
    return U * signs.T, s, Vt * signs


def _orth_rows(Y: Any, be: Backend, ex: Any) -> Any:
    """Orthonormal columns spanning ``Y`` (n x l, the stacked blocks of this process).

    Householder QR (robust when ``Y`` is rank deficient, e.g. exactly low-rank data).
    With pixels spread over processes, ``reduce`` sums the small Gram ``Y^T Y``: then a
    shifted Cholesky-QR, three times (Fukaya et al. 2020), orthonormalizes across them.
    """
    xp = be.xp
    if ex.distributed:
        for _ in range(3):
            G = ex.allreduce(be.acc(Y.T @ Y))
            shift = 1e-10 * max(float(xp.sum(xp.linalg.diagonal(G))), 1e-300)
            eye = xp.eye(G.shape[0], dtype=G.dtype, device=be.device)
            L = xp.linalg.cholesky(G + shift * eye)
            Y = Y @ be.work(xp.linalg.inv(L).T)
        return Y
    Q, _ = xp.linalg.qr(Y)
    return Q


def svd_blocks(
    data: Any,
    k: int,
    be: Backend,
    *,
    rng: np.random.Generator,
    n_iter: int = 2,
    executor: Any = None,
) -> tuple:
    """Randomized truncated SVD of ``X`` through the data pass (``x_times``/``t_times``).

    Works for in-memory, streamed (out-of-core) and compressed data: ``X`` is only
    touched block by block, ``2 n_iter + 2`` passes in all.  Signs as in :func:`svd_topk`.
    """
    xp = be.xp
    ex = executor or SerialExecutor()
    blocks = data.blocks
    ell = min(k + 10, getattr(data, "n_total", data.n_pixels), data.n_channels)
    Omega = be.asarray(rng.standard_normal((data.n_channels, ell)))

    def right(M: Any) -> Any:  # X @ M, stacked over the (local) blocks
        if not blocks:  # a process that owns no pixels
            return xp.zeros((0, M.shape[1]), dtype=be.dtype, device=be.device)
        return xp.concat([data.x_times(b, M) for b in blocks], axis=0)

    def left(Q: Any) -> Any:  # Q^T X, summed over blocks: (l, channels)
        out = ex.map_reduce(lambda b: {"Z": be.acc(data.t_times(b, Q[b.slice, :]))}, blocks)
        return be.work(out["Z"])

    Q = _orth_rows(right(Omega), be, ex)
    for _ in range(n_iter):
        Z, _ = xp.linalg.qr(left(Q).T)
        Q = _orth_rows(right(Z), be, ex)
    B = left(Q)
    Ub, s, Vt = xp.linalg.svd(B, full_matrices=False)
    U = Q @ Ub
    return _leading_signed(U, s, Vt, k, xp)
