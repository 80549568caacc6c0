"""The data side of the variational updates: ``X`` (pixels, channels) read at its nonzeros.

Model (Cemgil 2009): ``X_ij ~ Poisson(sum_r A_ir S_rj)`` with ``A`` (pixels, k) the maps and
``S`` (k, channels) the endmembers.  Every variational update of the Gamma factors needs,
for each nonzero ``X_ij``, the ratio::

    R_ij = X_ij / M_ij,   M_ij = sum_r LA_ir LS_rj,   LA = exp(E log A), LS = exp(E log S)

and the products ``R @ LS.T`` (pixels, k) and ``R.T @ LA`` (channels, k).  The ratio is zero
wherever ``X`` is, so on SciPy sparse ``X`` (kept as CSR, never densified) the work is
``O(nnz k)``; dense ``X`` is read in row blocks of about 8 MB so the temporaries stay
bounded.  The same pass gives ``sum_ij X_ij log M_ij``, the data part of the bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln

from ..blocks import as_csr_rows, entry_rows, is_sparse

__all__ = ["CountData", "as_count_data"]

#: bytes of one float64 row block of dense ``X`` (bounds the temporaries of a pass)
_BLOCK_BYTES = 8 << 20
#: nonzeros per chunk when ``M`` is evaluated at them (bounds the ``nnz x k`` temporaries)
_CHUNK = 1 << 16
#: floor of the model at an entry (``exp(E log .)`` can underflow for tiny prior shapes)
_TINY = 1e-300


class CountData:
    """Non-negative counts ``X`` (pixels, channels), dense (row blocks) or CSR.

    Attributes
    ----------
    n, m : int
        Pixels and channels.
    dtype : numpy dtype
        Floating dtype of the outputs (float32 for float32 input, else float64).
    total : float
        ``sum_ij X_ij``.
    log_factorials : float
        ``sum_ij log(X_ij!)`` (the Poisson normalizer, a constant of the bound).
    whole : bool
        Whether every value is a whole number (the model is for counts).
    """

    def __init__(self, X: Any, dtype: np.dtype, sparse: bool) -> None:
        self.X = X
        self.sparse = sparse
        self.n, self.m = (int(s) for s in X.shape)
        self.dtype = dtype
        rows = max(1, _BLOCK_BYTES // (8 * max(self.m, 1)))
        self.blocks = [slice(a, min(self.n, a + rows)) for a in range(0, self.n, rows)]
        if sparse:
            self.rows = entry_rows(X)
        total, logfac, whole = 0.0, 0.0, True
        for xv in self._values():
            total += float(np.sum(xv))
            logfac += float(np.sum(gammaln(xv + 1.0)))
            whole = whole and bool(np.all(xv == np.round(xv)))
        self.total = total
        self.log_factorials = logfac
        self.whole = whole

    def _values(self) -> Iterator[np.ndarray]:
        """The stored values (sparse) or row blocks (dense) as float64."""
        if self.sparse:
            yield np.asarray(self.X.data, dtype=np.float64)
            return
        for b in self.blocks:
            yield np.asarray(self.X[b], dtype=np.float64)

    def ratio_pass(self, LA: np.ndarray, LS: np.ndarray, side: str) -> tuple[np.ndarray, float]:
        """One pass over ``X``: ``R @ LS.T`` (``side='A'``) or ``(R.T @ LA).T``
        (``side='S'``), and ``sum_ij X_ij log M_ij`` (see the module)."""
        if self.sparse:
            return self._sparse_pass(LA, LS, side)
        k = LA.shape[1]
        out = np.zeros((self.n, k) if side == "A" else (k, self.m))
        xlogm = 0.0
        for b in self.blocks:
            Xb = np.asarray(self.X[b], dtype=np.float64)
            M = np.maximum(LA[b] @ LS, _TINY)
            xlogm += float(np.sum(Xb * np.log(M)))
            np.divide(Xb, M, out=M)
            if side == "A":
                out[b] = M @ LS.T
            else:
                out += LA[b].T @ M
        return out, xlogm

    def _sparse_pass(self, LA: np.ndarray, LS: np.ndarray, side: str) -> tuple[np.ndarray, float]:
        X = self.X
        LSt = np.ascontiguousarray(LS.T)
        M = np.empty(X.nnz)
        for c0 in range(0, X.nnz, _CHUNK):
            c1 = min(X.nnz, c0 + _CHUNK)
            np.einsum("ij,ij->i", LA[self.rows[c0:c1]], LSt[X.indices[c0:c1]], out=M[c0:c1])
        np.maximum(M, _TINY, out=M)
        x = np.asarray(X.data, dtype=np.float64)
        xlogm = float(np.sum(x * np.log(M)))
        R = sp.csr_array((x / M, X.indices, X.indptr), shape=X.shape, copy=False)
        if side == "A":
            return np.asarray(R @ LSt), xlogm
        return np.asarray(R.T @ LA).T, xlogm


def _check_values(values: Iterator[np.ndarray]) -> None:
    """Raise on negative or non-finite counts (counted over all blocks)."""
    n_bad, n_neg, lowest = 0, 0, 0.0
    for v in values:
        finite = np.isfinite(v)
        n_bad += int(v.size - np.count_nonzero(finite))
        neg = finite & (v < 0)
        c = int(np.count_nonzero(neg))
        if c:
            n_neg += c
            lowest = min(lowest, float(v[neg].min()))
    if n_bad:
        raise ValueError(
            f"X has {n_bad} non-finite entries (NaN or Inf); Poisson counts must be finite: "
            "drop or fill them first (e.g. np.nan_to_num(X, nan=0.0))."
        )
    if n_neg:
        raise ValueError(
            f"X has {n_neg} negative entries (lowest {lowest:g}); Poisson counts must be "
            ">= 0: clip them first, e.g. np.clip(X, 0, None) (for sparse X, "
            "X.data.clip(0, None, out=X.data))."
        )


def as_count_data(X: Any) -> CountData:
    """Check ``X`` (pixels, channels) and wrap it; sparse input becomes CSR (not densified).

    Raises ``ValueError`` for a wrong shape, negative or non-finite entries or all-zero
    data, ``TypeError`` for a non-numeric dtype.
    """
    if is_sparse(X):
        X = as_csr_rows(X)
        dtype = np.dtype(np.float32 if X.dtype == np.float32 else np.float64)
        sparse = True
        values: Any = iter([np.asarray(X.data)])
    else:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (pixels, channels); got shape {X.shape}.")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"X is empty: shape {X.shape} (pixels, channels).")
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_) or np.iscomplexobj(X):
            raise TypeError(f"X has unsupported dtype {X.dtype}; pass real counts.")
        dtype = np.dtype(np.float32 if X.dtype == np.float32 else np.float64)
        sparse = False
        rows = max(1, _BLOCK_BYTES // (8 * X.shape[1]))
        values = (
            np.asarray(X[a : a + rows], dtype=np.float64) for a in range(0, X.shape[0], rows)
        )
    _check_values(values)
    data = CountData(X, dtype, sparse)
    if data.total <= 0:
        raise ValueError("X is all zeros: there are no counts to factorize.")
    return data
