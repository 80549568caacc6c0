"""The numba kernel of the fused KL multiplicative update (imported only when it runs).

Objective of a block ``b`` (generalized Kullback-Leibler, ``Y = A S``)::

    sum_ij X_ij log(X_ij / Y_ij) - X_ij + Y_ij

One call does a block's whole share of a KL MU iteration, a tile of 4 pixel rows at a
time, over chunks of ``_CB`` bytes of channels (the tile's model, ratio and rows of ``X``
stay in L1, ``S`` in L2), never forming a pixels x channels temporary:

1. ``Y = A_t S``, ``Q = X / max(Y, tiny)`` and ``N = Q S^T`` (tile x k);
2. ``A_t <- A_t * (max(N, 0) / den)`` with ``den = max(rowsum(S) + l1, tiny)``, the
   entries below ``tiny`` set to 0 (as the reference path does);
3. ``Y' = A_t S``, ``Q' = X / max(Y', tiny)``; ``P += A_t^T Q'`` (k x m) and the fit
   ``sum x log(Q') - x + max(Y', tiny)`` (``x log`` taken as 0 where ``x = 0``).

The logarithm is :func:`_vlog`, a branch-free reduction to ``[sqrt(1/2), sqrt(2))`` by
bit casts and a polynomial (Cephes ``logf`` for float32, fdlibm ``log`` for float64,
both within one unit in the last place of ``np.log``), which LLVM vectorizes; numba's
``math.log`` stays one scalar call an entry without Intel SVML (9x slower here).

Products are register-blocked: the model in tiles of 4 rows x 4 components, ``Q S^T``
in 2 rows x 4 components, ``A^T Q'`` in 4 rows x 2 components.  Sums inside a row are
taken in the working dtype (as BLAS does for the reference path), the fit and the column
sums of ``A`` across rows in float64.  Only re-association and fused multiply-adds are
allowed (``reassoc``/``contract``), which change results by rounding alone.
"""

from __future__ import annotations

import numba as _nb
import numpy as np
from numba.core import types as _t
from numba.extending import intrinsic, overload

_FM = {"reassoc", "contract"}
_jit = _nb.njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")

_CB = 2048  # bytes of a row a chunk (512 float32 / 256 float64 channels)
_R = 4  # pixel rows a tile


# ------------------------------------------------------------------ logarithm
@intrinsic
def _bits(typingctx, x):
    """The bits of a float as the integer of the same width."""
    ity = {_t.float32: _t.int32, _t.float64: _t.int64}.get(x)
    if ity is None:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(ity))

    return ity(x), codegen


@intrinsic
def _float(typingctx, i):
    """The float whose bits are the integer ``i`` (int32 -> float32, int64 -> float64)."""
    fty = {_t.int32: _t.float32, _t.int64: _t.float64}.get(i)
    if fty is None:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], context.get_value_type(fty))

    return fty(i), codegen


_F = np.float32
_SQH32, _MANT32 = np.int32(0x3F3504F3), np.int32(0x007FFFFF)  # bits of sqrt(1/2), mantissa
_P32 = tuple(
    _F(c)
    for c in (
        7.0376836292e-2,
        -1.1514610310e-1,
        1.1676998740e-1,
        -1.2420140846e-1,
        1.4249322787e-1,
        -1.6668057665e-1,
        2.0000714765e-1,
        -2.4999993993e-1,
        3.3333331174e-1,
    )
)
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8 = _P32
_LN2A32, _LN2B32, _HALF32, _ONE32 = _F(0.693359375), _F(-2.12194440e-4), _F(0.5), _F(1.0)

_SQH64, _MANT64 = np.int64(0x3FE6A09E667F3BCD), np.int64(0x000FFFFFFFFFFFFF)
_LG1, _LG2, _LG3, _LG4 = (
    6.666666666666735e-01,
    3.999999999940942e-01,
    2.857142874366239e-01,
    2.222219843214978e-01,
)
_LG5, _LG6, _LG7 = 1.818357216161805e-01, 1.531383769920937e-01, 1.479819860511659e-01
_LN2HI, _LN2LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10


def _vlog(x):  # pragma: no cover - replaced by the overload in compiled code
    """``log(x)`` for a positive normal float (compiled: :func:`_vlog_impl`)."""
    raise NotImplementedError


def _log32(x):
    """Cephes ``logf``: ``x = 2^e (1 + f)`` with ``1 + f`` in ``[sqrt(1/2), sqrt(2))``,
    ``log(1 + f) = f - f^2 / 2 + f^3 P(f)`` and ``e log 2`` in two parts."""
    ix = np.int32(_bits(x) - _SQH32)
    e = np.int32(ix >> 23)
    f = _float(np.int32((ix & _MANT32) + _SQH32)) - _ONE32  # in [sqrt(1/2) - 1, sqrt(2) - 1)
    z = f * f
    p = _C0 * f + _C1
    p = p * f + _C2
    p = p * f + _C3
    p = p * f + _C4
    p = p * f + _C5
    p = p * f + _C6
    p = p * f + _C7
    p = p * f + _C8
    fe = np.float32(e)
    y = f * z * p + fe * _LN2B32 - _HALF32 * z
    return (f + y) + fe * _LN2A32


def _log64(x):
    """fdlibm ``log``: the same reduction, ``log(1 + f) = 2 atanh(s)`` with
    ``s = f / (2 + f)`` as a polynomial in ``s^2``, and ``e log 2`` in two parts."""
    ix = _bits(x) - _SQH64
    f = _float((ix & _MANT64) + _SQH64) - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7))) + w * (_LG2 + w * (_LG4 + w * _LG6))
    hfsq = 0.5 * f * f
    dk = float(ix >> 52)
    return dk * _LN2HI - ((hfsq - (s * (hfsq + r) + dk * _LN2LO)) - f)


@overload(_vlog, jit_options={"fastmath": {"contract"}, "error_model": "numpy"})
def _vlog_impl(x):
    """The float32 or float64 version (no re-association: the order of the hi/lo sums
    is the accuracy)."""
    if x == _t.float32:
        return _log32
    if x == _t.float64:
        return _log64
    return None


# ------------------------------------------------------------------ tile steps
@_jit
def _model(a, S, c0, w, y):
    """``y[:, :w] = a @ S[:, c0:c0 + w]`` for a tile ``a`` (4 x k, zero-padded to a
    multiple of 4 columns): 4 rows x 4 components."""
    k = S.shape[0]
    y0, y1, y2, y3 = y[0, :w], y[1, :w], y[2, :w], y[3, :w]
    y[:, :w] = 0
    for j in range(0, k, 4):
        s0 = S[j, c0 : c0 + w]  # past k: a repeated row with a zero weight
        s1 = S[min(j + 1, k - 1), c0 : c0 + w]
        s2 = S[min(j + 2, k - 1), c0 : c0 + w]
        s3 = S[min(j + 3, k - 1), c0 : c0 + w]
        b00, b01, b02, b03 = a[0, j], a[0, j + 1], a[0, j + 2], a[0, j + 3]
        b10, b11, b12, b13 = a[1, j], a[1, j + 1], a[1, j + 2], a[1, j + 3]
        b20, b21, b22, b23 = a[2, j], a[2, j + 1], a[2, j + 2], a[2, j + 3]
        b30, b31, b32, b33 = a[3, j], a[3, j + 1], a[3, j + 2], a[3, j + 3]
        for c in range(w):
            u0, u1, u2, u3 = s0[c], s1[c], s2[c], s3[c]
            y0[c] += b00 * u0 + b01 * u1 + b02 * u2 + b03 * u3
            y1[c] += b10 * u0 + b11 * u1 + b12 * u2 + b13 * u3
            y2[c] += b20 * u0 + b21 * u1 + b22 * u2 + b23 * u3
            y3[c] += b30 * u0 + b31 * u1 + b32 * u2 + b33 * u3


@_jit
def _numer(q, S, c0, w, num, zero):
    """``num += q[:, :w] @ S[:, c0:c0 + w].T`` (4 x k): 2 rows x 4 components."""
    k = S.shape[0]
    for i in range(0, _R, 2):
        q0, q1 = q[i, :w], q[i + 1, :w]
        j = 0
        while j + 4 <= k:
            s0, s1 = S[j, c0 : c0 + w], S[j + 1, c0 : c0 + w]
            s2, s3 = S[j + 2, c0 : c0 + w], S[j + 3, c0 : c0 + w]
            t00 = t01 = t02 = t03 = t10 = t11 = t12 = t13 = zero
            for c in range(w):
                a, b = q0[c], q1[c]
                u0, u1, u2, u3 = s0[c], s1[c], s2[c], s3[c]
                t00 += a * u0
                t01 += a * u1
                t02 += a * u2
                t03 += a * u3
                t10 += b * u0
                t11 += b * u1
                t12 += b * u2
                t13 += b * u3
            num[i, j] += t00
            num[i, j + 1] += t01
            num[i, j + 2] += t02
            num[i, j + 3] += t03
            num[i + 1, j] += t10
            num[i + 1, j + 1] += t11
            num[i + 1, j + 2] += t12
            num[i + 1, j + 3] += t13
            j += 4
        while j < k:
            s0 = S[j, c0 : c0 + w]
            t00 = t10 = zero
            for c in range(w):
                t00 += q0[c] * s0[c]
                t10 += q1[c] * s0[c]
            num[i, j] += t00
            num[i + 1, j] += t10
            j += 1


@_jit
def _accum(a, q, c0, w, P):
    """``P[:, c0:c0 + w] += a.T @ q[:, :w]`` for a tile ``a`` (4 x k): 4 rows x 2 components."""
    k = P.shape[0]
    q0, q1, q2, q3 = q[0, :w], q[1, :w], q[2, :w], q[3, :w]
    j = 0
    while j + 2 <= k:
        a00, a10, a20, a30 = a[0, j], a[1, j], a[2, j], a[3, j]
        a01, a11, a21, a31 = a[0, j + 1], a[1, j + 1], a[2, j + 1], a[3, j + 1]
        o0, o1 = P[j, c0 : c0 + w], P[j + 1, c0 : c0 + w]
        for c in range(w):
            v0, v1, v2, v3 = q0[c], q1[c], q2[c], q3[c]
            o0[c] += a00 * v0 + a10 * v1 + a20 * v2 + a30 * v3
            o1[c] += a01 * v0 + a11 * v1 + a21 * v2 + a31 * v3
        j += 2
    if j < k:
        a00, a10, a20, a30 = a[0, j], a[1, j], a[2, j], a[3, j]
        o0 = P[j, c0 : c0 + w]
        for c in range(w):
            o0[c] += a00 * q0[c] + a10 * q1[c] + a20 * q2[c] + a30 * q3[c]


@_jit
def _ratio(x, y, w, tiny):
    """``y[:w] = x[:w] / max(y[:w], tiny)`` (the model becomes the ratio)."""
    for c in range(w):
        y[c] = x[c] / max(y[c], tiny)


@_jit
def _ratio_fit(x, y, w, tiny):
    """:func:`_ratio`, returning ``sum x log(x / Y) - x + max(Y, tiny)`` (float64)."""
    d = tiny - tiny  # a zero of the working dtype
    for c in range(w):
        v = x[c]
        yc = max(y[c], tiny)
        r = v / yc
        y[c] = r
        d += v * _vlog(max(r, tiny)) - v + yc  # x = 0: 0 * log(tiny) = 0
    return float(d)


# ------------------------------------------------------------------ the block
@_jit
def block_kl_mu(X, A, S, den, tiny, P, colsum):
    """One KL MU step of a block.

    ``A`` (n x k) is updated in place, ``P`` (k x m, working dtype) gets ``A'^T (X / Y')``
    and ``colsum`` (k, float64) ``A'^T 1``; returns the block's KL at ``(A', S)``
    (float64).  ``den`` (k) is ``max(rowsum(S) + l1, tiny)`` and ``tiny`` a scalar of
    the working dtype.
    """
    n, m = X.shape
    k = S.shape[0]
    dt = X.dtype
    P[:, :] = 0
    colsum[:] = 0
    if n == 0 or m == 0 or k == 0:
        return 0.0
    zero = tiny - tiny
    cw = max(1, _CB // X.itemsize)
    y = np.empty((_R, cw), dt)
    a = np.zeros((_R, k + (-k) % 4), dt)  # the tile's maps, zero-padded
    num = np.empty((_R, k), dt)
    zx = np.zeros(m, dt)  # the rows of a short last tile: x = 0 and a = 0
    fit = 0.0
    for i0 in range(0, n, _R):
        r = min(_R, n - i0)
        a[r:, :] = 0
        a[:r, :k] = A[i0 : i0 + r, :]
        xs = (
            X[i0],
            X[i0 + 1] if r > 1 else zx,
            X[i0 + 2] if r > 2 else zx,
            X[i0 + 3] if r > 3 else zx,
        )
        num[:, :] = 0
        for c0 in range(0, m, cw):
            w = min(cw, m - c0)
            _model(a, S, c0, w, y)
            for i in range(_R):
                _ratio(xs[i][c0 : c0 + w], y[i], w, tiny)
            _numer(y, S, c0, w, num, zero)
        for i in range(r):
            for j in range(k):
                v = a[i, j] * (max(num[i, j], zero) / den[j])
                a[i, j] = zero if v < tiny else v  # the reference's flush (solvers._mu)
                colsum[j] += a[i, j]
        A[i0 : i0 + r, :] = a[:r, :k]
        for c0 in range(0, m, cw):
            w = min(cw, m - c0)
            _model(a, S, c0, w, y)
            for i in range(_R):
                f = _ratio_fit(xs[i][c0 : c0 + w], y[i], w, tiny)
                fit += f if i < r else 0.0
            _accum(a, y, c0, w, P)
    return fit
