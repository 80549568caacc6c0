"""Documented import path of the Dask executor (see :mod:`unmix.executors.dask`)."""

from .executors.dask import DaskExecutor

__all__ = ["DaskExecutor"]
