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

from ._backend import to_numpy
from .executor import Block, rows_of_rank

__all__ = ["MPIExecutor"]


def _to_host64(value: Any) -> tuple[np.ndarray, Any]:
    if isinstance(value, (int, float, np.floating, np.integer)):
        return np.array(float(value)), None
    if aac.is_array_api_obj(value) and not isinstance(value, np.ndarray):
        return np.asarray(to_numpy(value), dtype=np.float64), value
    return np.asarray(value, dtype=np.float64), None


def _back(result: np.ndarray, like: Any, original: Any) -> Any:
    if like is None:
        return float(result) if result.ndim == 0 and not hasattr(original, "shape") else result
    xp = aac.array_namespace(like)
    return xp.asarray(result, dtype=like.dtype, device=aac.device(like))


def local_sums(kernel: Callable[[Block], dict], blocks: Sequence[Block]) -> dict:
    """The kernel's outputs summed over this process's blocks (zeros when it has none)."""
    local: dict[str, Any] = {}
    for block in blocks or [Block(0, 0, 0)]:
        for key, value in kernel(block).items():
            local[key] = value if key not in local else local[key] + value
    return local


def packed_sum(local: dict, allreduce: Callable[[np.ndarray], np.ndarray]) -> dict:
    """Sum every process's ``local`` arrays with ONE all-reduce of a packed float64 buffer.

    ``allreduce`` sums a 1-D float64 host array over the processes; the results come back
    in each value's own namespace, dtype and device (numbers stay numbers).
    """
    keys = sorted(local)
    hosts = [_to_host64(local[key]) for key in keys]
    flat = np.concatenate([h.reshape(-1) for h, _ in hosts]) if hosts else np.zeros(0)
    total = allreduce(flat)
    out, at = {}, 0
    for key, (host, like) in zip(keys, hosts, strict=True):
        part = total[at : at + host.size].reshape(host.shape)
        at += host.size
        out[key] = _back(part, like, local[key])
    return out


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

    def partition(self, n_pixels: int, block: int) -> tuple[int, int]:
        """Whole blocks of ``block`` pixels (whole scan lines), spread evenly over the ranks.

        Every rank gets the blocks a serial run would have, so the answer equals the serial
        one up to the order of the float64 sums.  With more ranks than blocks some ranks own
        no rows; they still take part in every reduction (with zeros).
        """
        self.rows = rows_of_rank(n_pixels, block, self.rank, self.size)
        return self.rows

    def allreduce(self, value: Any) -> Any:
        """Sum ``value`` (a number or an array of any backend) over the ranks, in float64."""
        host, like = _to_host64(value)
        out = np.empty_like(host)
        t0 = time.perf_counter()
        self.comm.Allreduce(host, out, op=self.MPI.SUM)
        self.seconds_reduced += time.perf_counter() - t0
        self.bytes_reduced += host.nbytes
        return _back(out, like, value)

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
