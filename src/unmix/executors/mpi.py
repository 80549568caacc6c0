"""MPI executor: each rank owns whole scan lines; one all-reduce of the small sums.

Run any script that calls :func:`unmix.factorize` under ``mpiexec -n N`` with
``executor=unmix.mpi.MPIExecutor()``: every rank reads only its rows of ``X`` (pass the
HDF5/Zarr dataset itself for data larger than one node's memory), keeps its rows of the
maps ``A``, and per iteration the ranks exchange only the ``k x (channels + k)`` sums
(``A^T X`` and ``A^T A``), summed in float64 so that the answer does not depend on the
number of ranks beyond rounding.  ``pip install "unmix[mpi]"`` brings mpi4py and the
MPICH wheel; on a cluster the site's MPI works with the same code.

The result's ``A`` holds this rank's rows (``result.rows`` says which);
:meth:`MPIExecutor.gather_rows` collects the full maps on rank 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat as aac
import numpy as np

from .._backend import to_numpy
from .._ops import line_window
from ._packing import from_host64, local_sums, packed_sum, to_host64
from .base import Block, rows_of_rank

__all__ = ["MPIExecutor", "check_groups", "local_sums", "packed_sum"]


class MPIExecutor:
    """Pixels split over the ranks of an MPI communicator.

    Parameters
    ----------
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``; use ``comm.Split`` for sub-problems.

    Attributes
    ----------
    bytes_reduced : int
        Payload bytes this rank has contributed to all-reduces (for the cost model).
    seconds_reduced : float
        Wall seconds this rank has spent in all-reduces (communication plus waiting for
        slower ranks).
    """

    distributed = True

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.bytes_reduced = 0
        self.seconds_reduced = 0.0
        self.rows: tuple[int, int] | None = None

    def partition(self, n_pixels: int, block: int, weights: Any = None) -> tuple[int, int]:
        """Whole blocks of ``block`` pixels (whole scan lines), spread evenly over the ranks
        (by count, or by ``weights`` a block: the nonzeros of sparse ``X``).

        Every rank gets the blocks a serial run would have, so the answer equals the serial
        one up to the order of the float64 sums.  With more ranks than blocks some ranks own
        no rows; they still take part in every reduction (with zeros).
        """
        self.rows = rows_of_rank(n_pixels, block, self.rank, self.size, weights)
        return self.rows

    def allreduce(self, value: Any) -> Any:
        """Sum ``value`` (a number or an array of any backend) over the ranks, in float64."""
        host, like = to_host64(value)
        out = np.empty_like(host)
        t0 = time.perf_counter()
        self.comm.Allreduce(host, out, op=self.MPI.SUM)
        self.seconds_reduced += time.perf_counter() - t0
        self.bytes_reduced += host.nbytes
        return from_host64(out, like, value)

    def allreduce_max(self, value: float) -> float:
        """The maximum of a number over the ranks."""
        return float(self.comm.allreduce(float(value), op=self.MPI.MAX))

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        self.comm.Barrier()

    def allgather(self, value: Any) -> list:
        """Every rank's (small, picklable) ``value``, in rank order."""
        return self.comm.allgather(value)

    def map_reduce(self, kernel: Callable[[Block], dict], blocks: Sequence[Block]) -> dict:
        """Local blocks in order, then one all-reduce of all returned arrays, packed."""
        return packed_sum(local_sums(kernel, blocks), self.allreduce)

    def gather_rows(self, A: Any) -> Any:
        """All ranks' rows of ``A`` stacked on rank 0 (None elsewhere)."""
        parts = self.comm.gather(np.asarray(to_numpy(A)), root=0)
        return np.concatenate(parts, axis=0) if self.rank == 0 else None

    def __repr__(self) -> str:
        return f"MPIExecutor(rank={self.rank}, size={self.size})"

    # ------------------------------------------------------------------ halo exchange
    #: payload bytes this rank has sent in halo exchanges (for the cost model)
    bytes_halo = 0
    #: wall seconds this rank has spent in halo exchanges
    seconds_halo = 0.0

    @property
    def rows(self) -> tuple[int, int] | None:
        """This rank's ``[start, stop)`` rows of ``X`` (set by :meth:`partition`)."""
        return self.__dict__.get("_rows")

    @rows.setter
    def rows(self, value: tuple[int, int] | None) -> None:
        # every rank partitions together, so every rank forgets the layout together
        self.__dict__["_rows"], self.__dict__["_layout"] = value, None

    def halo(self, A: Any, width: int, row_len: int) -> tuple[Any, Any]:
        """The other ranks' rows of the maps within ``width`` scan lines of this rank's.

        Parameters
        ----------
        A : array (n_local, k)
            This rank's rows of the maps (the rows :meth:`partition` gave it); any backend.
        width : int
            Scan lines wanted on each side.
        row_len : int
            Pixels a scan line (``spatial_shape[-1]`` in 2-D; for an N-D grid the pixels
            one step apart along its first axis).

        Returns
        -------
        above, below : arrays (n_above, k) and (n_below, k)
            The rows just before and just after this rank's, such that
            ``concat([above, A, below])`` is whole scan lines: ``width`` lines beyond the
            lines this rank touches, clipped to the grid (see
            :func:`unmix._ops.line_window`).  Empty at the grid's edges and on a rank that
            owns no rows.  Same namespace, dtype and device as ``A``.

        Notes
        -----
        Collective: every rank calls it.  The rows come from whichever ranks own them -
        the previous and the next rank, or farther ones where a neighbour owns fewer than
        ``width`` lines - in ``Sendrecv`` rounds ``d = 1, 2, ...`` with ranks ``r - d``
        and ``r + d``, so uneven splits and ranks without rows need no special case.  A
        rank sends and receives about ``2 * width * row_len * k * itemsize`` bytes.
        """
        if self.rows is None:
            raise RuntimeError(
                "MPIExecutor.halo needs this rank's rows: call partition(n_pixels, block) "
                "first (factorize does)."
            )
        start, stop = self.rows
        if len(A.shape) != 2 or A.shape[0] != stop - start:
            raise ValueError(
                f"MPIExecutor.halo: A has shape {tuple(A.shape)} but this rank owns the "
                f"{stop - start} rows {start}..{stop}; pass this rank's rows of the maps."
            )
        t0 = time.perf_counter()
        layout = self.__dict__.get("_layout")
        if layout is None:  # once a partition: every rank's rows
            layout = tuple((int(s), int(e)) for s, e in self.comm.allgather((start, stop)))
            self.__dict__["_layout"] = layout
        key = (layout, int(width), int(row_len))
        plans = self.__dict__.setdefault("_halo_plans", {})
        if key not in plans:
            plans[key] = _halo_plan(layout, self.rank, int(width), int(row_len))
        above, below = self._halo_rounds(A, plans[key])
        self.seconds_halo += time.perf_counter() - t0
        return _like(above, A), _like(below, A)

    def _halo_rounds(self, A: Any, rounds: list) -> tuple[np.ndarray, np.ndarray]:
        """Run the ``Sendrecv`` rounds of a halo plan; rows of farther ranks come first.

        Only the rows sent are copied to the host (``A`` may live on a GPU).
        """
        null, k = self.MPI.PROC_NULL, int(A.shape[1])
        dtype = np.asarray(to_numpy(A[:0])).dtype

        def host(rows: tuple[int, int]) -> np.ndarray:
            return np.ascontiguousarray(to_numpy(A[rows[0] : rows[1]]), dtype=dtype)

        above, below = [], []
        for d, (down, n_above, up, n_below) in enumerate(rounds, start=1):
            recv = np.empty((n_above, k), dtype=dtype)
            send = host(down)
            self.comm.Sendrecv(
                send,
                dest=self.rank + d if send.shape[0] else null,
                sendtag=_TAG_DOWN,
                recvbuf=recv,
                source=self.rank - d if n_above else null,
                recvtag=_TAG_DOWN,
            )
            above.insert(0, recv)
            self.bytes_halo += send.nbytes
            recv = np.empty((n_below, k), dtype=dtype)
            send = host(up)
            self.comm.Sendrecv(
                send,
                dest=self.rank - d if send.shape[0] else null,
                sendtag=_TAG_UP,
                recvbuf=recv,
                source=self.rank + d if n_below else null,
                recvtag=_TAG_UP,
            )
            below.append(recv)
            self.bytes_halo += send.nbytes
        empty = np.empty((0, k), dtype=dtype)
        return (
            np.concatenate(above, axis=0) if above else empty,
            np.concatenate(below, axis=0) if below else empty,
        )

    # ------------------------------------------------------------------ groups of ranks
    def split(self, n_groups: int) -> tuple[int, MPIExecutor]:
        """Split the ranks into ``n_groups`` groups of consecutive ranks, one executor each.

        For many independent fits (rank selection, restarts): each group runs its own
        fits, and within a group a fit's pixels are split over the group's ranks.  Group
        ``g`` holds the ranks ``r`` with ``r * n_groups // size == g``: consecutive ranks
        (usually on the same node), sizes differing by at most one (``mpiexec -n 3`` in two
        groups: ranks 0, 1 and rank 2).

        Parameters
        ----------
        n_groups : int
            Number of groups, from 1 (all ranks together) to the number of ranks (every
            rank alone).

        Returns
        -------
        group : int
            This rank's group, ``0 <= group < n_groups``.
        executor : MPIExecutor
            An executor on the group's sub-communicator (its ``rank`` is this rank's place
            in the group); call :meth:`free` when done with it.

        Raises
        ------
        ValueError
            ``n_groups`` below 1 or above the number of ranks.

        Notes
        -----
        Collective over this executor's communicator (``MPI_Comm_split``).
        """
        n_groups = check_groups(n_groups, self.size)
        group = self.rank * n_groups // self.size
        return group, MPIExecutor(self.comm.Split(color=group, key=self.rank))

    def allgather_items(self, items: Sequence[Any]) -> list:
        """Every rank's list of (picklable) ``items``, concatenated in rank order.

        One pickled all-gather per position in the lists (each rank sends at most one item
        per round), so results as large as whole maps never form one huge message.
        Collective: every rank calls it, with its own (possibly empty) list.
        """
        items = list(items)
        rounds = int(self.allreduce_max(len(items)))
        per_rank: list[list] = [[] for _ in range(self.size)]
        for i in range(rounds):
            sent = (True, items[i]) if i < len(items) else (False, None)
            for q, (has, item) in enumerate(self.comm.allgather(sent)):
                if has:
                    per_rank[q].append(item)
        return [item for part in per_rank for item in part]

    def broadcast(self, value: Any, root: int = 0) -> Any:
        """Rank ``root``'s (picklable) ``value`` on every rank."""
        return self.comm.bcast(value, root=root)

    def free(self) -> None:
        """Release the communicator of an executor made by :meth:`split` (collective)."""
        if self.comm not in (self.MPI.COMM_WORLD, self.MPI.COMM_SELF):
            self.comm.Free()


_TAG_DOWN, _TAG_UP = 7401, 7402


def _like(host: np.ndarray, A: Any) -> Any:
    """``host`` in ``A``'s namespace and device (NumPy stays NumPy)."""
    if isinstance(A, np.ndarray):
        return host
    xp = aac.array_namespace(A)
    return xp.asarray(host, device=aac.device(A))


def _halo_plan(layout: tuple, rank: int, width: int, line: int) -> list:
    """The ``Sendrecv`` rounds of :meth:`MPIExecutor.halo` for ``rank``.

    ``layout`` holds every rank's ``[start, stop)`` rows (contiguous, in rank order).
    Round ``d`` holds ``(down, n_above, up, n_below)``: the local rows ``down`` to send to
    rank ``rank + d``, the count to receive from ``rank - d``, the local rows ``up`` to send
    to ``rank - d`` and the count to receive from ``rank + d``.  All ranks compute the same
    number of rounds (the farthest any rank must reach).
    """
    from bisect import bisect_left, bisect_right

    n, size = max(e for _, e in layout), len(layout)
    wins = [line_window(s, e, n, width, line) for s, e in layout]
    starts, stops = [s for s, _ in layout], [e for _, e in layout]
    reach = 0
    for q, ((s, e), (lo, hi)) in enumerate(zip(layout, wins, strict=True)):
        if lo < s:
            reach = max(reach, q - bisect_right(stops, lo))
        if hi > e:
            reach = max(reach, bisect_left(starts, hi) - 1 - q)

    def rows_of(q: int, lo: int, hi: int) -> tuple[int, int]:
        """Rank ``q``'s rows within ``[lo, hi)``, local to ``q``."""
        if not 0 <= q < size:
            return 0, 0
        s, e = layout[q]
        a, b = max(s, lo), min(e, hi)
        return (a - s, b - s) if b > a else (0, 0)

    def count(rows: tuple[int, int]) -> int:
        return rows[1] - rows[0]

    (start, stop), (lo, hi) = layout[rank], wins[rank]
    rounds = []
    for d in range(1, reach + 1):
        below, above = rank + d, rank - d
        down = rows_of(rank, wins[below][0], layout[below][0]) if below < size else (0, 0)
        up = rows_of(rank, layout[above][1], wins[above][1]) if above >= 0 else (0, 0)
        n_above = count(rows_of(above, lo, start))
        n_below = count(rows_of(below, stop, hi))
        rounds.append((down, n_above, up, n_below))
    return rounds


def check_groups(n_groups: Any, n_ranks: int) -> int:
    """``n_groups`` as an int in ``[1, n_ranks]``, or a ValueError that says what to pass."""
    try:
        groups = int(n_groups)
    except (TypeError, ValueError):
        groups = 0
    if groups != n_groups or not 1 <= groups <= n_ranks:
        raise ValueError(
            f"groups={n_groups!r} does not fit the {n_ranks} MPI rank(s) of the executor's "
            f"communicator: pass an integer from 1 (every fit on all ranks) to {n_ranks} "
            "(every rank fits alone), or start more ranks (mpiexec -n N)."
        )
    return groups
