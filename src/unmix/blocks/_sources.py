"""Out-of-core input: ``X`` read block by block from HDF5, Zarr, Dask or a memory map.

:func:`unmix.factorize` accepts a 2-D file-backed or lazy array (an ``h5py.Dataset``, a
``zarr.Array``, a ``numpy.memmap``, a ``dask.array.Array`` such as the data of a lazy
HyperSpy / RosettaSciIO signal) as ``X`` (pixels, channels) and never loads it whole:
every pass reads it block by block (whole rows of the problem's block grid), so the
resident memory is the maps ``A`` (pixels x k), a few blocks and the small sums.  While
one block is computed the next is read in a background thread (a memory map asks the
kernel to read ahead instead).  float32 data stay float32, integers become float32.
``mask=`` and ``weights=`` (in memory) apply block by block as for in-memory ``X`` (the
file may hold NaN where the mask says missing); ``preprocessing=`` needs ``X`` in memory.

Blocks are computed where ``device=`` says: NumPy on the host by default, or a PyTorch /
CuPy device (``device="cuda"``), so data far larger than GPU memory, kept on disk or in
host memory, is streamed to the GPU once per pass (compute device != storage device).
The factors then live on that device.
"""

from __future__ import annotations

from typing import Any

import array_api_compat as aac
import numpy as np

from .._backend import Backend, compute_backend, to_numpy
from .._validation import check_nonnegative, check_positive, finite_report

__all__ = [
    "check_streamed",
    "is_streamable",
    "mean_row_norm",
    "streamed_backend",
]

#: Modules whose 2-D arrays are read block by block (and read ahead in a thread).
LAZY_MODULES = ("h5py", "zarr", "dask")


def is_streamable(X: Any) -> bool:
    """True for 2-D file-backed or lazy arrays (h5py, Zarr, Dask, NumPy memory maps)."""
    if isinstance(X, np.memmap):
        return X.ndim == 2
    if aac.is_dask_array(X):  # e.g. a lazy HyperSpy / RosettaSciIO signal's data
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
        and type(X).__module__.split(".")[0] in LAZY_MODULES
    )


def streamed_backend(X: Any, device: Any = None) -> tuple[Backend, Any]:
    """The backend that blocks of ``X`` are computed in (see :func:`compute_backend`)."""
    dtype = np.dtype(X.dtype)
    if dtype.kind == "O":
        raise TypeError("X has dtype object; pass a numeric dataset.")
    work = dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)
    if 0 in X.shape:
        raise ValueError(f"X is empty: shape {tuple(X.shape)} (pixels, channels).")
    return compute_backend(device, work), X


def check_streamed(data: Any, *, nonneg: bool, positive: str | None = None) -> None:
    """NaN/Inf and sign checks, one block at a time (the messages give global positions);
    ``positive``: the loss that also needs ``X > 0`` (Itakura-Saito), named in the message.
    The same pass sums ``X`` and ``X^2`` for the data's :meth:`mean` and :meth:`norm2`
    (a streamed file is read once for the three)."""
    sums = [0.0, 0.0]
    for b in data.blocks:
        Xb = data.x(b)
        try:
            finite_report(Xb)
            if nonneg:
                check_nonnegative(Xb, why="a non-negative model")
            if positive is not None:
                check_positive(Xb, why=positive)
        except ValueError as err:
            raise ValueError(f"{err} (in the rows {b.start}-{b.stop - 1} of the file)") from None
        data.note_block(b, Xb, sums)
    data.keep_pass_sums(sums)


def mean_row_scale(X: Any, beta: float = 2.0, *, rows: int = 4096) -> float:
    """How much the beta-divergence of a typical pixel moves per unit of a map, in
    float64: the mean over the rows (pixels) of ``X`` (pixels, channels) of
    ``sum_c |x_c| ** beta / ||x||_2`` (nonzero entries).

    The gradient of ``d_beta(x | a s)`` in ``a`` for a unit-norm endmember ``s`` near the
    pixel's own direction is of this size: ``||x||_2`` for Frobenius (``beta = 2``: the
    mean row norm, :func:`mean_row_norm`), ``||x||_1 / ||x||_2`` for KL (``beta = 1``:
    dimensionless, as the divergence is linear in the data's scale).  A penalty on the
    maps relative to it has the same strength whatever the loss and the data's unit.
    ``X`` is read ``rows`` rows at a time, so a file-backed or lazy ``X`` is never loaded
    whole.
    """
    return mean_row_scales(X, beta, rows=rows)[0]


def mean_row_scales(X: Any, beta: float, *, rows: int = 4096) -> tuple[float, float]:
    """``(mean_row_scale(X, beta), mean_row_norm(X))`` from one read of ``X``: their
    ratio is the divergence's curvature per unit of a map (Frobenius: 1), what a
    quadratic penalty on the maps is relative to."""
    n = int(X.shape[0])
    scales, norms = [], []
    for i in range(0, n, rows):
        b = np.abs(np.asarray(to_numpy(X[i : i + rows]), dtype=float))
        norm = np.sqrt(np.sum(b * b, axis=1))
        norms.append(norm)
        if beta == 2:
            scales.append(norm)
            continue
        power = np.sum(np.where(b > 0, b, 1.0) ** beta * (b > 0), axis=1)  # 0 ** beta: 0
        scales.append(np.where(norm > 0, power / np.where(norm > 0, norm, 1.0), 0.0))
    if not norms:
        return 0.0, 0.0
    return float(np.mean(np.concatenate(scales))), float(np.mean(np.concatenate(norms)))


def mean_row_norm(X: Any, *, rows: int = 4096) -> float:
    """Mean Euclidean norm of the rows (pixels) of ``X`` (pixels, channels), in float64:
    :func:`mean_row_scale` for Frobenius.  The typical pixel norm that scale-free
    penalties are relative to."""
    return mean_row_scale(X, 2.0, rows=rows)
