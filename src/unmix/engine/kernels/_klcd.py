"""Numba kernels of the KL coordinate-descent solver (imported only when it runs).

The generalized KL divergence of one pixel row as a function of one map entry
``a = A[i, r]``, everything else fixed, is (``Y = A S``, ``c_j = Y_ij - a S_rj``)::

    f(a) = sum_j (c_j + a S_rj) - X_ij log(c_j + a S_rj) + l1 a

with ``f'(a) = sum_j S_rj + l1 - sum_j X_ij S_rj / Y_ij`` and
``f''(a) = sum_j X_ij S_rj^2 / Y_ij^2``.  ``f''`` decreases with ``a`` (``f''' < 0``), so
a projected Newton step to the right (``d > 0``) always lowers ``f`` (``f(a + d) <= f(a)
+ f' d + f''(a) d^2 / 2 = f(a) - f'^2 / (2 f'')``); a step to the left lowers it when
``f' d + f''(a + d) d^2 / 2 <= 0``, which the kernels check with the curvature they compute
at ``a + d`` anyway (the next Newton step needs it); otherwise the step is halved and
checked again, and after a few halvings replaced by ``-f'/f''(a + d)``, which then lies
inside ``[a + d, a]`` and lowers ``f`` for sure (:func:`safe_step`).  A step to the right
is the longer of Newton's and the multiplicative update's ``a q / c`` (a majorize-minimize
step, certified too), which leaves a vanishing model at once (:func:`step_from`).
(Hsieh & Dhillon 2011, with this curvature safeguard added to their Newton steps.)
The same 1-D problem, summed over pixels, holds for one entry ``S[r, j]``; the entries of
a row of ``S`` are independent, so a whole row takes its Newton step at once from sums
over all pixel blocks (:func:`s_pass`).

With pixel weights ``w_i`` (the divergence of pixel ``i`` counted ``w_i`` times) a map
entry's 1-D problem is ``w_i f(a)`` with ``l1`` replaced by ``l1 / w_i`` (the same step),
and an endmember entry's sums over pixels take ``w_i`` in each term; a pixel of weight 0
keeps its maps (set to 0 under an L1 penalty, their minimum then).  A mask's missing
entries (its *holes*, a few per pixel: in CSR form ``hp``, ``hc``) hold ``X = 0``, so they
add nothing to ``q`` and ``h``; only the sums of ``S`` and of ``A`` leave them out:
``c_ir = sum_{j observed} S_rj`` per pixel, ``sum_{i observed} w_i A_ir`` per channel
(the passes accumulate the holes' share ``hsum``).  Unweighted fits pass ``w = 1``.

Sums over channels and pixels are accumulated in float64; ``Y`` is kept in ``X``'s dtype
(dense blocks) or in float64 at the nonzeros of ``X`` (CSR blocks).
Where the model vanishes at a count (``Y_ij < tiny``) the curvature is infinite (never
NaN: ``(x s / y) (s / y)`` with finite factors), which no step to the left passes.
"""

from __future__ import annotations

from typing import Any

import numba as _nb
import numpy as np

_FM = {"reassoc", "contract"}
# error_model="numpy": no zero-division check (every divisor here is floored or tested),
# which would keep the loops over channels from vectorizing
_jit = _nb.njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")

#: halvings of an uncertified step to the left before the safe step is taken
_HALVINGS = 3


@_jit
def _model_row(a, S, y):
    """``y = a @ S`` for one pixel."""
    k, m = S.shape
    y[:] = 0
    for r in range(k):
        ar = a[r]
        if ar != 0:
            s = S[r]
            for j in range(m):
                y[j] += ar * s[j]


@_jit
def _row_fit(x, y, tiny):
    """``sum_j y_j - x_j log y_j`` (the part of KL that depends on the model)."""
    total = 0.0
    for j in range(x.shape[0]):
        yj = float(y[j])
        total += yj
        if x[j] > 0:
            total -= float(x[j]) * np.log(max(yj, tiny))
    return total


@_jit
def _shift(x, y, s, delta, s2, tiny):
    """``y += delta s`` (kept >= 0); returns the sums ``(q, h)`` of ``s`` and of ``s2``
    at the new ``y``: ``q = sum_j x_j s_j / y_j``, ``h = sum_j x_j s_j^2 / y_j^2``."""
    q1 = 0.0
    h1 = 0.0
    q2 = 0.0
    h2 = 0.0
    for j in range(x.shape[0]):
        sj = float(s[j])
        yj = max(float(y[j]) + delta * sj, 0.0)
        y[j] = yj
        inv = 1.0 / max(yj, tiny)
        t = float(x[j]) * inv
        s2j = float(s2[j])
        q1 += t * sj
        h1 += (t * sj) * (inv * sj)  # never inf * 0 where y vanishes
        q2 += t * s2j
        h2 += (t * s2j) * (inv * s2j)
    return q1, h1, q2, h2


@_jit
def newton_step(a, g, h):
    """The projected Newton step ``max(0, a - g/h) - a`` (to 0 when ``h = 0 < g``)."""
    if h > 0:
        return max(0.0, a - g / h) - a
    return -a if g > 0 else 0.0


@_jit
def step_from(a, c, q, h):
    """The step of one entry: the projected Newton step, or when it goes right and the
    multiplicative update ``a q / c`` (a majorize-minimize step of the same 1-D problem,
    certified too) goes further, that one - it leaves a vanishing model in one step where
    Newton only doubles ``a``."""
    d = newton_step(a, c - q, h)
    if d > 0 and c > 0:
        d = max(d, a * q / c - a)
    return d


@_jit
def safe_step(g, h_end):
    """The fallback after a step ``d < 0`` to the left failed its check: ``-g / h_end``
    with ``h_end`` the curvature at ``a + d``.  The check failed means ``g / h_end <
    |d| / 2``, so the new point lies inside ``[a + d, a]``, where the curvature is at most
    ``h_end``: the objective falls by at least ``g^2 / (2 h_end)``."""
    return -g / h_end if h_end > 0 else 0.0


@_jit
def _entry(x, y, s, s2, a, c, q, h, inner, tiny):
    """Up to ``inner`` safeguarded Newton steps on one map entry ``a`` (row ``s`` of
    ``S``) from its sums ``q``, ``h``; ``y`` follows.  Returns the new entry and the
    sums of the next row ``s2`` at the final ``y``."""
    q2 = h2 = 0.0
    for it in range(inner):
        g = c - q
        d = step_from(a, c, q, h)
        if d == 0.0 or abs(d) <= 1e-9 * a:
            if it == 0:
                q2, h2, _, _ = _shift(x, y, s2, 0.0, s2, tiny)
            break
        q1, h1, q2, h2 = _shift(x, y, s, d, s2, tiny)
        tries = 0
        while d < 0 and g * d + 0.5 * h1 * d * d > 0:  # not certified: halve, then safe
            d2 = 0.5 * d if tries < _HALVINGS else safe_step(g, h1)
            q1, h1, q2, h2 = _shift(x, y, s, d2 - d, s2, tiny)
            d = d2
            tries += 1
            if tries > _HALVINGS:
                break
        a += d
        q, h = q1, h1
    return a, q2, h2


@_jit
def _holes_out(a, S, ssum, l1, wi, holes, c):
    """``c_r = sum_j S_rj`` over the pixel's observed channels ``+ l1 / w_i`` (its map
    entries' constant gradients); returns the model summed over its ``holes``
    (``sum_{j in holes} (a S)_j``, to leave out of its fit)."""
    k = S.shape[0]
    missing = 0.0
    for r in range(k):
        out = 0.0
        for p in range(holes.shape[0]):
            out += float(S[r, holes[p]])
        observed = ssum[r] - out
        if observed <= 1e-12 * ssum[r]:  # every channel of S_r missing (up to rounding)
            observed = 0.0
        c[r] = observed + l1 / wi
        missing += float(a[r]) * out
    return missing


@_jit
def _model_at(a, S, holes):
    """``sum_{j in holes} (a S)_j``: a pixel's model summed over its holes (left out of
    its fit)."""
    total = 0.0
    for p in range(holes.shape[0]):
        for r in range(a.shape[0]):
            total += float(a[r]) * float(S[r, holes[p]])
    return total


@_jit
def _add_holes(a, wi, holes, hsum):
    """``hsum[r, j] += w_i a_r`` at the pixel's holes ``j`` (the maps' sums leave them out)."""
    for p in range(holes.shape[0]):
        for r in range(a.shape[0]):
            hsum[r, holes[p]] += wi * float(a[r])


@_jit
def a_pass(X, A, S, ssum, l1, w, Y, inner, tiny, r0, q0, h0, hp, hc, hsum):
    """Update the block's maps in place; return the fit at the maps before the update.

    Per pixel: ``Y_i = A_i S`` afresh, its fit ``w_i sum_j Y_ij - X_ij log Y_ij`` over its
    observed channels, then the coordinate Newton steps on ``A[i, 0..k-1]`` in turn (from
    ``ssum[r] = sum_j S_rj`` less the holes, plus ``l1 / w_i``).  ``Y`` gets the new model;
    ``q0``, ``h0`` get the sums of row ``r0`` of ``S``, the first row the endmember update
    steps (``sum_i w_i A_ir0 X_ij / Y_ij``, ``sum_i w_i A_ir0^2 X_ij / Y_ij^2``), and
    ``hsum`` the new maps' share at the holes (``hp``, ``hc``: the block's holes in CSR).
    """
    n, m = X.shape
    k = S.shape[0]
    c = np.empty(k)
    fit = 0.0
    for i in range(n):
        x = X[i]
        y = Y[i]
        a = A[i]
        wi = w[i]
        if wi == 0 and l1 > 0:  # the pixel does not count: only the penalty, least at 0
            a[:] = 0
        _model_row(a, S, y)
        if wi == 0:  # else its maps stay (any is a minimum)
            continue
        holes = hc[hp[i] : hp[i + 1]]
        missing = _holes_out(a, S, ssum, l1, wi, holes, c)
        fit += wi * (_row_fit(x, y, tiny) - missing)
        q, h, _, _ = _shift(x, y, S[0], 0.0, S[0], tiny)
        for r in range(k):
            nxt = S[r + 1] if r + 1 < k else S[r]
            ar, q, h = _entry(x, y, S[r], nxt, float(a[r]), c[r], q, h, inner, tiny)
            a[r] = ar
        _add_holes(a, wi, holes, hsum)
        b = float(a[r0])
        if b != 0:
            bw = wi * b
            for j in range(m):
                inv = 1.0 / max(float(y[j]), tiny)
                t = float(x[j]) * inv
                q0[j] += bw * t
                h0[j] += (bw * t) * (b * inv)
    return fit


@_jit
def s_pass(X, A, w, Y, r_apply, delta, r1, r2, tiny, q1, h1, q2, h2):
    """``Y += A[:, r_apply] delta`` (a change of row ``r_apply`` of ``S``), then the sums
    ``q = sum_i w_i A_ir X_ij / Y_ij`` and ``h = sum_i w_i A_ir^2 X_ij / Y_ij^2`` for rows
    ``r1`` and ``r2`` (a row < 0: none) at the new model."""
    n, m = X.shape
    for i in range(n):
        x = X[i]
        y = Y[i]
        if r_apply >= 0:
            ar = float(A[i, r_apply])
            if ar != 0:
                for j in range(m):
                    y[j] = max(float(y[j]) + ar * delta[j], 0.0)
        b1 = float(A[i, r1]) if r1 >= 0 else 0.0
        b2 = float(A[i, r2]) if r2 >= 0 else 0.0
        bw1 = w[i] * b1
        bw2 = w[i] * b2
        if bw1 == 0 and bw2 == 0:
            continue
        for j in range(m):
            inv = 1.0 / max(float(y[j]), tiny)
            t = float(x[j]) * inv
            q1[j] += bw1 * t
            h1[j] += (bw1 * t) * (b1 * inv)
            q2[j] += bw2 * t
            h2[j] += (bw2 * t) * (b2 * inv)


class Holes:
    """A block's missing entries (mask False) in CSR form: row pointers ``hp`` and
    channels ``hc``; ``masked``: whether the fit has a mask (:meth:`none`: it has not)."""

    def __init__(self, observed: np.ndarray) -> None:
        rows, cols = np.nonzero(~np.asarray(observed, dtype=bool))
        self.hp = np.zeros(observed.shape[0] + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=observed.shape[0]), out=self.hp[1:])
        self.hc = cols.astype(np.int32)
        self.masked = True

    @classmethod
    def none(cls, n: int) -> Holes:
        """The holes of ``n`` pixels of a fit without a mask."""
        out = cls(np.ones((n, 0), dtype=bool))
        out.masked = False
        return out


def map_sums(A, w, hsum, masked):
    """``sum_i w_i A_ir`` over each channel's observed pixels: (k, m) in a masked fit,
    else (k, 1), one sum a row (the same shape on every block and process: the sums are
    reduced over them)."""
    total = (w @ A.astype(np.float64, copy=False))[:, None]
    if not masked:
        return total
    observed = total - hsum
    observed[observed <= 1e-12 * total] = 0.0  # a channel missing in every pixel
    return observed


def block_a_pass(X, A, S, l1, w, Y, inner, tiny, r0, holes):
    """:func:`a_pass` on one block (``w``: its pixel weights, float64; ``holes``: its
    :class:`Holes`); returns ``(fit, q0, h0, weighted sums of A over each channel's
    observed pixels, (k, m) or (k, 1))``."""
    m = X.shape[1]
    q0 = np.zeros(m)
    h0 = np.zeros(m)
    hsum = np.zeros((A.shape[1], m))
    ssum = S.sum(axis=1, dtype=np.float64)
    fit = a_pass(X, A, S, ssum, l1, w, Y, inner, tiny, r0, q0, h0, holes.hp, holes.hc, hsum)
    return fit, q0, h0, map_sums(A, w, hsum, holes.masked)


def block_s_pass(X, A, w, Y, r_apply, delta, r1, r2, tiny):
    """:func:`s_pass` on one block; returns ``(q1, h1, q2, h2)`` (float64)."""
    m = X.shape[1]
    out = [np.zeros(m) for _ in range(4)]
    s_pass(X, A, w, Y, r_apply, delta, r1, r2, tiny, *out)
    return out


@_jit
def fit_pass(X, A, S, w, y, tiny, hp, hc):
    """``sum_i w_i sum_j Y_ij - X_ij log Y_ij`` over a dense block's observed entries at
    ``Y = A S`` (``y``: one row of scratch), without storing the model: the fit of a point
    the loop judges."""
    fit = 0.0
    for i in range(X.shape[0]):
        if w[i] != 0:
            _model_row(A[i], S, y)
            missing = _model_at(A[i], S, hc[hp[i] : hp[i + 1]])
            fit += w[i] * (_row_fit(X[i], y, tiny) - missing)
    return fit


def block_fit(X, A, S, w, tiny, holes):
    """:func:`fit_pass` on one block."""
    return fit_pass(X, A, S, w, np.empty(S.shape[1]), tiny, holes.hp, holes.hc)


# ------------------------------------------------------------ sparse blocks (CSR)
# The same passes over the nonzeros of X alone: the data term needs Y only where X > 0
# (sum_j Y_ij = sum_r A_ir sum_j S_rj), so each costs O(nnz k) instead of O(n m k).


@_jit
def _widest_row(indptr):
    """The most nonzeros of any row of a CSR block (the size of a row's buffers)."""
    w = 0
    for i in range(indptr.shape[0] - 1):
        w = max(w, indptr[i + 1] - indptr[i])
    return w


@_jit
def _row_total(a, ssum):
    """``sum_j y_j = sum_r a_r sum_j S_rj``: a pixel's model summed over every channel."""
    total = 0.0
    for r in range(a.shape[0]):
        total += float(a[r]) * ssum[r]
    return total


@_jit
def _gather(a, St, cl, x, G, xl, y):
    """One pixel's nonzeros in contiguous buffers: ``G[r, p] = S[r, cl[p]]`` (the rows
    of ``S`` at its channels), ``xl`` its counts in float64, ``y`` the model ``a @ S``
    there; returns the number of nonzeros."""
    k = St.shape[1]
    w = cl.shape[0]
    for p in range(w):
        srow = St[cl[p]]
        acc = 0.0
        for r in range(k):
            sr = float(srow[r])
            G[r, p] = sr
            acc += float(a[r]) * sr
        y[p] = acc
        xl[p] = float(x[p])
    return w


@_jit
def _xlogy(x, y, tiny):
    """``sum_p x_p log max(y_p, tiny)``, the entries with ``x_p = 1`` (most, in counts)
    as the log of their running product: one ``log`` per run of products kept inside
    ``[1e-150, 1e150]`` instead of one per entry (each product rounds like a ``log``)."""
    total = 0.0
    prod = 1.0
    for p in range(x.shape[0]):
        yp = max(y[p], tiny)
        if x[p] == 1.0 and 1e-100 < yp < 1e100:
            prod *= yp
            if not 1e-150 < prod < 1e150:
                total += np.log(prod)
                prod = 1.0
        else:
            total += x[p] * np.log(yp)
    return total + np.log(prod)


@_jit
def a_pass_sp(indptr, cols, vals, A, St, ssum, l1, w, Yv, inner, tiny, r0, q0, h0, hp, hc, hsum):
    """:func:`a_pass` for a block in CSR form (``Yv``: the model at the nonzeros).

    Each pixel's rows of ``S`` at its nonzeros are gathered once into a contiguous
    buffer, so that the ``k + 2`` walks over them (:func:`_shift`) run without gathers."""
    n, k = A.shape
    width = _widest_row(indptr)
    G = np.empty((k, width))
    xl = np.empty(width)
    c = np.empty(k)
    S = St.T
    fit = 0.0
    for i in range(n):
        p0, p1 = indptr[i], indptr[i + 1]
        y = Yv[p0:p1]
        cl = cols[p0:p1]
        a = A[i]
        wi = w[i]
        if wi == 0 and l1 > 0:  # the pixel does not count: only the penalty, least at 0
            a[:] = 0
        np_ = _gather(a, St, cl, vals[p0:p1], G, xl, y)
        if wi == 0:  # else its maps stay (any is a minimum)
            continue
        x = xl[:np_]
        holes = hc[hp[i] : hp[i + 1]]
        missing = _holes_out(a, S, ssum, l1, wi, holes, c)
        fit += wi * (_row_total(a, ssum) - missing - _xlogy(x, y, tiny))
        q, h, _, _ = _shift(x, y, G[0, :np_], 0.0, G[0, :np_], tiny)
        for r in range(k):
            s, nxt = G[r, :np_], G[min(r + 1, k - 1), :np_]
            ar, q, h = _entry(x, y, s, nxt, float(a[r]), c[r], q, h, inner, tiny)
            a[r] = ar
        _add_holes(a, wi, holes, hsum)
        b = float(a[r0])
        if b != 0:
            bw = wi * b
            for p in range(np_):
                inv = 1.0 / max(y[p], tiny)
                t = x[p] * inv
                q0[cl[p]] += bw * t
                h0[cl[p]] += (bw * t) * (b * inv)
    return fit


@_jit
def _moved(Yv, p, change, x, tiny):
    """Apply ``change`` to the model ``Yv[p]`` (floored at 0); return ``1 / y`` and
    ``x / y`` (``y`` floored at ``tiny``)."""
    y = max(Yv[p] + change, 0.0)
    Yv[p] = y
    inv = 1.0 / max(y, tiny)
    return inv, x * inv


@_jit
def s_pass_sp(indptr, cols, vals, A, w, Yv, r_apply, delta, r1, r2, tiny, q1, h1, q2, h2):
    """:func:`s_pass` for a block in CSR form: one walk over the nonzeros that applies
    the change and adds the sums (of one row alone when ``r1`` or ``r2`` < 0: half the
    scattered adds)."""
    n = A.shape[0]
    two = r1 >= 0 and r2 >= 0
    ro, qo, ho = (r2, q2, h2) if r1 < 0 else (r1, q1, h1)
    for i in range(n):
        p0, p1 = indptr[i], indptr[i + 1]
        ar = float(A[i, r_apply]) if r_apply >= 0 else 0.0
        if two:
            b1 = float(A[i, r1])
            b2 = float(A[i, r2])
            bw1 = w[i] * b1
            bw2 = w[i] * b2
            for p in range(p0, p1):
                c = cols[p]
                inv, t = _moved(Yv, p, ar * delta[c], float(vals[p]), tiny)
                q1[c] += bw1 * t
                h1[c] += (bw1 * t) * (b1 * inv)
                q2[c] += bw2 * t
                h2[c] += (bw2 * t) * (b2 * inv)
            continue
        b = float(A[i, ro]) if ro >= 0 else 0.0
        bw = w[i] * b
        if bw == 0:
            if ar != 0:
                for p in range(p0, p1):
                    Yv[p] = max(Yv[p] + ar * delta[cols[p]], 0.0)
            continue
        for p in range(p0, p1):
            c = cols[p]
            inv, t = _moved(Yv, p, ar * delta[c], float(vals[p]), tiny)
            qo[c] += bw * t
            ho[c] += (bw * t) * (b * inv)


class Sparse:
    """A block of ``X`` in CSR form with the model at its nonzeros (float64)."""

    def __init__(self, X: np.ndarray) -> None:
        rows, cols = np.nonzero(X)
        self.indptr = np.zeros(X.shape[0] + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=X.shape[0]), out=self.indptr[1:])
        self.cols = cols.astype(np.int32)
        self.vals = np.ascontiguousarray(X[rows, cols])
        self.Y = np.empty(self.vals.shape[0])
        self.m = X.shape[1]

    @classmethod
    def from_csr(cls, B: Any, dtype: Any) -> Sparse:
        """From a SciPy CSR block (sorted indices): its arrays, no dense step."""
        out = cls.__new__(cls)
        out.indptr = np.asarray(B.indptr, dtype=np.int64)
        out.cols = np.asarray(B.indices, dtype=np.int32)
        out.vals = np.ascontiguousarray(B.data, dtype=dtype)
        out.Y = np.empty(out.vals.shape[0])
        out.m = int(B.shape[1])
        return out


def sparse_a_pass(B, A, S, l1, w, inner, tiny, r0, holes):
    """:func:`a_pass_sp` on one block; returns what :func:`block_a_pass` returns."""
    q0 = np.zeros(B.m)
    h0 = np.zeros(B.m)
    hsum = np.zeros((A.shape[1], B.m))
    ssum = S.sum(axis=1, dtype=np.float64)
    St = np.ascontiguousarray(S.T)
    args = (B.indptr, B.cols, B.vals, A, St, ssum, l1, w, B.Y, inner, tiny, r0, q0, h0)
    fit = a_pass_sp(*args, holes.hp, holes.hc, hsum)
    return fit, q0, h0, map_sums(A, w, hsum, holes.masked)


def sparse_s_pass(B, A, w, r_apply, delta, r1, r2, tiny):
    """:func:`s_pass_sp` on one block; returns ``(q1, h1, q2, h2)`` (float64)."""
    out = [np.zeros(B.m) for _ in range(4)]
    s_pass_sp(B.indptr, B.cols, B.vals, A, w, B.Y, r_apply, delta, r1, r2, tiny, *out)
    return out


@_jit
def fit_pass_sp(indptr, cols, vals, A, St, ssum, w, tiny, hp, hc):
    """:func:`fit_pass` for a block in CSR form: each pixel's model summed over every
    channel, less ``x log y`` at its nonzeros (``O(nnz k)``; the model at the nonzeros in
    scratch, as :func:`a_pass_sp` gathers it)."""
    n, k = A.shape
    width = _widest_row(indptr)
    G = np.empty((k, width))
    xl = np.empty(width)
    y = np.empty(width)
    fit = 0.0
    for i in range(n):
        if w[i] == 0:
            continue
        p0, p1 = indptr[i], indptr[i + 1]
        a = A[i]
        np_ = _gather(a, St, cols[p0:p1], vals[p0:p1], G, xl, y)
        missing = _model_at(a, St.T, hc[hp[i] : hp[i + 1]])
        fit += w[i] * (_row_total(a, ssum) - missing - _xlogy(xl[:np_], y[:np_], tiny))
    return fit


def sparse_fit(B, A, S, w, tiny, holes):
    """:func:`fit_pass_sp` on one block."""
    ssum = S.sum(axis=1, dtype=np.float64)
    St = np.ascontiguousarray(S.T, dtype=np.float64)
    return fit_pass_sp(B.indptr, B.cols, B.vals, A, St, ssum, w, tiny, holes.hp, holes.hc)
