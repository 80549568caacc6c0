"""Pixel blocks and executors: the one data pass of DESIGN.md section 2.

Every alternating solver needs, per iteration, for each pixel block ``b``: ``X_b @ S.T``
to update that block's maps ``A_b``, then - while ``X_b`` is still hot - the block's
contributions ``A_b.T @ X_b`` and ``A_b.T @ A_b`` to two small sums that update ``S``.
A solver therefore writes a *kernel* ``kernel(block) -> dict of small arrays`` and asks
an executor to ``map_reduce`` it over the blocks.  The executor decides where blocks
live and how sums travel; the serial executor here runs them in order in one process.
(MPI and Dask executors plug in behind the same two methods.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ._backend import Backend

__all__ = ["Block", "Executor", "PixelData", "SerialExecutor", "Weights", "default_block_size"]


@dataclass(frozen=True)
class Block:
    """A contiguous range of pixels (rows of ``X``); whole scan lines where possible."""

    index: int
    start: int
    stop: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def size(self) -> int:
        return self.stop - self.start


class Executor(Protocol):
    """Runs a kernel over pixel blocks and sums the small arrays it returns.

    A distributed executor owns a share of the pixels (``partition``); its ``map_reduce``
    runs the local blocks and sums across processes, and ``allreduce`` sums any other
    small value (a norm, a penalty) so that every process sees the same global numbers.
    """

    distributed: bool

    def map_reduce(self, kernel: Callable[[Block], dict], blocks: Sequence[Block]) -> dict:
        """Apply ``kernel`` to every block; return the element-wise sums of its outputs."""
        ...

    def allreduce(self, value: Any) -> Any:
        """The sum of ``value`` over all processes (identity when serial)."""
        ...

    def partition(self, n_pixels: int, block: int) -> tuple[int, int]:
        """The ``[start, stop)`` rows of ``X`` this process owns: whole blocks of the serial
        block grid (blocks are whole scan lines), so every process's blocks, and hence the
        answer, are those of a serial run."""
        ...


class SerialExecutor:
    """All blocks in this process, one after the other."""

    distributed = False

    def map_reduce(self, kernel: Callable[[Block], dict], blocks: Sequence[Block]) -> dict:
        total: dict[str, Any] = {}
        for block in blocks:
            out = kernel(block)
            for key, value in out.items():
                total[key] = value if key not in total else total[key] + value
        return total

    def allreduce(self, value: Any) -> Any:
        return value

    def partition(self, n_pixels: int, block: int) -> tuple[int, int]:
        return 0, n_pixels

    def __repr__(self) -> str:
        return "SerialExecutor()"


def default_block_size(
    n_pixels: int, n_channels: int, be: Backend, *, row: int = 1, streamed: bool = False
) -> int:
    """Pixels a block: about 8 MB of ``X`` on CPU (cache/BLAS friendly), all on a GPU.

    Data streamed to a GPU from the host or a file (``device=``) come in blocks of about
    64 MB: large enough for full-speed copies and kernels, small enough to double-buffer.
    Rounded to whole scan lines of ``row`` pixels.
    """
    on_device = be.name != "numpy" and str(be.device) != "cpu"
    if on_device and not streamed:
        return n_pixels
    itemsize = 4 if str(be.dtype).endswith("32") else 8
    target = (64 << 20) if on_device else (8 << 20)
    rows = max(256, target // max(1, n_channels * itemsize))
    if row > 1:
        rows = max(row, (rows // row) * row)
    return min(n_pixels, rows)


def rows_of_rank(n_pixels: int, block: int, rank: int, size: int) -> tuple[int, int]:
    """The rows ``[start, stop)`` of process ``rank`` of ``size``: whole blocks of the
    serial block grid, spread evenly (the first ``lines % size`` processes get one more;
    with more processes than blocks the last ones own none)."""
    lines = math.ceil(n_pixels / max(1, int(block)))
    per, extra = divmod(lines, size)
    first = rank * per + min(rank, extra)
    count = per + (1 if rank < extra else 0)
    block = max(1, int(block))
    return min(n_pixels, first * block), min(n_pixels, (first + count) * block)


@dataclass(frozen=True)
class Weights:
    """Per-entry weights of the loss: separable per pixel / per channel, or full.

    The weight of entry ``(i, j)`` is ``pixels[i] * channels[j] * full[i, j]`` (missing
    parts are 1).  A ``mask`` passed to :func:`unmix.factorize` multiplies it (0 = missing).

    Parameters
    ----------
    pixels : array (n_pixels,), optional
    channels : array (n_channels,), optional
    full : array (n_pixels, n_channels), optional
    """

    pixels: Any = None
    channels: Any = None
    full: Any = None


class PixelData:
    """``X`` with its weights and mask, cut into pixel blocks (in memory).

    Parameters
    ----------
    X : array (n_pixels, n_channels)
        The data, already validated (floating dtype).
    be : Backend
    block_size : int
        Pixels a block.
    weights : Weights, optional
    mask : bool array (n_pixels, n_channels), optional
        True where observed.
    """

    def __init__(
        self,
        X: Any,
        be: Backend,
        *,
        block_size: int,
        weights: Weights | None = None,
        mask: Any = None,
        executor: Any = None,
        n_total: int | None = None,
    ) -> None:
        self.X = X
        self.be = be
        self.executor = executor or SerialExecutor()
        self.n_pixels, self.n_channels = (int(s) for s in X.shape)
        self.n_total = self.n_pixels if n_total is None else int(n_total)
        self.block_size = max(1, int(block_size))
        n_blocks = math.ceil(self.n_pixels / self.block_size)
        self.blocks = [
            Block(i, i * self.block_size, min(self.n_pixels, (i + 1) * self.block_size))
            for i in range(n_blocks)
        ]
        w = weights or Weights()
        self.pixel_w = None if w.pixels is None else be.xp.reshape(w.pixels, (-1, 1))
        self.channel_w = None if w.channels is None else be.xp.reshape(w.channels, (1, -1))
        self.full_w = w.full
        self.mask = mask

    @property
    def has_mask(self) -> bool:
        return self.mask is not None

    @property
    def elementwise(self) -> bool:
        """True when weights/mask are not separable (need per-entry work)."""
        return self.full_w is not None or self.mask is not None

    @property
    def weighted(self) -> bool:
        return self.elementwise or self.pixel_w is not None or self.channel_w is not None

    def raw(self, block: Block) -> Any:
        """``X_b`` as given (missing entries not zeroed)."""
        return self.X[block.slice, :]

    def x(self, block: Block) -> Any:
        """``X_b``; missing entries (mask False) read as 0."""
        Xb = self.X[block.slice, :]
        if self.mask is not None:
            Xb = self.be.xp.where(self.mask[block.slice, :], Xb, 0.0)
        return Xb

    def w(self, block: Block) -> Any:
        """Entry weights of the block (None when all ones); mask included."""
        xp = self.be.xp
        W = None
        if self.full_w is not None:
            W = self.full_w[block.slice, :]
        if self.mask is not None:
            m = xp.astype(self.mask[block.slice, :], self.be.dtype)
            W = m if W is None else W * m
        if self.pixel_w is not None:
            pw = self.pixel_w[block.slice, :]
            W = pw if W is None else W * pw
        if self.channel_w is not None:
            W = self.channel_w if W is None else W * self.channel_w
        return W

    def pw(self, block: Block) -> Any:
        """Pixel weights of the block as a column (None when absent)."""
        return None if self.pixel_w is None else self.pixel_w[block.slice, :]

    def x_times(self, block: Block, M: Any) -> Any:
        """``X_b @ M`` for a small ``M`` (channels, k)."""
        return self.x(block) @ M

    def t_times(self, block: Block, Aw: Any) -> Any:
        """``Aw^T @ X_b`` for the block's (weighted) maps ``Aw`` (n_b, k)."""
        return Aw.T @ self.x(block)

    def reduce(self, value: Any) -> Any:
        """Sum over the processes that share the pixels (identity when serial)."""
        return self.executor.allreduce(value)

    def mean(self) -> float:
        """Mean of the observed entries of ``X`` (all processes)."""
        xp, be = self.be.xp, self.be
        total = sum(float(xp.sum(be.acc(self.x(b)))) for b in self.blocks)
        count = self.n_pixels * self.n_channels
        if self.mask is not None:
            count = int(xp.sum(xp.astype(self.mask, xp.int64)))
        total, count = self.reduce(np.array([total, float(count)]))
        return float(total) / max(float(count), 1.0)

    def svd(self, k: int, rng: Any, n_iter: int = 2, *, exact: bool = False) -> tuple:
        """Leading ``k`` singular triplets of ``X`` (missing entries set to the mean).

        A randomized SVD through the data pass (:func:`unmix._linalg.svd_blocks`), the
        same for in-memory and streamed data; ``exact=True`` (the SVD solver) uses LAPACK
        on small in-memory data.
        """
        from ._linalg import svd_blocks, svd_topk

        small = min(self.n_total, self.n_channels) <= 4 * (k + 10)
        local = not self.executor.distributed and self.in_memory
        if local and (self.mask is not None or (exact and small)):
            X = self.X if self.mask is None else self.be.xp.where(self.mask, self.X, self.mean())
            return svd_topk(X, k, self.be, rng=rng, n_iter=n_iter)
        view = self if self.mask is None else _MeanFilled(self, self.mean())
        return svd_blocks(view, k, self.be, rng=rng, n_iter=n_iter, executor=self.executor)

    @property
    def in_memory(self) -> bool:
        """True when ``X`` is an array in memory (not streamed, not compressed)."""
        return True

    def rows(self, index: Any) -> Any:
        """Selected pixels' spectra, shape (len(index), channels)."""
        return self.be.xp.stack([self.X[int(i), :] for i in index], axis=0)

    def weight_total(self) -> float:
        """Sum of the pixel weights (the number of pixels when unweighted)."""
        if self.pixel_w is None:
            return float(self.n_total)
        return float(self.reduce(float(self.be.xp.sum(self.be.acc(self.pixel_w)))))

    def weighted_view(self) -> Any:
        """``diag(sqrt(w)) X`` through the product interface (for weighted SVDs)."""
        return _RowScaled(self) if self.pixel_w is not None else self

    def norm2(self) -> float:
        """``sum W X^2`` over all blocks, in float64; computed once and cached."""
        if getattr(self, "_norm2", None) is None:
            be = self.be
            local = sum(float(be.acc(self.sq_norm(b))) for b in self.blocks)
            self._norm2 = float(self.reduce(local))
        return self._norm2

    def sq_norm(self, block: Block) -> Any:
        """``sum W X_b^2`` over the block (0-d array)."""
        Xb = self.x(block)
        W = self.w(block)
        return self.be.xp.sum(Xb * Xb if W is None else W * Xb * Xb)


class _RowScaled:
    """``diag(sqrt(w)) X`` for the randomized SVD: blocks and products only."""

    def __init__(self, data: PixelData) -> None:
        self.data, self.blocks = data, data.blocks
        self.n_pixels, self.n_channels = data.n_pixels, data.n_channels
        self.be, self.executor = data.be, data.executor
        self._r = self.be.xp.sqrt(data.pixel_w)

    def x_times(self, block: Block, M: Any) -> Any:
        return self._r[block.slice, :] * self.data.x_times(block, M)

    def t_times(self, block: Block, Aw: Any) -> Any:
        return self.data.t_times(block, Aw * self._r[block.slice, :])


class _MeanFilled:
    """``X`` with its missing entries set to ``fill``, through the product interface.

    For the SVD of masked data split over processes (each process its rows).
    """

    def __init__(self, data: PixelData, fill: float) -> None:
        self.data, self.blocks, self.fill = data, data.blocks, fill
        self.n_pixels, self.n_channels = data.n_pixels, data.n_channels
        self.n_total = data.n_total
        self.be, self.executor = data.be, data.executor

    def _x(self, block: Block) -> Any:
        d = self.data
        return d.be.xp.where(d.mask[block.slice, :], d.raw(block), self.fill)

    def x_times(self, block: Block, M: Any) -> Any:
        return self._x(block) @ M

    def t_times(self, block: Block, Aw: Any) -> Any:
        return Aw.T @ self._x(block)


class _RowRange:
    """A view of ``n_rows`` rows whose row ``i`` is row ``offset + i`` of ``source``.

    Nothing is read until the view is sliced (``source`` may be a file-backed array).
    A negative ``offset`` maps global row numbers onto a process's own rows.
    """

    def __init__(self, source: Any, offset: int, n_rows: int) -> None:
        self.src, self.offset = source, int(offset)
        self.shape = (int(n_rows), int(source.shape[1]))
        self.dtype = source.dtype
        self.chunks = getattr(source, "chunks", None)

    def __getitem__(self, key: Any) -> Any:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        if isinstance(rows, slice):
            a, b, _ = rows.indices(self.shape[0])
            return self.src[self.offset + a : self.offset + b, cols]
        return self.src[self.offset + int(rows), cols]


class StreamedData(PixelData):
    """``X`` read block by block from a file-backed or host array (h5py, Zarr, Dask, memmap).

    Each block is a run of whole rows, aligned to the storage's chunk rows where known,
    read once per pass and moved to the compute backend ``be`` (which may be a GPU while
    ``X`` stays on disk or in host memory).  The last block is kept, so the two products
    of one block in a pass read it once; the next block is read in a background thread
    while this one is computed (a memory map gets a read-ahead hint instead).  At most
    three blocks are resident: the previous, the current and the next.
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
        chunk = chunk_rows(source)
        if chunk and block_size % chunk:
            block_size = max(chunk, (block_size // chunk) * chunk)
        start, stop = rows if rows is not None else (0, int(source.shape[0]))
        view = _RowRange(source, start, stop - start)
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
        self._reader = _BlockReader(source, view, be)
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


def chunk_rows(source: Any) -> int | None:
    """Rows of one storage chunk of ``source`` (h5py, Zarr, Dask), None when unknown."""
    chunks = getattr(source, "chunks", None)
    if not chunks:
        return None
    first = chunks[0]
    if isinstance(first, tuple):  # Dask: the sizes of every chunk along the rows
        first = first[0] if first else None
    return int(first) if first else None


class _BlockReader:
    """Reads the next block ahead of the computation.

    A background thread for sources whose reads cost CPU or wait on I/O (h5py, Zarr,
    Dask) or whose blocks move to another device; a kernel read-ahead hint
    (``madvise(WILLNEED)``) for a memory map, whose blocks are views; nothing for an
    array already in host memory computed on the host.
    """

    def __init__(self, source: Any, view: Any, be: Backend) -> None:
        base = getattr(source, "src", source)  # a Dask worker's row view: its source
        self._mmap = getattr(base, "_mmap", None) if isinstance(base, np.memmap) else None
        self._view, self._base, self._pool = view, base, None
        inner = int(getattr(source, "offset", 0)) if source is not base else 0
        self._offset = view.offset + inner  # row of the view's row 0 in ``base``
        from .streaming import LAZY_MODULES

        lazy = type(base).__module__.split(".")[0] in LAZY_MODULES
        moved = be.name != "numpy"
        self.threaded = lazy or moved  # a memory map on the host: the hint only

    def ahead(self, read: Callable, start: int, stop: int) -> Any:
        """A future-like holder of block ``[start, stop)``, read now or in the thread."""
        if self.threaded:
            if self._pool is None:
                import concurrent.futures
                import weakref

                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="unmix-read"
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


class LowRankData(PixelData):
    """``X ~= U @ Vt`` (a truncated SVD) standing in for ``X`` in the data pass.

    Products cost ``O((n_b + channels) r k)`` instead of ``O(n_b channels k)``: the
    low-rank-approximation NMF of Zhou, Cichocki & Xie (2012).  Only the Frobenius
    solvers' product interface is available (no per-entry access, weights or masks).
    """

    def __init__(
        self,
        U: Any,
        s: Any,
        Vt: Any,
        be: Backend,
        *,
        block_size: int,
        executor: Any = None,
        n_total: int | None = None,
    ) -> None:
        self._U, self._s = U, s
        self.U, self.Vt = U * s[None, :], Vt
        super().__init__(self.U, be, block_size=block_size, executor=executor, n_total=n_total)
        self.n_channels = int(Vt.shape[1])

    @property
    def in_memory(self) -> bool:
        return False

    def x(self, block: Block) -> Any:
        raise NotImplementedError("compressed data has no per-entry access")

    def mean(self) -> float:
        xp = self.be.xp
        total = float(xp.sum(xp.sum(self.U, axis=0) * xp.sum(self.Vt, axis=1)))
        return float(self.reduce(total)) / (self.n_total * self.n_channels)

    def svd(self, k: int, rng: Any, n_iter: int = 2, *, exact: bool = False) -> tuple:
        return self._U[:, :k], self._s[:k], self.Vt[:k, :]

    def x_times(self, block: Block, M: Any) -> Any:
        return self.U[block.slice, :] @ (self.Vt @ M)

    def t_times(self, block: Block, Aw: Any) -> Any:
        return (Aw.T @ self.U[block.slice, :]) @ self.Vt

    def sq_norm(self, block: Block) -> Any:
        Ub = self.U[block.slice, :]
        return self.be.xp.sum(Ub * Ub)  # the rows of Vt are orthonormal
