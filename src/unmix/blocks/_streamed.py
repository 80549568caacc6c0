"""``X`` read block by block from a file-backed or host array (h5py, Zarr, Dask, memmap)."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .._backend import Backend
from ..executors.base import Block
from ._h5direct import direct_lines
from ._pixels import PixelData, Weights

__all__ = ["RowRange", "StreamedData", "read_ahead"]


class RowRange:
    """A view of ``n_rows`` rows whose row ``i`` is row ``offset + i`` of ``source``.

    Nothing is read until the view is sliced (``source`` may be a file-backed array; an
    uncompressed HDF5 dataset's whole rows are read with ``os.preadv``, see
    :func:`~unmix.blocks._h5direct.direct_lines`, so a read-ahead thread overlaps the
    computation).  A negative ``offset`` maps global row numbers onto a process's own rows.
    """

    def __init__(self, source: Any, offset: int, n_rows: int) -> None:
        self.src, self.offset = source, int(offset)
        self.shape = (int(n_rows), int(source.shape[1]))
        self.dtype = source.dtype
        self.chunks = getattr(source, "chunks", None)
        self._direct = direct_lines(source)  # rows by os.preadv when the storage allows

    def __getitem__(self, key: Any) -> Any:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        if isinstance(rows, slice):
            a, b, _ = rows.indices(self.shape[0])
            whole = isinstance(cols, slice) and cols == slice(None)
            if self._direct is not None and whole and b > a:
                return self._direct(self.offset + a, self.offset + b)
            return self.src[self.offset + a : self.offset + b, cols]
        return self.src[self.offset + int(rows), cols]


class StreamedData(PixelData):
    """``X`` read block by block from a file-backed or host array (h5py, Zarr, Dask, memmap).

    Each block is a run of whole rows of the problem's block grid (never re-cut to the
    storage's chunks: the grid decides HALS's inner repeats, so one file gives one answer
    in memory, streamed or under MPI), read once per pass and moved to the compute
    backend ``be`` (which may be a GPU while ``X`` stays on disk or in host memory).  The
    last block is kept, so the two products of one block in a pass read it once; the next
    block is read in a background thread while this one is computed (a memory map gets a
    read-ahead hint instead).  At most three blocks are resident: the previous, the
    current and the next.
    """

    def __init__(
        self,
        source: Any,
        be: Backend,
        *,
        block_size: int,
        dtype: Any,
        rows: tuple[int, int] | None = None,
        executor: Any = None,
        weights: Weights | None = None,
        mask: Any = None,
    ) -> None:
        start, stop = rows if rows is not None else (0, int(source.shape[0]))
        view = RowRange(source, start, stop - start)
        super().__init__(
            view,
            be,
            block_size=block_size,
            executor=executor,
            n_total=int(source.shape[0]),
            weights=weights,
            mask=mask,
        )
        self.source = view
        self._dtype = dtype
        self._last: tuple[int, Any] | None = None
        self._next: tuple[int, Any] | None = None
        self._reader = _BlockReader(source, start, moved=be.name != "numpy")
        self.reads = 0  # blocks read from the source (for tests and benchmarks)

    @property
    def in_memory(self) -> bool:
        return False

    def x(self, block: Block) -> Any:
        if self._last is not None and self._last[0] == block.start:
            return self._last[1]
        if self._next is not None and self._next[0] == block.start:
            Xb = self._next[1].result()
        else:
            if self._next is not None:  # a pass that skipped ahead: drop the read-ahead
                self._reader.drop(self._next[1])
            Xb = self._read(block.start, block.stop)
        self._next = None
        self._last = (block.start, Xb)
        nxt = block.index + 1
        if nxt < len(self.blocks):
            b = self.blocks[nxt]
            self._next = (b.start, self._reader.ahead(self._read, b.start, b.stop))
        return Xb

    def _read(self, start: int, stop: int) -> Any:
        Xb = self.raw(Block(-1, start, stop))
        if self.mask is not None:  # missing entries (maybe NaN in the file) read as 0
            Xb = self.be.xp.where(self.mask[start:stop, :], Xb, 0.0)
        return Xb

    def raw(self, block: Block) -> Any:
        """``X_b`` as stored (missing entries not zeroed), in the working dtype."""
        self.reads += 1
        host = np.asarray(self.source[block.start : block.stop, :])
        return self.be.asarray(host, dtype=self._dtype)

    def rows(self, index: Any) -> Any:
        host = np.stack([np.asarray(self.source[int(i), :]) for i in index], axis=0)
        return self.be.asarray(host, dtype=self._dtype)


def read_ahead(
    X: Any,
    ranges: Iterable[tuple[int, int]],
    read: Callable[[int, int], Any] | None = None,
    *,
    depth: int = 1,
) -> Iterator[tuple[int, int, Any]]:
    """``(a, b, read(a, b))`` for the row ranges of ``X`` in order, the next ``depth``
    blocks read while this one is used (as :class:`StreamedData` reads ahead).

    ``read`` defaults to ``X[a:b]``; it runs in the reading threads, so a ``read`` that
    also reduces its block with a kernel that releases Python's lock (the compiled
    products of :func:`~unmix.blocks.block_products`) spreads a pass over ``depth + 1``
    cores.  At most ``depth + 1`` blocks are held at once.
    """
    ranges = list(ranges)
    read = read if read is not None else lambda a, b: X[a:b]
    reader = _BlockReader(X, 0, moved=False, workers=max(1, int(depth)))
    pending = collections.deque(reader.ahead(read, a, b) for a, b in ranges[:depth])
    for i, (a, b) in enumerate(ranges):
        Xb = pending.popleft().result()
        if i + depth < len(ranges):
            pending.append(reader.ahead(read, *ranges[i + depth]))
        yield a, b, Xb


class _BlockReader:
    """Reads the next block ahead of the computation.

    A background thread for sources whose reads cost CPU or wait on I/O (h5py, Zarr,
    Dask, :class:`~unmix.blocks.ScanRows`) or whose blocks move to another device; a
    kernel read-ahead hint (``madvise(WILLNEED)``) for a memory map, whose blocks are
    views; nothing for an array already in host memory computed on the host.
    """

    def __init__(self, source: Any, first_row: int, *, moved: bool, workers: int = 1) -> None:
        base = getattr(source, "src", source)  # a Dask worker's row view: its source
        self._mmap = getattr(base, "_mmap", None) if isinstance(base, np.memmap) else None
        self._base, self._pool, self._workers = base, None, workers
        inner = int(getattr(source, "offset", 0)) if source is not base else 0
        self._offset = int(first_row) + inner  # row of the reader's row 0 in ``base``
        # host arrays (a memory map: the hint only) are not read in a thread; anything
        # else (h5py, Zarr, Dask, ScanRows) is, and so is every block moved to a device
        self.threaded = moved or not isinstance(base, np.ndarray)

    def ahead(self, read: Callable, start: int, stop: int) -> Any:
        """A future-like holder of block ``[start, stop)``, read now or in the thread."""
        if self.threaded:
            if self._pool is None:
                import concurrent.futures
                import weakref

                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._workers, thread_name_prefix="unmix-read"
                )
                weakref.finalize(self, self._pool.shutdown, wait=False)
            return self._pool.submit(read, start, stop)
        self._advise(start, stop)
        return _Deferred(read, start, stop)

    @staticmethod
    def drop(pending: Any) -> None:
        """Forget a read-ahead that is not wanted (a thread's read is waited for)."""
        if not isinstance(pending, _Deferred):
            pending.result()

    def _advise(self, start: int, stop: int) -> None:
        """Ask the kernel to read rows ``[start, stop)`` of the memory map ahead."""
        if self._mmap is None or not hasattr(self._mmap, "madvise"):
            return
        try:
            import mmap

            base = self._base
            origin = np.frombuffer(self._mmap, dtype=np.uint8).__array_interface__["data"][0]
            row = int(base.strides[0])
            first = base.__array_interface__["data"][0] - origin
            first += (self._offset + start) * row
            lo = first - first % mmap.PAGESIZE
            self._mmap.madvise(mmap.MADV_WILLNEED, lo, (stop - start) * row + first - lo)
        except (OSError, ValueError, AttributeError, TypeError, BufferError):  # a hint only
            pass


class _Deferred:
    """A read done when asked for (the same interface as a thread's future)."""

    def __init__(self, read: Callable, start: int, stop: int) -> None:
        self._args = (read, start, stop)

    def result(self) -> Any:
        read, start, stop = self._args
        return read(start, stop)
