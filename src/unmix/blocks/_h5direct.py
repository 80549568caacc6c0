"""Scan lines of an uncompressed HDF5 dataset read straight from the file.

h5py holds Python's global lock while HDF5 reads, so a read-ahead thread cannot overlap
the arithmetic on the previous block (both wait on each other).  For a dataset stored
without filters - contiguous, or chunked by whole scan lines - the bytes of lines
``l0 .. l1 - 1`` are at known file offsets; ``os.preadv`` reads them into the output
array with the lock released.  Any other dataset is read through h5py as before.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["direct_lines"]


def _plain(dataset: Any) -> bool:
    """An h5py dataset whose bytes on disk are its values (no filter, native order), in a
    file opened read-only (a writable file's data may still sit in HDF5's buffers)."""
    if type(dataset).__module__.split(".")[0] != "h5py":
        return False  # not h5py (nor worth importing it to find out)
    import h5py

    if not isinstance(dataset, h5py.Dataset) or not hasattr(os, "preadv"):
        return False
    if dataset.file.mode != "r":
        return False
    filtered = dataset.compression or dataset.shuffle or dataset.fletcher32
    return not (
        filtered
        or dataset.scaleoffset is not None
        or dataset.is_virtual
        or dataset.external
        or not dataset.dtype.isnative
        or dataset.dtype.hasobject
        or dataset.ndim < 2
    )


def direct_lines(dataset: Any) -> Callable[[int, int], np.ndarray] | None:
    """A function reading lines ``[l0, l1)`` (slices of axis 0; rows of a 2-D dataset) of
    ``dataset`` with ``os.preadv``, or None when its storage does not allow it (then use
    h5py).  :class:`~unmix.blocks.ScanRows` and the row views of a streamed fit use it."""
    if not _plain(dataset):
        return None
    shape, dtype = tuple(int(s) for s in dataset.shape), dataset.dtype
    chunks = dataset.chunks
    if chunks is not None and tuple(chunks[1:]) != shape[1:]:
        return None  # chunks cut the lines: their bytes are not contiguous
    line_bytes = math.prod(shape[1:]) * dtype.itemsize
    try:
        fd = os.open(dataset.file.filename, os.O_RDONLY)
    except OSError:
        return None
    reader = _Lines(dataset, fd, shape, dtype, line_bytes)
    weakref.finalize(reader, os.close, fd)
    return reader.read if reader.ok else None


class _Lines:
    def __init__(self, d: Any, fd: int, shape: tuple, dtype: Any, line_bytes: int) -> None:
        self.d, self.fd, self.shape, self.dtype, self.line_bytes = d, fd, shape, dtype, line_bytes
        self.c0 = int(d.chunks[0]) if d.chunks is not None else None
        self.offset = None if d.chunks is not None else d.id.get_offset()
        self.ok = self.c0 is not None or self.offset is not None

    def _runs(self, l0: int, l1: int) -> list[tuple[int, int, int | None]]:
        """``(first line, last line + 1, file offset of the first)`` runs covering the
        lines; offset None where a chunk was never written (read through h5py)."""
        if self.c0 is None:
            return [(l0, l1, self.offset + l0 * self.line_bytes)]
        runs = []
        for k in range(l0 // self.c0, -(-l1 // self.c0)):
            a, b = max(l0, k * self.c0), min(l1, (k + 1) * self.c0)
            info = self.d.id.get_chunk_info_by_coord((k * self.c0,) + (0,) * (len(self.shape) - 1))
            start = info.byte_offset  # None: the chunk was never written
            runs.append(
                (a, b, None if start is None else start + (a - k * self.c0) * self.line_bytes)
            )
        return runs

    def read(self, l0: int, l1: int) -> np.ndarray:
        out = np.empty((l1 - l0, *self.shape[1:]), self.dtype)
        for a, b, offset in self._runs(l0, l1):
            part = out[a - l0 : b - l0]
            if offset is None:
                part[...] = self.d[a:b]
                continue
            view = memoryview(part.reshape(-1)).cast("B")
            done = 0
            while done < view.nbytes:
                n = os.preadv(self.fd, [view[done:]], offset + done)
                if n <= 0:
                    raise OSError(f"short read of {self.d.file.filename} at byte {offset + done}")
                done += n
        return out
