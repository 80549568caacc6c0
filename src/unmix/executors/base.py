"""The executor contract: how the one data pass runs over pixel blocks.

Every alternating solver needs, per iteration, for each pixel block ``b``: ``X_b @ S.T``
to update that block's maps ``A_b``, then - while ``X_b`` is still hot - the block's
contributions ``A_b.T @ X_b`` and ``A_b.T @ A_b`` to two small sums that update ``S``.
A solver therefore writes a *kernel* ``kernel(block) -> dict of small arrays`` and asks
an executor to ``map_reduce`` it over the blocks.  The executor decides where blocks
live and how sums travel; the solver never knows.

The whole contract (:class:`Executor`):

``distributed`` (bool)
    True when the pixels are split over processes.
``partition(n_pixels, block) -> (start, stop)``
    The rows of ``X`` this process owns: whole blocks of the serial block grid, so that
    every process's blocks, and hence the answer, are those of a serial run.
``map_reduce(kernel, blocks) -> dict``
    Apply ``kernel`` to every local block and return the element-wise sums of its
    outputs over all blocks of all processes (every process gets the same sums).
``allreduce(value) -> value``
    The sum of a small value (a norm, a penalty, an array) over all processes.

Optional capabilities, asked for with ``getattr``: ``halo(A, width, line)`` (the
neighbours' boundary scan lines, for terms that couple pixels), ``allreduce_max``,
``gather_rows``, ``barrier``, ``split`` (sub-groups of processes), ``rows`` (this
process's rows), and ``drives_workers`` with ``factorize`` (an executor that runs the
whole fit on its workers, e.g. Dask).

:class:`SerialExecutor` runs the blocks in order in one process; :mod:`unmix.mpi` and
:mod:`unmix.dask` plug in behind the same methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["Block", "Executor", "SerialExecutor", "rows_of_rank"]


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
        answer, are those of a serial run.  A distributed executor may also take
        ``weights=`` (the work of each block, e.g. the nonzeros of sparse ``X``) and
        balance them instead of the rows."""
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


def rows_of_rank(
    n_pixels: int, block: int, rank: int, size: int, weights: Any = None
) -> tuple[int, int]:
    """The rows ``[start, stop)`` of process ``rank`` of ``size``: whole blocks of the
    serial block grid, spread evenly (the first ``lines % size`` processes get one more;
    with more processes than blocks the last ones own none).

    With ``weights`` (one non-negative number a block, e.g. its nonzeros) the blocks are
    split into contiguous runs of about equal total weight instead: a block goes to the
    process whose share of the total holds the block's midpoint."""
    if weights is not None:
        return _weighted_rows(n_pixels, max(1, int(block)), rank, size, weights)
    lines = math.ceil(n_pixels / max(1, int(block)))
    per, extra = divmod(lines, size)
    first = rank * per + min(rank, extra)
    count = per + (1 if rank < extra else 0)
    block = max(1, int(block))
    return min(n_pixels, first * block), min(n_pixels, (first + count) * block)


def _weighted_rows(n_pixels: int, block: int, rank: int, size: int, weights: Any) -> tuple:
    """:func:`rows_of_rank` balancing ``weights`` (see there)."""
    w = np.asarray(weights, dtype=float)
    if w.size != math.ceil(n_pixels / block) or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"weights: one finite value >= 0 per block ({w.size} given)")
    total = float(w.sum())
    if total <= 0:
        return rows_of_rank(n_pixels, block, rank, size)
    mid = np.cumsum(w) - 0.5 * w
    owner = np.minimum((mid / total * size).astype(int), size - 1)
    mine = np.flatnonzero(owner == rank)
    if mine.size == 0:
        before = int(np.count_nonzero(owner < rank))
        return min(n_pixels, before * block), min(n_pixels, before * block)
    return min(n_pixels, int(mine[0]) * block), min(n_pixels, (int(mine[-1]) + 1) * block)
