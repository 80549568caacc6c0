"""The data side of the one data pass: ``X`` cut into pixel blocks.

:class:`PixelData` (in memory), :class:`StreamedData` (read block by block from HDF5,
Zarr, Dask or a memory map, optionally onto a compute device) and :class:`LowRankData`
(a truncated SVD standing in for ``X``) and :class:`SparsePixelData` (CSR ``X``,
never densified whole; :class:`DeviceSparsePixelData` the same for a torch sparse tensor on
its device) share one product interface, so a solver's
kernel is written once.  :class:`Weights` are the loss's entry weights.
"""

from __future__ import annotations

from ..executors.base import Block
from ._lowrank import LowRankData
from ._pixels import MeanFilled, PixelData, RowScaled, Weights, default_block_size
from ._scaled import ScaledData, curvature_scales, poisson_scales
from ._scanrows import ScanRows, block_ranges, sample_rows
from ._sources import (
    LAZY_MODULES,
    check_streamed,
    is_streamable,
    mean_row_norm,
    mean_row_scale,
    mean_row_scales,
    streamed_backend,
)
from ._sparse import (
    SparsePixelData,
    as_csr_rows,
    check_sparse_finite,
    entry_rows,
    is_sparse,
    with_data,
)
from ._sparse_device import (
    DeviceCSR,
    DeviceSparsePixelData,
    as_device_csr,
    check_device_sparse_finite,
    checked_sparse_rows,
    is_device_sparse,
)
from ._stats import BlockProducts, DataStats, block_products, compiled_for, data_stats
from ._streamed import RowRange, StreamedData, read_ahead

__all__ = [
    "LAZY_MODULES",
    "Block",
    "BlockProducts",
    "DataStats",
    "DeviceCSR",
    "DeviceSparsePixelData",
    "LowRankData",
    "MeanFilled",
    "PixelData",
    "RowRange",
    "RowScaled",
    "ScaledData",
    "ScanRows",
    "SparsePixelData",
    "StreamedData",
    "Weights",
    "as_csr_rows",
    "as_device_csr",
    "block_products",
    "block_ranges",
    "check_device_sparse_finite",
    "check_sparse_finite",
    "check_streamed",
    "checked_sparse_rows",
    "compiled_for",
    "curvature_scales",
    "data_stats",
    "default_block_size",
    "entry_rows",
    "is_device_sparse",
    "is_sparse",
    "is_streamable",
    "mean_row_norm",
    "mean_row_scale",
    "mean_row_scales",
    "poisson_scales",
    "read_ahead",
    "sample_rows",
    "streamed_backend",
    "with_data",
]
