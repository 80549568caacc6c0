"""Documented import path of the MPI executor (see :mod:`unmix.executors.mpi`)."""

from ._backend import to_numpy
from .executors.base import Block, rows_of_rank
from .executors.mpi import MPIExecutor, check_groups, local_sums, packed_sum

# Block, rows_of_rank and to_numpy were importable from here before the move; they stay.
__all__ = [
    "Block",
    "MPIExecutor",
    "check_groups",
    "local_sums",
    "packed_sum",
    "rows_of_rank",
    "to_numpy",
]
