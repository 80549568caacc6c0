"""Documented import path of the MPI executor (see :mod:`unmix.executors.mpi`)."""

from .executors.mpi import MPIExecutor, check_groups, local_sums, packed_sum

__all__ = ["MPIExecutor", "check_groups", "local_sums", "packed_sum"]
