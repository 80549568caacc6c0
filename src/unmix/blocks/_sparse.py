"""Sparse ``X`` (scipy.sparse, pydata/sparse) in CSR row blocks, never densified whole.

Count data at low dose are mostly zeros (a TEM EDS map at ~6 counts per pixel over 2,048
channels is > 99 % zeros).  :func:`as_csr_rows` turns any SciPy sparse matrix or array
(CSR, CSC, COO, ...) or a pydata/sparse array into one CSR array of a floating dtype;
:class:`SparsePixelData` cuts it into pixel blocks that are CSR *views* of it (no copy of
the nonzeros) and answers the product interface of :class:`~unmix.blocks.PixelData` from
the nonzeros alone:

- ``X_b @ M`` and ``Aw^T @ X_b`` cost ``O(nnz_b k)``;
- ``sum W X^2`` and the mean read the stored values only;
- :meth:`SparsePixelData.model_at_nonzeros` gives ``(A_b S)_ij`` at the block's nonzeros
  (``O(nnz_b k)``), all the KL divergence needs besides ``sum_ij (A S)_ij = 1^T A S 1``.

What is not written for the nonzeros (elementwise weights or a mask, losses other than
Frobenius and KL, a non-identity link) reads one block at a time as a dense array
(:meth:`SparsePixelData.x`): memory stays bounded by one block, time is that of dense data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from .._backend import Backend
from ..executors.base import Block
from ._pixels import PixelData

__all__ = [
    "SparsePixelData",
    "as_csr_rows",
    "check_sparse_finite",
    "entry_rows",
    "is_sparse",
    "with_data",
]

#: nonzeros per chunk when the model is evaluated at them (bounds the ``nnz x k`` temporaries)
_CHUNK = 1 << 17


def is_sparse(X: Any) -> bool:
    """True for a SciPy sparse matrix/array or a pydata/sparse array."""
    if sp.issparse(X):
        return True
    return type(X).__module__.split(".")[0] == "sparse" and hasattr(X, "to_scipy_sparse")


def as_csr_rows(X: Any, *, name: str = "X") -> sp.csr_array:
    """``X`` (pixels, channels) as a CSR array of float32/float64 with sorted indices.

    Integer and boolean counts become float32 (exact up to 2**24), float16 float32;
    float32 and float64 CSR input is used as given (no copy).  Explicit NaN/Inf and
    duplicate entries are reported/summed like SciPy does.
    """
    if not sp.issparse(X):
        if getattr(X, "ndim", 2) != 2:
            raise ValueError(
                f"{name} is a {X.ndim}-D sparse array; it must be 2-D (pixels, channels): "
                f"reshape it first ({name}.reshape((-1, n_channels)))."
            )
        X = X.to_scipy_sparse()  # pydata/sparse: COO or GCXS
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (pixels, channels); got shape {tuple(X.shape)}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(X.shape)} (pixels, channels).")
    X = sp.csr_array(X)
    dtype = X.dtype
    if dtype not in (np.float32, np.float64):
        if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.iscomplexobj(X.data):
            raise TypeError(f"{name} has unsupported dtype {dtype}; pass real numbers.")
        X = X.astype(np.float32)
    X.sum_duplicates()  # also sorts the indices
    return X


def check_sparse_finite(X: Any, mask: Any = None) -> None:
    """Raise for stored NaN/Inf entries of sparse ``X`` that ``mask`` does not mark missing."""
    bad = ~np.isfinite(X.data)
    if not bad.any():
        return
    if mask is not None:
        coo = X.tocoo()
        bad = ~np.isfinite(coo.data) & np.asarray(mask)[coo.row, coo.col]
        if not bad.any():
            return
    raise ValueError(
        f"X has {int(np.count_nonzero(bad))} stored NaN or Inf entries; drop them from the "
        "sparse matrix (X.data[~np.isfinite(X.data)] = 0; X.eliminate_zeros()) or mark them "
        "missing with mask=."
    )


def entry_rows(B: Any) -> np.ndarray:
    """The row of each stored entry of CSR ``B``, in storage order."""
    return np.repeat(np.arange(B.shape[0]), np.diff(B.indptr))


def with_data(X: sp.csr_array, data: Any) -> sp.csr_array:
    """CSR ``X``'s pattern carrying ``data`` (its stored values replaced, CSR order)."""
    return sp.csr_array((data, X.indices, X.indptr), shape=X.shape, copy=False)


def _block_view(X: sp.csr_array, start: int, stop: int) -> sp.csr_array:
    """Rows ``start:stop`` of CSR ``X`` sharing its values and column indices."""
    p0, p1 = int(X.indptr[start]), int(X.indptr[stop])
    indptr = X.indptr[start : stop + 1] - p0
    return sp.csr_array(
        (X.data[p0:p1], X.indices[p0:p1], indptr), shape=(stop - start, X.shape[1]), copy=False
    )


class SparsePixelData(PixelData):
    """CSR ``X`` (pixels, channels) with its weights and mask, cut into pixel blocks.

    The product interface (``x_times``, ``t_times``, ``sq_norm``, ``mean``) touches the
    nonzeros only; :meth:`x` gives a block as a dense array for the work that needs one.
    """

    sparse = True

    def __init__(self, X: sp.csr_array, be: Backend, **kwargs: Any) -> None:
        super().__init__(X, be, **kwargs)
        self.csr_blocks = [_block_view(X, b.start, b.stop) for b in self.blocks]

    @property
    def nnz(self) -> int:
        return int(self.X.nnz)

    def _block_sums(self, block: Block) -> tuple[np.ndarray, np.ndarray, float]:
        B = self.csr(block)  # the stored entries only
        rows = np.asarray(B.sum(axis=1), dtype=np.float64).reshape(-1)
        cols = np.asarray(B.sum(axis=0), dtype=np.float64).reshape(-1)
        return rows, cols, float(np.count_nonzero(B.data))

    def csr(self, block: Block) -> sp.csr_array:
        """The block's rows of ``X`` as CSR (a view; mask not applied)."""
        return self.csr_blocks[block.index]

    def raw(self, block: Block) -> Any:
        return self.csr(block).toarray()

    def x(self, block: Block) -> Any:
        """``X_b`` as a dense array (one block at a time); missing entries read as 0."""
        Xb = self.csr(block).toarray()
        if self.mask is not None:
            Xb = np.where(self.mask[block.slice, :], Xb, 0.0)
        return Xb

    def x_times(self, block: Block, M: Any) -> Any:
        if self.mask is not None:
            return self.x(block) @ M
        return np.asarray(self.csr(block) @ M)

    def t_times(self, block: Block, Aw: Any) -> Any:
        if self.mask is not None:
            return Aw.T @ self.x(block)
        return np.asarray(self.csr(block).T @ Aw).T

    def mean(self) -> float:
        if self.mask is not None:
            return super().mean()
        total = float(np.sum(self.X.data, dtype=np.float64))
        count = float(self.n_pixels * self.n_channels)
        total, count = self.reduce(np.array([total, count]))
        return float(total) / max(float(count), 1.0)

    def rows(self, index: Any) -> Any:
        return self.X[np.asarray(index, dtype=np.int64), :].toarray()

    def svd(self, k: int, rng: Any, n_iter: int = 2, *, exact: bool = False) -> tuple:
        """Leading singular triplets through the sparse products (never densified)."""
        from .._linalg import svd_blocks
        from ._pixels import MeanFilled

        view = self if self.mask is None else MeanFilled(self, self.mean())
        return svd_blocks(view, k, self.be, rng=rng, n_iter=n_iter, executor=self.executor)

    def entry_index(self, block: Block) -> tuple[Any, Any]:
        """The row (within the block) and column of each stored entry, in CSR order."""
        B = self.csr(block)
        return entry_rows(B), B.indices

    def entry_weights(self, block: Block) -> Any:
        """Weights of the block's stored entries (None when unweighted), accumulation
        dtype; only for separable weights (``elementwise`` False)."""
        if self.pixel_w is None and self.channel_w is None:
            return None
        be = self.be
        rows, cols = self.entry_index(block)
        w = None
        if self.pixel_w is not None:
            w = be.acc(self.pixel_w[block.slice, 0])[rows]
        if self.channel_w is not None:
            cw = be.acc(self.channel_w[0])[cols]
            w = cw if w is None else w * cw
        return w

    def sq_norm(self, block: Block) -> Any:
        if self.elementwise:
            return super().sq_norm(block)
        v = self.values(block)
        w = self.entry_weights(block)
        return self.be.xp.sum(v * v if w is None else w * v * v)

    def model_at_nonzeros(self, block: Block, Ab: Any, S: Any) -> np.ndarray:
        """``(A_b S)_ij`` at the block's stored entries, in their CSR order (float64)."""
        B = self.csr(block)
        rows = entry_rows(B)
        St = np.ascontiguousarray(np.asarray(S, dtype=np.float64).T)
        A64 = np.asarray(Ab, dtype=np.float64)
        out = np.empty(B.nnz)
        for c0 in range(0, B.nnz, _CHUNK):
            c1 = min(B.nnz, c0 + _CHUNK)
            np.einsum("ij,ij->i", A64[rows[c0:c1]], St[B.indices[c0:c1]], out=out[c0:c1])
        return out

    def with_values(self, block: Block, values: np.ndarray) -> sp.csr_array:
        """The block's sparsity pattern carrying ``values`` (CSR order)."""
        B = self.csr(block)
        return sp.csr_array((values, B.indices, B.indptr), shape=B.shape, copy=False)

    def values(self, block: Block) -> np.ndarray:
        """The block's stored values in CSR order (float64)."""
        return np.asarray(self.csr(block).data, dtype=np.float64)

    def values_times(self, block: Block, values: np.ndarray, M: Any) -> np.ndarray:
        """``R_b @ M``, ``R_b`` the block's pattern carrying ``values`` (CSR order)."""
        return np.asarray(self.with_values(block, values) @ M)

    def values_t_times(self, block: Block, values: np.ndarray, M: Any) -> np.ndarray:
        """``R_b^T @ M``, ``R_b`` the block's pattern carrying ``values`` (CSR order)."""
        return np.asarray(self.with_values(block, values).T @ M)

    def kl_value(self, block: Block, Ab: Any, S: Any, tiny: float) -> float:
        """``sum W (X log(X/Y) - X + Y)`` over the block, from its nonzeros and the
        column sums (separable weights only)."""
        y = self.be.xp.clip(self.model_at_nonzeros(block, Ab, S), min=tiny)
        return self.kl_at_nonzeros(block, y) + self.model_total(block, Ab, S)

    def kl_at_nonzeros(self, block: Block, y: Any) -> float:
        """``sum W (X log(X / Y) - X)`` over the block's stored entries, ``y`` the model
        there (CSR order, floored)."""
        xp = self.be.xp
        x = self.values(block)
        pos = x > 0
        terms = xp.where(pos, x * xp.log(xp.where(pos, x, 1.0) / y), 0.0) - x
        w = self.entry_weights(block)
        return float(xp.sum(terms if w is None else w * terms))

    def model_total(self, block: Block, Ab: Any, S: Any) -> float:
        """``sum W (A_b S)`` over every entry of the block (separable weights)."""
        be, xp = self.be, self.be.xp
        a = be.acc(Ab)
        if self.pixel_w is not None:
            a = a * be.acc(self.pixel_w[block.slice, :])
        s = be.acc(S)
        if self.channel_w is not None:
            s = s * be.acc(self.channel_w)
        return float(xp.sum(a, axis=0) @ xp.sum(s, axis=1))
