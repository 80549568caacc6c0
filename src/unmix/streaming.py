"""Out-of-core input: ``X`` read block by block from HDF5, Zarr or a memory map.

:func:`unmix.factorize` accepts a 2-D file-backed array (an ``h5py.Dataset``, a
``zarr.Array``, a ``numpy.memmap``) as ``X`` (pixels, channels) and never loads it whole:
every pass reads it block by block (whole rows, aligned to the storage chunks), so the
resident memory is the maps ``A`` (pixels x k), a few blocks and the small sums.  The
factors are NumPy arrays; float32 data stay float32, integers become float32.
"""

from __future__ import annotations

from typing import Any

import array_api_compat as aac
import array_api_compat.numpy as np_xp
import numpy as np

from ._backend import Backend
from ._validation import check_nonnegative, finite_report

__all__ = ["check_streamed", "is_streamable", "streamed_backend"]


def is_streamable(X: Any) -> bool:
    """True for 2-D file-backed arrays (h5py / Zarr datasets, NumPy memory maps)."""
    if isinstance(X, np.memmap):
        return X.ndim == 2
    if aac.is_array_api_obj(X) or isinstance(X, (list, tuple)):
        return False
    if getattr(X, "_unmix_streamable", False):  # e.g. a Dask worker's rows of X
        return True
    shape = getattr(X, "shape", None)
    return (
        shape is not None
        and len(shape) == 2
        and hasattr(X, "dtype")
        and hasattr(X, "__getitem__")
        and type(X).__module__.split(".")[0] in ("h5py", "zarr")
    )


def streamed_backend(X: Any) -> tuple[Backend, Any]:
    """The (NumPy, host) backend that blocks of ``X`` are computed in, and ``X`` itself."""
    dtype = np.dtype(X.dtype)
    if dtype.kind == "O":
        raise TypeError("X has dtype object; pass a numeric dataset.")
    work = dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)
    if 0 in X.shape:
        raise ValueError(f"X is empty: shape {tuple(X.shape)} (pixels, channels).")
    return Backend(xp=np_xp, device="cpu", dtype=work, acc_dtype=np.float64), X


def check_streamed(data: Any, *, nonneg: bool) -> None:
    """NaN/Inf and sign checks, one block at a time (the messages give global positions)."""
    for b in data.blocks:
        Xb = data.x(b)
        try:
            finite_report(Xb)
            if nonneg:
                check_nonnegative(Xb, why="a non-negative model")
        except ValueError as err:
            raise ValueError(f"{err} (in the rows {b.start}-{b.stop - 1} of the file)") from None
