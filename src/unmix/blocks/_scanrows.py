"""``X`` (pixels, channels) of a file-backed spectrum image, read by whole scan lines."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._h5direct import direct_lines

__all__ = ["ScanRows", "block_ranges", "sample_rows"]


class ScanRows:
    """The ``(pixels, channels)`` matrix of a ``(*spatial, *signal)`` array left on disk.

    A 3-D ``(y, x, E)`` or 4-D ``(y, x, ky, kx)`` h5py / Zarr dataset is not reshaped
    (neither can be without reading it): rows ``a:b`` are read as the whole scan lines
    (slices of the first axis) that hold them, then cut.  :func:`unmix.factorize` streams
    it block by block like a 2-D dataset (``_unmix_streamable``); so do the CLI's
    statistics and report figures.

    Parameters
    ----------
    source : h5py.Dataset, zarr.Array or array
        Shape ``(*spatial_shape, *signal_shape)``.
    n_spatial : int
        How many leading axes are the scan (1 or 2 here; any number works).

    Attributes
    ----------
    shape : tuple of int
        ``(pixels, channels)``.
    line : int
        Pixels of one scan line (a slice of the first axis).
    reads : int
        Values read from ``source`` so far (for tests and benchmarks).

    Notes
    -----
    The last scan lines read are kept (one block): rows asked for again, or the rest of a
    line that a smaller block began, are not read twice.
    """

    _unmix_streamable = True
    ndim = 2

    def __init__(self, source: Any, n_spatial: int) -> None:
        full = tuple(int(s) for s in source.shape)
        if not 1 <= n_spatial < len(full):
            raise ValueError(
                f"n_spatial={n_spatial} for an array of shape {full}: give 1 .. {len(full) - 1}"
            )
        self.data = source
        self.spatial_shape = full[:n_spatial]
        self.line = math.prod(full[1:n_spatial])
        self.shape = (math.prod(full[:n_spatial]), math.prod(full[n_spatial:]))
        self.dtype = np.dtype(source.dtype)
        chunks = getattr(source, "chunks", None)
        self.chunks = (int(chunks[0]) * self.line, self.shape[1]) if chunks else None
        self.reads = 0
        self._kept: tuple[int, int, Any] = (0, 0, None)
        self._direct = direct_lines(source)  # lines by os.preadv when the storage allows

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        n = self.shape[0]
        if isinstance(rows, (int, np.integer)):
            i = int(rows) + (n if int(rows) < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"row {rows} of {n} pixels")
            where = np.unravel_index(i, self.spatial_shape)
            out = np.asarray(self.data[tuple(int(w) for w in where)]).reshape(-1)
            self.reads += out.size
            return out[cols]
        if not isinstance(rows, slice):
            raise TypeError(f"ScanRows rows: an int or a slice, not {type(rows).__name__}")
        a, b, step = rows.indices(n)
        if step != 1:
            raise ValueError("ScanRows reads contiguous rows only (slice step 1)")
        if b <= a:
            return np.empty((0, self.shape[1]), self.dtype)[:, cols]
        l0, l1 = a // self.line, -(-b // self.line)
        lines = self._lines(l0, l1)
        out = lines[a - l0 * self.line : b - l0 * self.line]
        return out if cols == slice(None) else out[:, cols]

    def _lines(self, l0: int, l1: int) -> np.ndarray:
        """Scan lines ``l0:l1`` as rows; the last lines read are kept, so consecutive
        blocks smaller than a line (a 4-D scan line holds many MB) read each line once."""
        c0, c1, kept = self._kept
        if c0 <= l0 < c1:
            have = kept[(l0 - c0) * self.line : (min(l1, c1) - c0) * self.line]
            if l1 <= c1:
                return have
            more = self._read(c1, l1)
            lines = np.concatenate([have, more])
        else:
            more = lines = self._read(l0, l1)
        self.reads += more.size
        self._kept = (l0, l1, lines)
        return lines

    def _read(self, l0: int, l1: int) -> np.ndarray:
        data = self._direct(l0, l1) if self._direct is not None else self.data[l0:l1]
        return np.asarray(data).reshape(-1, self.shape[1])


def _itemsize(X: Any) -> int:
    """Bytes of one entry of ``X`` (a NumPy, h5py, Zarr, torch or CuPy array; 8 when the
    dtype says nothing)."""
    dtype = getattr(X, "dtype", np.float64)
    try:
        return np.dtype(dtype).itemsize
    except TypeError:  # torch dtypes
        return int(getattr(dtype, "itemsize", 8))


def block_ranges(X: Any, *, block_bytes: int = 32 << 20) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges of ``X`` (pixels, channels) of about ``block_bytes``.

    Whole scan lines (:attr:`ScanRows.line`) and whole storage chunks along the rows where
    ``X`` declares them, at least one row.
    """
    n, m = int(X.shape[0]), int(X.shape[1])
    step = max(1, int(block_bytes) // max(1, m * max(_itemsize(X), 4)))
    unit = int(getattr(X, "line", 1) or 1)
    chunks = getattr(X, "chunks", None)
    if chunks and isinstance(chunks[0], (int, np.integer)):
        unit = math.lcm(unit, int(chunks[0])) if int(chunks[0]) <= step else unit
    step = max(unit, (step // unit) * unit)
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def sample_rows(
    X: Any,
    n_rows: int,
    *,
    seed: int | None = 0,
    block_bytes: int = 32 << 20,
    progress: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random subsample of the rows of ``X`` (pixels, channels), in one pass.

    Parameters
    ----------
    X : array (pixels, channels)
        In memory or file-backed; read once, in blocks of about ``block_bytes``.
    n_rows : int
        Rows to draw (all of them when ``X`` has fewer).
    seed : int or None, keyword-only
        ``numpy.random.default_rng(seed)`` draws the rows without replacement: the same
        seed gives the same rows.
    block_bytes : int, keyword-only
    progress : callable, keyword-only
        Called with the number of rows of each block read.

    Returns
    -------
    index : ndarray of int (n,)
        The rows drawn, increasing.
    rows : ndarray (n, channels)
        Those rows, in the dtype of ``X``.
    """
    n = int(X.shape[0])
    if n_rows >= n:
        index = np.arange(n)
    else:
        index = np.sort(np.random.default_rng(seed).choice(n, size=int(n_rows), replace=False))
    out = np.empty((index.size, int(X.shape[1])), dtype=np.dtype(X.dtype))
    for a, b in block_ranges(X, block_bytes=block_bytes):
        lo, hi = np.searchsorted(index, [a, b])
        if hi > lo:
            out[lo:hi] = np.asarray(X[a:b])[index[lo:hi] - a]
        if progress is not None:
            progress(b - a)
    return index, out
