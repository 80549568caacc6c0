"""Sparse ``X`` on a compute device: a PyTorch sparse tensor, fitted where it lives.

A torch sparse tensor (CSR, CSC, COO or BSR layout, on any device) is held as one
:class:`DeviceCSR` (row pointers, column indices and values, all torch tensors on ``X``'s
device) and cut into pixel blocks by :class:`DeviceSparsePixelData`, which answers the
same product interface as :class:`~unmix.blocks.SparsePixelData` (SciPy CSR on the host)
from the nonzeros alone, on the device:

- ``X_b @ M`` with torch's CSR product; ``Aw^T X_b`` as ``(X_b^T @ Aw)^T`` with a CSR copy
  of ``X_b^T`` made once (torch multiplies CSC far more slowly: 45x on one CPU core for
  65536 x 2048 at 3 % nonzeros), its entries a fixed permutation of ``X_b``'s;
- the KL pass's model at the nonzeros and its ratio products ``R S^T``, ``R^T A`` (``R``
  with ``X_b``'s pattern), ``O(nnz_b k)`` a block.

Nothing is copied to the host but what is small (per-pixel and per-channel sums, a few
selected spectra) or asked for explicitly (:meth:`DeviceSparsePixelData.csr`, a SciPy copy
for host-only work such as building a pixel graph).  CuPy's sparse matrices are not
supported yet (refused by :func:`as_device_csr`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._backend import Backend, to_numpy
from ..executors.base import Block
from ._sparse import SparsePixelData, as_csr_rows, check_sparse_finite, is_sparse

__all__ = [
    "DeviceCSR",
    "DeviceSparsePixelData",
    "as_device_csr",
    "check_device_sparse_finite",
    "checked_sparse_rows",
    "is_device_sparse",
]

#: nonzeros per chunk when the model is evaluated at them (bounds the ``nnz x k`` temporaries)
_CHUNK = 1 << 18

#: below this many rows, columns and nonzeros the indices are held as int32 (half the memory)
_INT32_BELOW = 2**31 - 1

_TORCH_SPARSE = ("sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc")


def _torch() -> Any:
    import torch

    return torch


def is_device_sparse(X: Any) -> bool:
    """True for a sparse PyTorch tensor, a CuPy sparse matrix or a :class:`DeviceCSR`."""
    if isinstance(X, DeviceCSR):
        return True
    module = type(X).__module__
    if module.startswith("cupyx.scipy.sparse"):
        return True
    if module.split(".")[0] == "torch" and hasattr(X, "layout"):
        return str(X.layout).removeprefix("torch.") in _TORCH_SPARSE
    return False


@dataclass
class DeviceCSR:
    """Rows of a sparse matrix as CSR torch tensors on one device.

    ``indptr`` (rows + 1) and ``indices`` (nnz) are int32 (int64 from 2**31 rows, columns
    or nonzeros), ``values`` (nnz) float32 or float64; the column indices are sorted
    within each row and have no duplicates.
    """

    indptr: Any
    indices: Any
    values: Any
    shape: tuple[int, int]

    @property
    def dtype(self) -> Any:
        return self.values.dtype

    @property
    def device(self) -> Any:
        return self.values.device

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    @property
    def ndim(self) -> int:
        return 2

    def __getitem__(self, key: Any) -> DeviceCSR:
        """Rows ``X[start:stop, :]`` (sharing the indices and values); rows only."""
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        if not (isinstance(rows, slice) and rows.step in (None, 1) and cols == slice(None)):
            raise TypeError("DeviceCSR supports X[start:stop, :] (a range of rows) only.")
        start, stop, _ = rows.indices(self.shape[0])
        stop = max(stop, start)
        p0, p1 = int(self.indptr[start]), int(self.indptr[stop])
        return DeviceCSR(
            self.indptr[start : stop + 1] - p0,
            self.indices[p0:p1],
            self.values[p0:p1],
            (stop - start, self.shape[1]),
        )

    def tensor(self, values: Any = None) -> Any:
        """A torch sparse CSR tensor with this pattern (and ``values``, default its own)."""
        vals = self.values if values is None else values
        return _torch().sparse_csr_tensor(
            self.indptr, self.indices, vals, size=self.shape, check_invariants=False
        )

    def entry_rows(self) -> Any:
        """The row of each stored entry, in storage order (int64)."""
        torch = _torch()
        counts = self.indptr[1:] - self.indptr[:-1]
        rows = torch.arange(self.shape[0], dtype=self.indptr.dtype, device=self.device)
        return torch.repeat_interleave(rows, counts)

    def to(self, device: Any) -> DeviceCSR:
        """This matrix on ``device`` (a torch device or its name): a copy there."""
        dev = _torch().device(device)
        return DeviceCSR(
            self.indptr.to(dev), self.indices.to(dev), self.values.to(dev), self.shape
        )

    def to_dense(self) -> Any:
        return self.tensor().to_dense()

    def to_scipy(self) -> sp.csr_array:
        """A copy on the host as a SciPy CSR array (explicit; for host-only work)."""
        return sp.csr_array(
            (to_numpy(self.values), to_numpy(self.indices), to_numpy(self.indptr)),
            shape=self.shape,
        )

    def negative_entries(self, observed: Any = None) -> tuple[int, float, Any, Any]:
        """``(count, minimum, rows, columns)`` of the negative stored entries (those
        ``observed``, a boolean mask, marks True); rows and columns on the host."""
        neg = self.values < 0
        if not bool(neg.any()):
            return 0, 0.0, np.zeros(0, int), np.zeros(0, int)
        rows = self.entry_rows()
        if observed is not None:
            neg = neg & observed[rows, self.indices]
        n_neg = int(neg.sum())
        if n_neg == 0:
            return 0, 0.0, np.zeros(0, int), np.zeros(0, int)
        low = float(self.values[neg].min())
        return n_neg, low, to_numpy(rows[neg]), to_numpy(self.indices[neg])


def as_device_csr(X: Any, *, name: str = "X") -> DeviceCSR:
    """A sparse torch tensor ``X`` (pixels, channels) as :class:`DeviceCSR` on its device.

    Duplicates are summed and the column indices sorted; integer and boolean counts
    become float32 (exact up to 2**24), float16/bfloat16 float32; float32 and float64
    keep their dtype.
    """
    if isinstance(X, DeviceCSR):
        return X
    if type(X).__module__.startswith("cupyx"):
        raise TypeError(
            f"{name} is a CuPy sparse matrix ({type(X).__name__}): not supported yet. Pass a "
            f"torch sparse tensor (torch.sparse_csr_tensor on the GPU), {name}.get() (SciPy "
            f"CSR, fitted on the host), or a dense CuPy array ({name}.toarray())."
        )
    torch = _torch()
    if X.dim() != 2:
        raise ValueError(f"{name} must be 2-D (pixels, channels); got shape {tuple(X.shape)}.")
    n, m = (int(s) for s in X.shape)
    if n == 0 or m == 0:
        raise ValueError(f"{name} is empty: shape {(n, m)} (pixels, channels).")
    if X.is_complex():
        raise TypeError(f"{name} has unsupported dtype {X.dtype}; pass real numbers.")
    if X.dtype not in (torch.float32, torch.float64):
        X = X.to(torch.float32)
    nnz = int(X._nnz())
    index = torch.int32 if max(n, m, nnz) < _INT32_BELOW else torch.int64
    if X.layout == torch.sparse_csr and _sorted_unique(X.crow_indices(), X.col_indices()):
        indptr, cols, values = X.crow_indices(), X.col_indices(), X.values()  # as they are
    else:
        coo = _coalesced_coo(X, n, m)  # duplicates summed, sorted by (row, column)
        rows, cols = coo.indices()
        values = coo.values()
        indptr = torch.zeros(n + 1, dtype=torch.int64, device=values.device)
        indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
        del coo, rows
    return DeviceCSR(indptr.to(index), cols.to(index), values.contiguous(), (n, m))


def _coalesced_coo(X: Any, n: int, m: int) -> Any:
    """``X`` as a coalesced COO tensor.  A CSR tensor is rebuilt from its pattern: its
    conversion to COO is marked coalesced even when a row repeats a column."""
    torch = _torch()
    if X.layout != torch.sparse_csr:
        return X.to_sparse_coo().coalesce()
    crow = X.crow_indices()
    rows = torch.repeat_interleave(torch.arange(n, device=crow.device), crow[1:] - crow[:-1])
    index = torch.stack([rows, X.col_indices().to(rows.dtype)])
    return torch.sparse_coo_tensor(index, X.values(), (n, m)).coalesce()


def _sorted_unique(indptr: Any, cols: Any) -> bool:
    """True when the column indices rise strictly within every row of a CSR pattern."""
    torch = _torch()
    if cols.shape[0] < 2:
        return True
    rising = cols[1:] > cols[:-1]
    starts = torch.zeros(cols.shape[0] - 1, dtype=torch.bool, device=cols.device)
    first = indptr[1:-1]  # where a row begins (the pair across it may fall)
    first = first[(first > 0) & (first < cols.shape[0])]
    starts[first - 1] = True
    return bool((rising | starts).all())


def check_device_sparse_finite(X: DeviceCSR, mask: Any = None) -> None:
    """Raise for stored NaN/Inf entries of ``X`` that ``mask`` does not mark missing."""
    torch = _torch()
    bad = ~torch.isfinite(X.values)
    if not bool(bad.any()):
        return
    if mask is not None:
        bad = bad & mask[X.entry_rows(), X.indices]
        if not bool(bad.any()):
            return
    raise ValueError(
        f"X has {int(bad.sum())} stored NaN or Inf entries; drop them from the sparse tensor "
        "(keep the entries where torch.isfinite(X.values())) or mark them missing with mask=."
    )


def checked_sparse_rows(X: Any) -> Any:
    """Sparse ``X`` (pixels, channels) as CSR rows with finite stored entries: SciPy CSR
    for a SciPy / pydata matrix, :class:`DeviceCSR` for a torch tensor; None when ``X``
    is not sparse.  (With a mask, check the entries after the mask's shape.)"""
    if is_sparse(X):
        X = as_csr_rows(X)
        check_sparse_finite(X)
        return X
    if is_device_sparse(X):
        X = as_device_csr(X)
        check_device_sparse_finite(X)
        return X
    return None


class _Part:
    """One block of rows: its CSR, the CSR of its transpose and the map between them."""

    def __init__(self, X: DeviceCSR) -> None:
        torch = _torch()
        self.X = X
        self.rows = X.entry_rows()
        self.cols = X.indices
        nb, m = X.shape
        # X_b^T as CSR: entries ordered by (column, row); perm[t] is X_b's entry there
        key = self.cols.to(torch.int64) * max(nb, 1) + self.rows.to(torch.int64)
        self.perm = torch.argsort(key, stable=True).to(self.cols.dtype)
        del key
        t_indptr = torch.zeros(m + 1, dtype=self.cols.dtype, device=X.device)
        t_indptr[1:] = torch.cumsum(torch.bincount(self.cols, minlength=m), 0)
        self.XT = DeviceCSR(t_indptr, self.rows[self.perm], X.values[self.perm], (m, nb))
        self._cast: dict[Any, tuple[Any, Any]] = {}

    def tensors(self, dtype: Any) -> tuple[Any, Any]:
        """The block and its transpose as torch CSR tensors in ``dtype``."""
        if dtype not in self._cast:
            v, vt = self.X.values, self.XT.values
            if v.dtype != dtype:
                v, vt = v.to(dtype), vt.to(dtype)
            self._cast[dtype] = (self.X.tensor(v), self.XT.tensor(vt))
        return self._cast[dtype]

    def times(self, M: Any, values: Any = None) -> Any:
        """``X_b @ M`` (or the pattern of ``X_b`` carrying ``values``, times ``M``)."""
        if values is None:
            return self.tensors(M.dtype)[0] @ M
        return self.X.tensor(values.to(M.dtype)) @ M

    def t_times(self, M: Any, values: Any = None) -> Any:
        """``X_b^T @ M`` (or with ``values`` in ``X_b``'s entry order)."""
        if values is None:
            return self.tensors(M.dtype)[1] @ M
        return self.XT.tensor(values[self.perm].to(M.dtype)) @ M


class DeviceSparsePixelData(SparsePixelData):
    """:class:`DeviceCSR` ``X`` (pixels, channels) in pixel blocks, on its own device.

    The product interface of :class:`~unmix.blocks.PixelData` and the KL pass's
    interface of :class:`~unmix.blocks.SparsePixelData`, from the nonzeros, with torch
    operations; :meth:`x` gives one block as a dense tensor for the work that needs it.
    """

    def __init__(self, X: DeviceCSR, be: Backend, **kwargs: Any) -> None:
        super(SparsePixelData, self).__init__(X, be, **kwargs)
        self.parts = [_Part(X[b.start : b.stop, :]) for b in self.blocks]

    @property
    def nnz(self) -> int:
        return int(self.X.nnz)

    def _part(self, block: Block) -> _Part:
        return self.parts[block.index]

    def _block_sums(self, block: Block) -> tuple[np.ndarray, np.ndarray, float]:
        torch = _torch()
        part = self._part(block)
        v = part.X.values.to(self.be.acc_dtype)
        nb, m = part.X.shape
        rows = torch.zeros(nb, dtype=v.dtype, device=v.device).index_add_(0, part.rows, v)
        cols = torch.zeros(m, dtype=v.dtype, device=v.device).index_add_(0, part.cols, v)
        return to_numpy(rows), to_numpy(cols), float(torch.count_nonzero(v))

    def csr(self, block: Block) -> sp.csr_array:
        """The block's rows as SciPy CSR on the host: a copy, for host-only work."""
        return self._part(block).X.to_scipy()

    def raw(self, block: Block) -> Any:
        return self._part(block).X.to_dense()

    def x(self, block: Block) -> Any:
        """``X_b`` as a dense tensor (one block at a time); missing entries read as 0."""
        Xb = self.raw(block)
        if self.mask is not None:
            Xb = self.be.xp.where(self.mask[block.slice, :], Xb, 0.0)
        return Xb

    def x_times(self, block: Block, M: Any) -> Any:
        if self.mask is not None:
            return self.x(block) @ M
        return self._part(block).times(M)

    def t_times(self, block: Block, Aw: Any) -> Any:
        if self.mask is not None:
            return Aw.T @ self.x(block)
        return self._part(block).t_times(Aw).T

    def mean(self) -> float:
        if self.mask is not None:
            return super(SparsePixelData, self).mean()
        total = float(self.X.values.sum(dtype=self.be.acc_dtype))
        count = float(self.n_pixels * self.n_channels)
        total, count = self.reduce(np.array([total, count]))
        return float(total) / max(float(count), 1.0)

    def rows(self, index: Any) -> Any:
        """Selected pixels' spectra as a dense tensor (len(index), channels)."""
        torch = _torch()
        X, dev = self.X, self.X.device
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64), device=dev)
        starts, stops = X.indptr[idx], X.indptr[idx + 1]
        lengths = stops - starts
        out = torch.zeros((int(idx.shape[0]), self.n_channels), dtype=X.dtype, device=dev)
        total = int(lengths.sum())
        if total:
            which = torch.repeat_interleave(torch.arange(int(idx.shape[0]), device=dev), lengths)
            first = torch.cumsum(lengths, 0) - lengths
            pos = starts[which] + torch.arange(total, device=dev) - first[which]
            out[which, X.indices[pos]] = X.values[pos]
        return out

    def entry_index(self, block: Block) -> tuple[Any, Any]:
        part = self._part(block)
        return part.rows, part.cols

    def values(self, block: Block) -> Any:
        """The block's stored values in CSR order (accumulation dtype)."""
        return self.be.acc(self._part(block).X.values)

    def model_at_nonzeros(self, block: Block, Ab: Any, S: Any) -> Any:
        """``(A_b S)_ij`` at the block's stored entries, in their CSR order (accumulation
        dtype, on the device)."""
        be, part = self.be, self._part(block)
        St, A64 = be.acc(S).T, be.acc(Ab)
        nnz = int(part.rows.shape[0])
        out = be.xp.empty((nnz,), dtype=be.acc_dtype, device=be.device)
        for c0 in range(0, nnz, _CHUNK):
            c1 = min(nnz, c0 + _CHUNK)
            out[c0:c1] = (A64[part.rows[c0:c1]] * St[part.cols[c0:c1]]).sum(1)
        return out

    def values_times(self, block: Block, values: Any, M: Any) -> Any:
        """``R_b @ M``, ``R_b`` the block's pattern carrying ``values`` (CSR order)."""
        return self._part(block).times(M, values)

    def values_t_times(self, block: Block, values: Any, M: Any) -> Any:
        """``R_b^T @ M``, ``R_b`` the block's pattern carrying ``values`` (CSR order)."""
        return self._part(block).t_times(M, values)
