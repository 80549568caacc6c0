"""Statistics of ``X`` (pixels, channels) in one pass of row blocks (bounded memory)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .._backend import to_numpy
from ._scanrows import block_ranges
from ._streamed import read_ahead

__all__ = ["BlockProducts", "DataStats", "block_products", "compiled_for", "data_stats"]

_HAVE_NUMBA = importlib.util.find_spec("numba") is not None
#: entries of ``X`` from which the compiled kernel counts the blocks (below it, numba's
#: import and the kernel's cache load, about 0.5 s, outweigh the gain)
COMPILED_FROM = 1 << 24


@dataclass
class DataStats:
    """What ``unmix inspect`` reports, and the report's sum image and mean spectrum.

    Attributes
    ----------
    n_values, n_nonfinite, n_negative, n_zero : int
        All entries; NaN or Inf entries; finite entries below zero; entries equal to zero.
    min, max, mean : float
        Of the finite entries (NaN when there are none).
    counts : bool
        Every finite entry a non-negative integer and not all zero: the rule of
        :func:`unmix.preprocessing.is_counts`.
    pixel_sums : ndarray (pixels,)
        Sum of each pixel's finite entries (the sum image, unfolded).
    channel_sums : ndarray (channels,)
        Sum of each channel's finite entries over the pixels.
    """

    n_values: int
    n_nonfinite: int
    n_negative: int
    n_zero: int
    min: float
    max: float
    mean: float
    counts: bool
    pixel_sums: np.ndarray
    channel_sums: np.ndarray

    @property
    def mean_spectrum(self) -> np.ndarray:
        """The mean spectrum (or pattern, unfolded): ``channel_sums / pixels``."""
        return self.channel_sums / max(1, self.pixel_sums.size)


def data_stats(
    X: Any,
    *,
    block_bytes: int = 32 << 20,
    progress: Callable[[int], None] | None = None,
    compiled: bool | None = None,
) -> DataStats:
    """:class:`DataStats` of ``X`` (pixels, channels), read once, a block of rows at a time.

    Parameters
    ----------
    X : array (pixels, channels)
        In memory, or file-backed (h5py, Zarr, :class:`ScanRows`, memory map): only
        blocks of about ``block_bytes`` (whole scan lines) are held, in their own dtype;
        the next block is read ahead while this one is counted (as :class:`StreamedData`
        reads).  A float block's row and column sums are taken in its dtype (float32
        data: relative error about 1e-7), accumulated in float64 across blocks;
        integers are summed in float64.
    block_bytes : int, keyword-only
        Bytes of one block as stored.
    progress : callable, keyword-only
        Called with the number of rows of each block once it is counted.
    compiled : bool or None, keyword-only
        Count each block in one read with a compiled kernel (numba) rather than a few
        NumPy passes and BLAS products; None: from :data:`COMPILED_FROM` entries when
        numba is installed (about 3.5x faster on float32 blocks).

    Returns
    -------
    DataStats
    """
    n, m = int(X.shape[0]), int(X.shape[1])
    if compiled is None:
        compiled = n * m >= COMPILED_FROM and _HAVE_NUMBA
    acc = _Acc(n, m, compiled=bool(compiled))
    ranges = block_ranges(X, block_bytes=block_bytes)
    for a, b, Xb in read_ahead(X, ranges, lambda a, b: np.asarray(to_numpy(X[a:b]))):
        acc.add(a, b, Xb)
        if progress is not None:
            progress(b - a)
    return acc.result()


def compiled_for(X: Any) -> bool:
    """Whether a pass over ``X`` (pixels, channels) takes the compiled block kernels:
    numba installed and at least :data:`COMPILED_FROM` entries."""
    return _HAVE_NUMBA and int(X.shape[0]) * int(X.shape[1]) >= COMPILED_FROM


class BlockProducts(NamedTuple):
    """Of a block of rows ``X_b`` and endmembers ``W`` (k, channels), in float64:
    ``x2`` (rows,) squared norms, ``rows`` (rows,) sums, ``cols`` (channels,) sums and
    ``XW`` (rows, k) = ``X_b W^T``."""

    x2: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    XW: np.ndarray


def block_products(Xb: np.ndarray, W: np.ndarray, *, compiled: bool) -> BlockProducts:
    """:class:`BlockProducts` of the block ``Xb`` (rows, channels) of any real dtype.

    ``compiled``: in one read of ``Xb`` in its own dtype (:mod:`._stats_numba`); else
    from a float64 copy with NumPy and BLAS.  The same numbers to rounding.
    """
    W = np.ascontiguousarray(W, dtype=np.float64)
    n, m = Xb.shape
    if compiled and Xb.dtype.kind in "fiu":
        from ._stats_numba import row_products

        out = BlockProducts(np.empty(n), np.empty(n), np.zeros(m), np.empty((n, W.shape[0])))
        row_products(np.ascontiguousarray(Xb), W, *out)
        return out
    xd = np.asarray(Xb, dtype=np.float64)
    return BlockProducts(np.einsum("ij,ij->i", xd, xd), xd.sum(axis=1), xd.sum(axis=0), xd @ W.T)


class _Acc:
    """The running sums of :func:`data_stats`; ``compiled``: count each block with the
    one-read kernel of :mod:`._stats_numba` (same numbers: the sums in the block's
    dtype, as the NumPy path's BLAS products)."""

    def __init__(self, n: int, m: int, *, compiled: bool = False) -> None:
        self.n_values, self.n_nonfinite, self.n_negative, self.n_zero = n * m, 0, 0, 0
        self.lo, self.hi, self.total, self.n_finite = np.inf, -np.inf, 0.0, 0
        self.integer, self.positive, self.compiled = True, False, compiled
        self.pixel_sums, self.channel_sums = np.zeros(n), np.zeros(m)

    def add(self, a: int, b: int, Xb: np.ndarray) -> None:
        """Count one block (rows ``a .. b - 1``)."""
        if self.compiled and Xb.ndim == 2 and Xb.dtype.kind in "fiu":
            self._add_compiled(a, b, np.ascontiguousarray(Xb))
        else:
            self._add_numpy(a, b, Xb)

    def _add_compiled(self, a: int, b: int, Xb: np.ndarray) -> None:
        from ._stats_numba import block_stats

        floating = Xb.dtype.kind == "f"
        acc = Xb.dtype if floating and Xb.dtype.itemsize >= 4 else np.dtype(np.float64)
        ext = np.finfo(Xb.dtype) if floating else np.iinfo(Xb.dtype)
        lo = np.full(Xb.shape[1], np.inf if floating else ext.max, Xb.dtype)
        hi = np.full(Xb.shape[1], -np.inf if floating else ext.min, Xb.dtype)
        rows, cols = np.zeros(Xb.shape[0], acc), np.zeros(Xb.shape[1], acc)
        counts = np.zeros(4, np.int64)
        block_stats(Xb, rows, cols, lo, hi, counts)
        n_fin, n_zero, n_neg, n_frac = (int(c) for c in counts)
        self.n_nonfinite += Xb.size - n_fin
        self.n_zero += n_zero
        self.n_negative += n_neg
        self.n_finite += n_fin
        if n_fin:
            self.lo = min(self.lo, float(lo.min()))
            self.hi = max(self.hi, float(hi.max()))
        self._add_sums(a, b, rows, cols)
        if self.integer and n_fin:
            self.integer = self.lo >= 0 and n_frac == 0
        self.positive = self.positive or self.hi > 0

    def _add_sums(self, a: int, b: int, rows: np.ndarray, cols: np.ndarray) -> None:
        self.pixel_sums[a:b] = rows
        self.channel_sums += cols
        self.total += float(np.sum(rows, dtype=np.float64))

    def _add_numpy(self, a: int, b: int, Xb: np.ndarray) -> None:
        """Count one block in its own dtype: a few vectorized passes, the sums of a float
        block by BLAS in its dtype (accumulated in float64 across blocks), no copy when
        every entry is finite."""
        if Xb.dtype.kind not in "fiu":
            Xb = Xb.astype(float)
        floating = Xb.dtype.kind == "f"
        finite = np.isfinite(Xb) if floating else None
        n_fin = Xb.size if finite is None or finite.all() else int(np.count_nonzero(finite))
        clean = Xb if n_fin == Xb.size else np.where(finite, Xb, 0)
        self.n_nonfinite += Xb.size - n_fin
        self.n_zero += int(np.count_nonzero(Xb == 0))
        if n_fin == Xb.size:
            lo, hi = float(Xb.min()), float(Xb.max())
        elif n_fin:
            lo = float(np.min(Xb, where=finite, initial=np.inf))
            hi = float(np.max(Xb, where=finite, initial=-np.inf))
        if n_fin:
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
            self.n_negative += int(np.count_nonzero(clean < 0)) if lo < 0 else 0
        self.n_finite += n_fin
        if floating and Xb.ndim == 2 and Xb.dtype.itemsize >= 4:
            rows = clean @ np.ones(Xb.shape[1], Xb.dtype)
            cols = np.ones(Xb.shape[0], Xb.dtype) @ clean
        else:
            rows, cols = clean.sum(axis=1, dtype=np.float64), clean.sum(axis=0, dtype=np.float64)
        self._add_sums(a, b, rows, cols)
        if self.integer and n_fin:
            whole = not floating or (self.lo >= 0 and bool(np.all(np.trunc(clean) == clean)))
            self.integer = self.lo >= 0 and whole
        self.positive = self.positive or self.hi > 0

    def result(self) -> DataStats:
        some = self.n_finite > 0
        return DataStats(
            n_values=self.n_values,
            n_nonfinite=self.n_nonfinite,
            n_negative=self.n_negative,
            n_zero=self.n_zero,
            min=self.lo if some else float("nan"),
            max=self.hi if some else float("nan"),
            mean=self.total / self.n_finite if some else float("nan"),
            counts=bool(self.integer and self.positive and self.n_negative == 0),
            pixel_sums=self.pixel_sums,
            channel_sums=self.channel_sums,
        )
