"""Lazy image data computed scan line by scan line (the streamed image operations).

A file-backed image ``(*spatial, *signal)`` is read a *line* at a time: a slice of its
first spatial axis (a scan line of a 2-D map, a frame of a 3-D scan).  An image operation
that acts on each pixel's own signal (a clip, a logarithm, an FFT of each pattern, a
per-pattern background, ...) or that maps lines onto lines (a crop, a bin) needs no more
than the lines it is asked for: :class:`LineArray` is its result, an array-like of the
output's shape whose slices ``[a:b]`` compute lines ``a .. b - 1`` on demand, so a
pipeline of such operations on a 100 GB scan holds a block of lines at a time.

:func:`line_blocks` walks the lines of an image in blocks of about ``block_bytes`` (for
the one statistics pass an operation such as ``Offset(value="min")`` needs first).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["BLOCK_BYTES", "LineArray", "line_blocks", "take_lines"]

#: bytes of input a statistics pass reads at once
BLOCK_BYTES = 32 << 20


class LineArray:
    """Lazy ``(*spatial, *signal)`` data whose lines are computed when sliced.

    Parameters
    ----------
    shape : tuple of int
        The full shape; axis 0 is the first spatial axis (the lines).
    dtype : dtype
    compute : callable ``(a, b) -> ndarray``
        Lines ``a .. b - 1`` (``0 <= a < b <= shape[0]``), of shape ``(b - a, *shape[1:])``.

    Indexing takes an int, a slice (any step), an index array or a boolean mask on axis 0
    followed by any NumPy index on the other axes; ``np.asarray`` computes everything.
    ``chunks`` says one line is the natural unit (what :mod:`unmix.blocks` aligns to).
    """

    def __init__(self, shape: tuple[int, ...], dtype: Any, compute: Callable) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.chunks = (1, *self.shape[1:])
        self._compute = compute

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"LineArray(shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def lines(self, a: int, b: int) -> np.ndarray:
        """Lines ``a .. b - 1`` as an array of shape ``(b - a, *shape[1:])``."""
        if b <= a:
            return np.empty((0, *self.shape[1:]), self.dtype)
        out = np.asarray(self._compute(a, b))
        if out.shape != (b - a, *self.shape[1:]):
            raise RuntimeError(f"lines {a}:{b} came out with shape {out.shape}, not {self.shape}")
        return out.astype(self.dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if not key or key[0] is Ellipsis:
            first, rest = slice(None), key
        else:
            first, rest = key[0], key[1:]
        out = take_lines(first, self.shape[0], self.lines)
        if rest and out.ndim == self.ndim:  # the lines' axis kept
            rest = (slice(None), *rest)
        return out[rest] if rest else out


def take_lines(first: Any, n: int, read: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """The lines ``first`` (an int, a slice, an index array or a boolean mask) of an
    array-like of ``n`` lines whose ``read(a, b)`` gives lines ``a .. b - 1``: one read of
    the run of lines they span (an int drops the axis)."""
    if isinstance(first, (int, np.integer)):
        first = int(first)
        if not -n <= first < n:
            raise IndexError(f"line {first} out of range for {n} lines")
    lines = np.arange(n)[first]
    idx = np.atleast_1d(lines)
    lo, hi = (int(idx.min()), int(idx.max()) + 1) if idx.size else (0, 0)
    out = read(lo, hi)
    if idx.size != hi - lo or np.any(np.diff(idx) != 1):  # else: every line read, in order
        out = out[idx - lo]
    return out[0] if np.ndim(lines) == 0 else out


def line_blocks(data: Any, *, block_bytes: int | None = None) -> Iterator[np.ndarray]:
    """The lines of ``data`` (an array-like ``(*spatial, *signal)``), a block of about
    ``block_bytes`` (default :data:`BLOCK_BYTES`) at a time."""
    block_bytes = BLOCK_BYTES if block_bytes is None else int(block_bytes)
    n = int(data.shape[0])
    per_line = max(1, math.prod(data.shape[1:]) * np.dtype(data.dtype).itemsize)
    step = max(1, block_bytes // per_line)
    for a in range(0, n, step):
        yield np.asarray(data[a : min(n, a + step)])
