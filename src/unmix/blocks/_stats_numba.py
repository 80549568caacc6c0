"""The compiled one-read kernels of a block of rows (numba; imported only when used).

:func:`row_products` takes the products a residual or mapping pass needs of a block
(squared norms, sums, and the products with a few endmembers) in one read of it, in
float64 without a float64 copy of the block.  :func:`block_stats` counts a block of rows
in one read of it: every row's sum, every channel's sum, the number of finite, zero,
negative and non-integer entries, and the smallest and largest finite value.  The counts
and extremes are kept per channel, so the loop over a row's channels carries no
dependence from one channel to the next and vectorizes (NumPy's equivalent makes about
eight passes over the block).
"""

from __future__ import annotations

import numba as _nb
import numpy as np

__all__ = ["block_stats", "row_products"]


@_nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def block_stats(X, rows, cols, lo, hi, counts):  # pragma: no cover - compiled
    """Count the block ``X`` (rows, channels); NaN and Inf count as 0 in the sums.

    ``rows`` (rows,), zero on entry, receives each row's sum and ``cols`` (channels,)
    has each channel's sum added, in their own dtype; ``lo`` and ``hi`` (channels,),
    filled beforehand with the largest and smallest value of their dtype, end as each
    channel's smallest and largest finite entry; ``counts`` (int64, 4) receives the
    numbers of finite, zero, negative and non-integer entries.
    """
    n, m = X.shape
    z = X.dtype.type(0)
    n_fin = np.zeros(m, np.int64)
    n_zero = np.zeros(m, np.int64)
    n_neg = np.zeros(m, np.int64)
    n_frac = np.zeros(m, np.int64)
    for i in range(n):
        x = X[i]
        s = rows[i]  # zero on entry
        for j in range(m):
            v = x[j]
            fin = (v - v) == z
            c = v if fin else z
            s += c
            cols[j] += c
            n_fin[j] += fin
            n_zero[j] += v == z
            n_neg[j] += c < z
            n_frac[j] += c != np.floor(c)
            lo[j] = c if (fin and c < lo[j]) else lo[j]
            hi[j] = c if (fin and c > hi[j]) else hi[j]
        rows[i] = s
    counts[0] = n_fin.sum()
    counts[1] = n_zero.sum()
    counts[2] = n_neg.sum()
    counts[3] = n_frac.sum()


@_nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def row_products(X, W, x2, rows, cols, XW):  # pragma: no cover - compiled
    """One read of the block ``X`` (rows, channels) for the products a pass needs.

    In float64 whatever ``X``'s dtype: ``x2[i] = ||x_i||^2``, ``rows[i] = sum_j x_ij``,
    ``cols[j] += sum_i x_ij`` and ``XW[i, r] = x_i . W[r]`` for the float64 rows of ``W``
    (k, channels).  Each row of ``X`` is read from memory once and re-read from L1 for
    every row of ``W``.
    """
    n, m = X.shape
    k = W.shape[0]
    for i in range(n):
        x = X[i]
        s2 = 0.0
        s1 = 0.0
        for j in range(m):
            v = np.float64(x[j])
            s2 += v * v
            s1 += v
            cols[j] += v
        x2[i] = s2
        rows[i] = s1
        for r in range(k):
            w = W[r]
            d = 0.0
            for j in range(m):
                d += np.float64(x[j]) * w[j]
            XW[i, r] = d
