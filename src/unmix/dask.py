"""Documented import path of the Dask executor (see :mod:`unmix.executors.dask`)."""

from ._backend import to_numpy
from .blocks import default_block_size
from .executors.base import Block, rows_of_rank
from .executors.dask import DaskExecutor

# The helpers besides DaskExecutor were importable from here before the move; they stay.
__all__ = ["Block", "DaskExecutor", "default_block_size", "rows_of_rank", "to_numpy"]
