"""Sparse spectrum images: SciPy ``.npz`` archives and CSR groups in HDF5.

Two layouts are read into a :class:`~unmix.spectral_image.SpectralImage` whose data is a
:class:`~unmix._sparse_cube.SparseCube` (CSR rows, never densified):

- an ``.npz`` written by ``scipy.sparse.save_npz`` (members ``format``, ``shape`` and
  ``data``/``indices``/``indptr`` for CSR and CSC, ``data``/``row``/``col`` for COO), rows
  = pixels, columns = channels; optional extra members ``spatial_shape`` (the scan grid),
  ``axis``/``axis_name``/``axis_units`` (the channel axis) as for dense archives;
- an HDF5 group holding ``data``, ``indices`` and ``indptr`` (1-D) with the matrix shape
  in the group's ``shape`` or ``h5sparse_shape`` attribute or a ``shape`` member (the
  AnnData / h5sparse CSR layout), and optionally a ``spatial_shape`` attribute.

Every declared size is checked against the memory budget before it is read, and the
index arrays are checked (``indptr`` non-decreasing from 0 to ``nnz``, column indices in
range): a damaged file is refused, never half-read.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._sparse_cube import SparseCube
from ..spectral_image import Axis, SpectralImage
from ._common import CorruptFileError, UnsupportedFormatError, check_allocation, plain

__all__ = ["csr_groups", "is_sparse_npz", "read_csr_group", "sparse_npz_image"]

#: the members a ``scipy.sparse.save_npz`` archive has besides its arrays
_NPZ_KEYS = {"format", "shape", "data"}


def is_sparse_npz(keys: Any) -> bool:
    """True for the members of a ``scipy.sparse.save_npz`` archive."""
    return _NPZ_KEYS <= set(keys)


def sparse_npz_image(path: str, arrays: dict[str, np.ndarray]) -> SpectralImage:
    """The image of a ``scipy.sparse.save_npz`` archive (see the module)."""
    fmt = np.asarray(arrays["format"]).ravel()[:1].tolist()
    fmt = fmt[0].decode() if fmt and isinstance(fmt[0], bytes) else str(fmt[0] if fmt else "")
    shape = _matrix_shape(path, arrays["shape"])
    try:
        if fmt in ("csr", "csc"):
            cls = sp.csr_array if fmt == "csr" else sp.csc_array
            parts = (arrays["data"], arrays["indices"], arrays["indptr"])
            M = cls(parts, shape=shape)
            M.check_format(full_check=True)
        elif fmt == "coo":
            M = sp.coo_array((arrays["data"], (arrays["row"], arrays["col"])), shape=shape)
            _check_coo(M, shape)
        else:
            raise UnsupportedFormatError(
                f"{path}: a sparse {fmt!r} matrix; unmix reads CSR, CSC and COO archives "
                "(convert with scipy.sparse.save_npz(path, X.tocsr()))"
            )
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        if isinstance(exc, UnsupportedFormatError):
            raise
        raise CorruptFileError(f"{path}: not a valid sparse {fmt} matrix ({exc})") from exc
    meta = {"title": os.path.splitext(os.path.basename(path))[0]}
    return _image(path, sp.csr_array(M), arrays.get("spatial_shape"), arrays, meta)


def csr_groups(f: Any) -> list[str]:
    """Names of the HDF5 groups of ``f`` that hold a CSR matrix (see the module)."""
    import h5py

    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and all(
            isinstance(obj.get(m), h5py.Dataset) for m in ("data", "indices", "indptr")
        ):
            found.append(name)

    f.visititems(visit)
    return found


def read_csr_group(group: Any, path: str) -> SpectralImage:
    """The image of an HDF5 CSR group (its three arrays read whole, after checks)."""
    shape = _group_shape(group, path)
    data, indices, indptr = (group[m] for m in ("data", "indices", "indptr"))
    for ds in (data, indices, indptr):
        if ds.ndim != 1:
            raise CorruptFileError(f"{path}: {ds.name} must be 1-D, it is {ds.shape}")
    total = sum(int(ds.size) * ds.dtype.itemsize for ds in (data, indices, indptr))
    check_allocation(total, f"{path}: the sparse matrix {group.name} ({data.size:,} values)")
    try:
        M = sp.csr_array((data[...], indices[...], indptr[...]), shape=shape)
        M.check_format(full_check=True)
    except (ValueError, TypeError, OSError) as exc:
        raise CorruptFileError(f"{path}: {group.name} is not a valid CSR matrix ({exc})") from exc
    grid = group.attrs.get("spatial_shape")
    meta = {"title": plain(group.attrs.get("title", "")) or os.path.basename(path)}
    return _image(path, M, grid, {}, meta)


def _image(
    path: str, M: Any, grid: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any]
) -> SpectralImage:
    """CSR ``M`` (pixels, channels) on the scan grid ``grid`` (or a line), with its axis."""
    if not (np.issubdtype(M.dtype, np.number) or M.dtype == np.bool_) or np.iscomplexobj(M):
        raise UnsupportedFormatError(f"{path}: sparse values of dtype {M.dtype} are not real")
    if M.dtype not in (np.float32, np.float64):
        M = M.astype(np.float32)
    M.sum_duplicates()
    n, m = (int(s) for s in M.shape)
    spatial = (n,) if grid is None else tuple(int(s) for s in np.asarray(grid).ravel())
    if math.prod(spatial) != n or any(s < 1 for s in spatial):
        raise CorruptFileError(f"{path}: spatial_shape {spatial} does not hold the {n} rows")
    signal = None
    if "axis" in arrays:
        values = np.asarray(arrays["axis"], dtype=float).ravel()
        if values.size != m:
            raise CorruptFileError(f"{path}: 'axis' has {values.size} values, {m} channels")
        name = str(arrays.get("axis_name", "channel"))
        units = str(arrays.get("axis_units", ""))
        signal = [Axis.from_values(name, values, units, navigate=False)]
    cube = SparseCube(M, (*spatial, m))
    return SpectralImage(cube, signal_axes=signal, metadata=meta, signal_ndim=1)


def _matrix_shape(path: str, value: Any) -> tuple[int, int]:
    shape = tuple(int(s) for s in np.asarray(value).ravel())
    if len(shape) != 2 or min(shape) < 1:
        raise CorruptFileError(f"{path}: a sparse matrix needs a 2-D shape, not {shape}")
    return shape  # type: ignore[return-value]


def _group_shape(group: Any, path: str) -> tuple[int, int]:
    for key in ("shape", "h5sparse_shape"):
        if key in group.attrs:
            return _matrix_shape(path, group.attrs[key])
    if "shape" in group and getattr(group["shape"], "size", 0) == 2:
        return _matrix_shape(path, group["shape"][...])
    raise CorruptFileError(
        f"{path}: the CSR group {group.name} does not say its shape (a 'shape' attribute)"
    )


def _check_coo(M: Any, shape: tuple[int, int]) -> None:
    for idx, size in ((M.row, shape[0]), (M.col, shape[1])):
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= size):
            raise ValueError("an index lies outside the declared shape")
