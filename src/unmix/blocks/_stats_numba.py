"""The compiled statistics of one block (numba; imported only when it is used).

:func:`block_stats` counts a block of rows in one read of it: every row's sum, every
channel's sum, the number of finite, zero, negative and non-integer entries, and the
smallest and largest finite value.  The counts and extremes are kept per channel, so the
loop over a row's channels carries no dependence from one channel to the next and
vectorizes (NumPy's equivalent makes about eight passes over the block).
"""

from __future__ import annotations

import numba as _nb
import numpy as np

__all__ = ["block_stats"]


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
