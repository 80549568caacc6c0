"""Where the blocks of the one data pass run.

The contract is written once, in :mod:`unmix.executors.base`; :class:`SerialExecutor`
runs every block in this process.  :mod:`unmix.executors.mpi` (MPI ranks, each owning
whole scan lines), :mod:`unmix.executors.dask` (Dask workers) and
:mod:`unmix.executors.groups` (many fits dealt to groups of ranks) are imported on use,
since they pull in mpi4py or distributed.
"""

from __future__ import annotations

from ._packing import local_sums, packed_sum
from .base import Block, Executor, SerialExecutor, rows_of_rank

__all__ = [
    "Block",
    "Executor",
    "SerialExecutor",
    "local_sums",
    "packed_sum",
    "rows_of_rank",
]
