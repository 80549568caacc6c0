"""Sparse ``X`` in the hierarchy: the operations of the trees on CSR rows, never densified.

``X`` is (pixels, channels).  A SciPy sparse matrix or array (CSR, CSC, COO, ...) or a
pydata/sparse array is taken as one CSR array of a floating dtype
(:func:`unmix.blocks.as_csr_rows`), checked from its stored entries.  Everything a tree
does with ``X`` is then written for CSR rows:

- row subsets (a node's pixels) are CSR row indexing, ``X @ M`` and ``M^T X`` are
  sparse-dense products (dense (pixels, k) and (k, channels) results);
- squared pixel norms, means of pixels and row scaling read the stored values;
- ``||X - A S||_F^2`` comes from the Gram identity
  ``||X||^2 - 2 <A, X S^T> + <A^T A, S S^T>`` (float64);
- a loss of the splits' model (:mod:`~unmix.hierarchy._terms`) is evaluated at the
  stored entries for Frobenius and KL, and one bounded block of rows at a time otherwise.

Every helper takes dense ``X`` too and then runs the expression of the dense code as it
was, so that dense results do not change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .._backend import Backend, backend_of
from .._validation import check_nonnegative
from ..blocks import as_csr_rows, check_sparse_finite, entry_rows, is_sparse, with_data

__all__ = [
    "backend",
    "checked_sparse",
    "col_mean",
    "dense_rows",
    "is_sparse",
    "loss_value",
    "row_sq",
    "sq_error",
    "take_rows",
    "tmatmul",
    "unit_rows",
    "with_data",
]

#: entries of a dense block of rows evaluated at once (losses without a sparse formula)
_BLOCK = 1 << 20


def backend(X: Any) -> Backend:
    """The backend of ``X``: its own, or NumPy in ``X``'s dtype for sparse ``X``."""
    if is_sparse(X):
        return backend_of(np.empty(0, dtype=X.dtype))
    return backend_of(X)


def checked_sparse(X: Any, why: str) -> sp.csr_array:
    """Sparse ``X`` as CSR rows of a floating dtype, finite and non-negative (or raise)."""
    X = as_csr_rows(X)
    check_sparse_finite(X)
    check_nonnegative(X, why=why)
    return X


def _csr(X: Any) -> sp.csr_array:
    return X if X.format == "csr" else sp.csr_array(X)


def row_sq(X: Any) -> Any:
    """Squared norm of every row: (n,), float64 for sparse ``X`` (CSR, or CSC as ``X.T``
    of CSR rows), ``X``'s dtype for dense ``X``."""
    if not is_sparse(X):
        return backend_of(X).xp.sum(X * X, axis=1)
    d = np.asarray(X.data, dtype=np.float64)
    if X.format == "csc":  # the columns of a CSR X (X.T): squares summed by index
        return np.bincount(X.indices, weights=d * d, minlength=int(X.shape[0]))
    X = _csr(X)
    return np.bincount(entry_rows(X), weights=d * d, minlength=int(X.shape[0]))


def unit_rows(X: Any, be: Backend) -> Any:
    """Every row divided by its Euclidean norm (zero rows kept)."""
    xp = be.xp
    if not is_sparse(X):
        return X / xp.clip(xp.linalg.vector_norm(X, axis=1, keepdims=True), min=be.tiny)
    norms = np.maximum(np.sqrt(row_sq(X)), be.tiny).astype(X.dtype)
    return with_data(X, X.data / norms[entry_rows(X)])


def take_rows(X: Any, idx: Any, be: Backend) -> Any:
    """Rows ``idx`` of ``X`` (a CSR copy of the selected rows for sparse ``X``)."""
    if is_sparse(X):
        return X[np.asarray(idx, dtype=np.int64)]
    return be.xp.take(X, be.xp.asarray(idx, device=be.device), axis=0)


def dense_rows(X: sp.csr_array, idx: Any) -> np.ndarray:
    """A few rows ``idx`` of CSR ``X`` as a dense array (k, channels), from their entries."""
    sub = X[np.asarray(idx, dtype=np.int64).reshape(-1)]
    out = np.zeros(sub.shape, dtype=X.dtype)
    out[entry_rows(sub), sub.indices] = sub.data
    return out


def col_mean(X: Any, be: Backend, idx: Any = None) -> Any:
    """The mean spectrum (channels,) of the rows ``idx`` of ``X`` (all rows by default)."""
    xp = be.xp
    if not is_sparse(X):
        Xi = X if idx is None else xp.take(X, xp.asarray(idx, device=be.device), axis=0)
        return xp.mean(Xi, axis=0)
    Xi = X if idx is None else take_rows(X, idx, be)
    Xi = _csr(Xi)
    sums = np.bincount(
        Xi.indices, weights=np.asarray(Xi.data, np.float64), minlength=int(Xi.shape[1])
    )
    return (sums / max(int(Xi.shape[0]), 1)).astype(X.dtype)


def tmatmul(M: Any, X: Any) -> Any:
    """``M.T @ X`` (k, channels) for ``M`` (pixels, k); dense even for sparse ``X``."""
    if is_sparse(X):
        return np.asarray(X.T @ M).T
    return M.T @ X


def sq_error(X: Any, A: Any, S: Any, be: Backend) -> float:
    """``||X - A S||_F^2``: directly for dense ``X``, by the Gram identity (float64) for
    sparse ``X``."""
    xp = be.xp
    if not is_sparse(X):
        R = X - A @ S
        return float(xp.sum(R * R))
    A64 = np.asarray(A, dtype=np.float64)
    S64 = np.asarray(S, dtype=np.float64)
    cross = float(np.sum(A64 * np.asarray(X @ S64.T)))
    quad = float(np.sum((A64.T @ A64) * (S64 @ S64.T)))
    return max(float(np.sum(row_sq(X))) - 2.0 * cross + quad, 0.0)


def _model_at_entries(X: sp.csr_array, A: np.ndarray, S: np.ndarray) -> np.ndarray:
    """``(A S)_ij`` at the stored entries of CSR ``X`` (CSR order, float64)."""
    rows, cols = entry_rows(X), X.indices
    out = np.empty(X.nnz)
    St = np.ascontiguousarray(S.T)
    step = 1 << 17
    for c0 in range(0, X.nnz, step):
        c1 = min(X.nnz, c0 + step)
        np.einsum("ij,ij->i", A[rows[c0:c1]], St[cols[c0:c1]], out=out[c0:c1])
    return out


def loss_value(loss: Any, X: sp.csr_array, A: Any, S: Any, be: Backend) -> float:
    """``loss.value(X, A @ S)`` for sparse ``X`` (pixels, channels) and a model of rank
    ``k`` (``A`` (pixels, k), ``S`` (k, channels)), without ``X`` or ``A @ S`` dense.

    Frobenius from the Gram identity, KL (non-negative factors) from the stored entries
    and ``sum(A S) = 1^T A S 1``; any other loss one block of rows at a time.
    """
    A64 = np.asarray(A, dtype=np.float64)
    S64 = np.asarray(S, dtype=np.float64)
    if loss.beta == 2 and not loss.reweights_pixels:
        return 0.5 * sq_error(X, A64, S64, be)
    if loss.beta == 1 and not loss.reweights_pixels and A64.min() >= 0 and S64.min() >= 0:
        x = np.asarray(X.data, dtype=np.float64)
        y = np.maximum(_model_at_entries(X, A64, S64), be.tiny)
        pos = x > 0
        at = np.where(pos, x * np.log(np.where(pos, x, 1.0) / y), 0.0) - x
        return float(np.sum(at)) + float(A64.sum(axis=0) @ S64.sum(axis=1))
    n, m = (int(s) for s in X.shape)
    rows = max(1, _BLOCK // max(m, 1))
    total = 0.0
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        Xb = dense_rows(X, np.arange(r0, r1)).astype(np.float64)
        total += float(loss.value(Xb, A64[r0:r1] @ S64, xp=np, tiny=be.tiny))
    return total
