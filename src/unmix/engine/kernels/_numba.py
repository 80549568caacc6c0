"""The numba kernels of :mod:`unmix.engine.kernels` (imported only when they are used).

Layout: the block's maps are worked on transposed, ``At`` (k x n_b), and ``X_b S^T`` is
written transposed, ``Tt`` (k x n_b), so that the inner repeats run as contiguous,
vectorized loops over the block's rows (k x k such loops a sweep, in chunks of ``_CH``
rows that stay in L1) instead of scalar k x k loops a row.  The two products with
``X_b`` are register-blocked: ``X S^T`` in tiles of 2 rows x 4 components (8 vector
accumulators, 6 loads for 8 FMAs), ``A^T X`` in tiles of 4 rows x 2 components (6 loads,
2 stores for 8 FMAs), over chunks of ``_CB`` bytes of channels, so that a chunk's rows of
``X`` are re-read from L1/L2 for every group of components, not from L3 or memory.  Any
k works (groups of 4 or 2, then single components), with no k-specialized variants to
compile.
"""

from __future__ import annotations

import numba as _nb
import numpy as np

_FM = {"reassoc", "contract"}
_jit = _nb.njit(cache=True, nogil=True, fastmath=_FM)

_CB = 8192  # bytes of a row a chunk (2048 float32 / 1024 float64 channels)
_CH = 256  # rows a chunk in the inner repeats: k rows of At, Tt and a scratch row in L1


@_jit
def _xst(X, S, Tt):
    """``Tt = S @ X.T`` (k x n) for X (n x m), S (k x m): tiles of 2 rows x 4 components."""
    n, m = X.shape
    k = S.shape[0]
    Tt[:, :] = 0
    if n == 0 or k == 0:
        return
    zero = Tt[0, 0]
    cw = max(1, _CB // X.itemsize)
    for i in range(0, n, 2):
        two = i + 1 < n
        i1 = i + 1 if two else i
        for c0 in range(0, m, cw):
            c1 = min(c0 + cw, m)
            w = c1 - c0
            x0 = X[i, c0:c1]
            x1 = X[i1, c0:c1]
            j = 0
            while j + 4 <= k:
                s0 = S[j, c0:c1]
                s1 = S[j + 1, c0:c1]
                s2 = S[j + 2, c0:c1]
                s3 = S[j + 3, c0:c1]
                t00 = t01 = t02 = t03 = t10 = t11 = t12 = t13 = zero
                for c in range(w):
                    a = x0[c]
                    b = x1[c]
                    u0 = s0[c]
                    u1 = s1[c]
                    u2 = s2[c]
                    u3 = s3[c]
                    t00 += a * u0
                    t01 += a * u1
                    t02 += a * u2
                    t03 += a * u3
                    t10 += b * u0
                    t11 += b * u1
                    t12 += b * u2
                    t13 += b * u3
                Tt[j, i] += t00
                Tt[j + 1, i] += t01
                Tt[j + 2, i] += t02
                Tt[j + 3, i] += t03
                if two:
                    Tt[j, i1] += t10
                    Tt[j + 1, i1] += t11
                    Tt[j + 2, i1] += t12
                    Tt[j + 3, i1] += t13
                j += 4
            while j < k:
                s0 = S[j, c0:c1]
                t00 = t10 = zero
                for c in range(w):
                    u0 = s0[c]
                    t00 += x0[c] * u0
                    t10 += x1[c] * u0
                Tt[j, i] += t00
                if two:
                    Tt[j, i1] += t10
                j += 1


@_jit
def _atx(X, At, out):
    """``out = At @ X`` (k x m) for X (n x m), At (k x n): tiles of 4 rows x 2 components."""
    n, m = X.shape
    k = At.shape[0]
    out[:, :] = 0
    if n == 0 or k == 0 or m == 0:
        return
    n4 = n - n % 4
    cw = max(1, _CB // X.itemsize)
    for c0 in range(0, m, cw):
        c1 = min(c0 + cw, m)
        w = c1 - c0
        for i in range(0, n4, 4):
            x0 = X[i, c0:c1]
            x1 = X[i + 1, c0:c1]
            x2 = X[i + 2, c0:c1]
            x3 = X[i + 3, c0:c1]
            j = 0
            while j + 2 <= k:
                a00 = At[j, i]
                a10 = At[j, i + 1]
                a20 = At[j, i + 2]
                a30 = At[j, i + 3]
                a01 = At[j + 1, i]
                a11 = At[j + 1, i + 1]
                a21 = At[j + 1, i + 2]
                a31 = At[j + 1, i + 3]
                o0 = out[j, c0:c1]
                o1 = out[j + 1, c0:c1]
                for c in range(w):
                    v0 = x0[c]
                    v1 = x1[c]
                    v2 = x2[c]
                    v3 = x3[c]
                    o0[c] += a00 * v0 + a10 * v1 + a20 * v2 + a30 * v3
                    o1[c] += a01 * v0 + a11 * v1 + a21 * v2 + a31 * v3
                j += 2
            if j < k:
                a00 = At[j, i]
                a10 = At[j, i + 1]
                a20 = At[j, i + 2]
                a30 = At[j, i + 3]
                o0 = out[j, c0:c1]
                for c in range(w):
                    o0[c] += a00 * x0[c] + a10 * x1[c] + a20 * x2[c] + a30 * x3[c]
        for i in range(n4, n):
            x0 = X[i, c0:c1]
            for j in range(k):
                a00 = At[j, i]
                o0 = out[j, c0:c1]
                for c in range(w):
                    o0[c] += a00 * x0[c]


@_jit
def _mu_repeats(At, Tt, G, l1, tiny, inner_max, delta):
    """``A <- A * max(T, 0) / max(A G + l1, tiny)`` repeated (block-level delta rule), the
    entries below ``tiny`` set to 0 after each update."""
    k, n = At.shape
    for j in range(k):
        for i in range(n):
            Tt[j, i] = max(Tt[j, i], 0)
    new = np.empty((k, _CH), At.dtype)
    zero = np.zeros(1, At.dtype)[0]
    first = -1.0
    for _ in range(inner_max):
        change = 0.0
        for i0 in range(0, n, _CH):
            w = min(_CH, n - i0)
            for j in range(k):
                den = new[j, :w]
                g = G[0, j]
                a = At[0, i0 : i0 + w]
                for i in range(w):
                    den[i] = a[i] * g
                for l in range(1, k):
                    g = G[l, j]
                    a = At[l, i0 : i0 + w]
                    for i in range(w):
                        den[i] += a[i] * g
                a = At[j, i0 : i0 + w]
                t = Tt[j, i0 : i0 + w]
                for i in range(w):
                    v = a[i] * (t[i] / max(den[i] + l1, tiny))
                    den[i] = zero if v < tiny else v  # the reference's flush (solvers._mu)
            for j in range(k):
                a = At[j, i0 : i0 + w]
                v = new[j, :w]
                for i in range(w):
                    dlt = float(v[i]) - float(a[i])
                    change += dlt * dlt
                    a[i] = v[i]
        if inner_max == 1:
            break
        if first < 0:
            first = change
        if change <= delta * delta * first or first == 0.0:
            break


@_jit
def _hals_repeats(At, Tt, G, l1, tiny, nonneg, inner_max, delta):
    """HALS sweeps ``a_j <- max(0, a_j + (t_j - l1 - G_j a) / G_jj)`` (delta rule)."""
    k, n = At.shape
    d = np.empty(k, At.dtype)
    for j in range(k):
        d[j] = max(G[j, j], tiny)
    Gs = np.empty((k, k), At.dtype)
    for j in range(k):
        for l in range(k):
            Gs[j, l] = G[j, l] / d[j]
    for j in range(k):  # Tt becomes Q = (T - l1) / d
        dj = d[j]
        for i in range(n):
            Tt[j, i] = (Tt[j, i] - l1) / dj if l1 != 0.0 else Tt[j, i] / dj
    r = np.empty(_CH, At.dtype)
    zero = np.zeros(1, At.dtype)[0]
    first = -1.0
    for _ in range(inner_max):
        change = 0.0
        for i0 in range(0, n, _CH):
            w = min(_CH, n - i0)
            for j in range(k):
                g = Gs[j, 0]
                a = At[0, i0 : i0 + w]
                for i in range(w):
                    r[i] = g * a[i]
                for l in range(1, k):
                    g = Gs[j, l]
                    a = At[l, i0 : i0 + w]
                    for i in range(w):
                        r[i] += g * a[i]
                a = At[j, i0 : i0 + w]
                q = Tt[j, i0 : i0 + w]
                if nonneg:
                    for i in range(w):
                        old = a[i]
                        v = max(old + q[i] - r[i], zero)
                        dlt = float(v) - float(old)
                        change += dlt * dlt
                        a[i] = v
                else:
                    for i in range(w):
                        old = a[i]
                        v = old + q[i] - r[i]
                        dlt = float(v) - float(old)
                        change += dlt * dlt
                        a[i] = v
        if inner_max == 1:
            break
        if first < 0:
            first = change
        if change <= delta * delta * first or first == 0.0:
            break


def block_pass(X, A, S, G, l1, tiny, nonneg, inner_max, delta, hals, AtX):
    """The whole per-block work; returns ``A^T A`` (float64); ``AtX`` gets ``A^T X``.

    Plain Python gluing the compiled steps (a few microseconds a block): each step
    compiles on its own, once, and a fit compiles only its solver's repeats, instead of
    one large function that LLVM would optimize again as a whole.
    """
    n, k = A.shape
    At = np.ascontiguousarray(A.T)
    Tt = np.empty((k, n), X.dtype)
    _xst(X, S, Tt)
    if hals:
        _hals_repeats(At, Tt, G, l1, tiny, nonneg, inner_max, delta)
    else:
        _mu_repeats(At, Tt, G, l1, tiny, inner_max, delta)
    A[...] = At.T
    _atx(X, At, AtX)
    return (At @ At.T).astype(np.float64)  # k x k from k x n_b: BLAS, as the reference
