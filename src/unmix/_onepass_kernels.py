"""The numba kernels of :mod:`unmix._onepass` (imported only when they are used)."""

from __future__ import annotations

import numba as _nb
import numpy as np

_FM = {"reassoc", "contract"}
_jit = _nb.njit(cache=True, nogil=True, fastmath=_FM)
_jit_exact = _nb.njit(cache=True, nogil=True)

_CW = 512  # channels a chunk: the tile's rows of X and S (or out) stay in L1


@_jit
def _xst(X, S, T):
    """``T = X @ S.T`` (n x k) for X (n x m), S (k x m); tiles of 4 rows.

    The channel loops run over whole contiguous rows from 0 (so that numba's
    index wrap-around checks vanish and LLVM vectorizes them).
    """
    n, m = X.shape
    k = S.shape[0]
    zero = S[0, 0] - S[0, 0]  # 0 in the working dtype (float32 stays float32)
    i = 0
    while i + 4 <= n:
        for j in range(k):
            s0 = s1 = s2 = s3 = zero
            for c in range(m):
                v = S[j, c]
                s0 += X[i, c] * v
                s1 += X[i + 1, c] * v
                s2 += X[i + 2, c] * v
                s3 += X[i + 3, c] * v
            T[i, j] = s0
            T[i + 1, j] = s1
            T[i + 2, j] = s2
            T[i + 3, j] = s3
        i += 4
    while i < n:
        for j in range(k):
            s0 = zero
            for c in range(m):
                s0 += X[i, c] * S[j, c]
            T[i, j] = s0
        i += 1


@_jit
def _atx(X, A, out):
    """``out = A.T @ X`` (k x m) for X (n x m), A (n x k); tiles of 4 rows."""
    n, m = X.shape
    k = A.shape[1]
    for j in range(k):
        for c in range(m):
            out[j, c] = 0
    i = 0
    while i + 4 <= n:
        for j in range(k):
            a0 = A[i, j]
            a1 = A[i + 1, j]
            a2 = A[i + 2, j]
            a3 = A[i + 3, j]
            for c in range(m):
                x = a0 * X[i, c] + a1 * X[i + 1, c]
                out[j, c] += x + a2 * X[i + 2, c] + a3 * X[i + 3, c]
        i += 4
    while i < n:
        for j in range(k):
            a0 = A[i, j]
            for c in range(m):
                out[j, c] += a0 * X[i, c]
        i += 1


@_jit_exact
def _ata(A):
    n, k = A.shape
    out = np.zeros((k, k), np.float64)
    tmp = np.zeros((k, k), A.dtype)
    for i in range(n):
        for j in range(k):
            a = A[i, j]
            for l in range(k):
                tmp[j, l] += a * A[i, l]
    for j in range(k):
        for l in range(k):
            out[j, l] = tmp[j, l]
    return out


@_jit_exact
def _mu_repeats(A, T, G, l1, tiny, inner_max, delta):
    """``A <- A * max(T, 0) / max(A G + l1, tiny)`` repeated (block-level delta rule)."""
    n, k = A.shape
    new = np.empty(k, A.dtype)
    first = -1.0
    for _ in range(inner_max):
        change = 0.0
        for i in range(n):
            for j in range(k):
                den = A[i, 0] * G[0, j]
                for l in range(1, k):
                    den += A[i, l] * G[l, j]
                den = max(den + l1, tiny)
                new[j] = A[i, j] * (max(T[i, j], 0) / den)
            for j in range(k):
                dlt = float(new[j]) - float(A[i, j])
                change += dlt * dlt
                A[i, j] = new[j]
        if inner_max == 1:
            break
        if first < 0:
            first = change
        if change <= delta * delta * first or first == 0.0:
            break


@_jit_exact
def _hals_repeats(A, T, G, l1, tiny, nonneg, inner_max, delta):
    """HALS sweeps ``a_j <- max(0, a_j + (t_j - l1 - G_j a) / G_jj)`` (delta rule)."""
    n, k = A.shape
    d = np.empty(k, A.dtype)
    for j in range(k):
        d[j] = max(G[j, j], tiny)
    Gs = np.empty((k, k), A.dtype)
    for j in range(k):
        for l in range(k):
            Gs[j, l] = G[j, l] / d[j]
    Q = np.empty(k, A.dtype)
    first = -1.0
    for _ in range(inner_max):
        change = 0.0
        for i in range(n):
            for j in range(k):
                Q[j] = (T[i, j] - l1) / d[j] if l1 != 0.0 else T[i, j] / d[j]
            for j in range(k):
                r = Gs[j, 0] * A[i, 0]
                for l in range(1, k):
                    r += Gs[j, l] * A[i, l]
                old = A[i, j]
                v = old + Q[j] - r
                if nonneg:
                    v = max(v, 0)
                dlt = float(v) - float(old)
                change += dlt * dlt
                A[i, j] = v
        if inner_max == 1:
            break
        if first < 0:
            first = change
        if change <= delta * delta * first or first == 0.0:
            break


@_nb.njit(cache=True, nogil=True)
def _block(X, A, S, G, l1, tiny, nonneg, inner_max, delta, hals, AtX):
    """The whole per-block work; returns ``A^T A`` (float64); ``AtX`` gets ``A^T X``."""
    T = np.empty((X.shape[0], S.shape[0]), X.dtype)
    _xst(X, S, T)
    if hals:
        _hals_repeats(A, T, G, l1, tiny, nonneg, inner_max, delta)
    else:
        _mu_repeats(A, T, G, l1, tiny, inner_max, delta)
    _atx(X, A, AtX)
    return _ata(A)


# ------------------------------------------------------------------ the pass
