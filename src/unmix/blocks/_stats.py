"""Statistics of ``X`` (pixels, channels) in one pass of row blocks (bounded memory)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import to_numpy
from ._scanrows import block_ranges
from ._streamed import read_ahead

__all__ = ["DataStats", "data_stats"]


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
) -> DataStats:
    """:class:`DataStats` of ``X`` (pixels, channels), read once, a block of rows at a time.

    Parameters
    ----------
    X : array (pixels, channels)
        In memory, or file-backed (h5py, Zarr, :class:`ScanRows`, memory map): only
        blocks of about ``block_bytes`` (whole scan lines) are held, in their own dtype;
        the next block is read ahead while this one is counted (as :class:`StreamedData`
        reads).  A float block's row and column sums are BLAS products in its dtype
        (float32 data: relative error about 1e-7), accumulated in float64 across blocks;
        integers are summed in float64.
    block_bytes : int, keyword-only
        Bytes of one block as stored.
    progress : callable, keyword-only
        Called with the number of rows of each block once it is counted.

    Returns
    -------
    DataStats
    """
    acc = _Acc(int(X.shape[0]), int(X.shape[1]))
    ranges = block_ranges(X, block_bytes=block_bytes)
    for a, b, Xb in read_ahead(X, ranges, lambda a, b: np.asarray(to_numpy(X[a:b]))):
        acc.add(a, b, Xb)
        if progress is not None:
            progress(b - a)
    return acc.result()


class _Acc:
    """The running sums of :func:`data_stats`."""

    def __init__(self, n: int, m: int) -> None:
        self.n_values, self.n_nonfinite, self.n_negative, self.n_zero = n * m, 0, 0, 0
        self.lo, self.hi, self.total, self.n_finite = np.inf, -np.inf, 0.0, 0
        self.integer, self.positive = True, False
        self.pixel_sums, self.channel_sums = np.zeros(n), np.zeros(m)

    def add(self, a: int, b: int, Xb: np.ndarray) -> None:
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
        self.pixel_sums[a:b] = rows
        self.channel_sums += cols
        self.total += float(np.sum(rows, dtype=np.float64))
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
