"""MATLAB ``.mat`` spectrum images (v4/v5/v7 through SciPy, v7.3 through HDF5).

Hyperspectral scenes and many lab pipelines are passed around as ``.mat`` files in one of
two layouts, both read here (spatial dimensions first, as :class:`unmix.SpectralImage`):

- a **cube** ``(rows, cols, bands)`` (Indian Pines, Pavia, Salinas, most exports), or a
  4-D ``(rows, cols, det_y, det_x)`` array; read as it is indexed in MATLAB;
- a **matrix** ``Y`` of ``(bands, pixels)`` (the unmixing literature's ``Y = M A``: Samson,
  Jasper Ridge, Urban, Moffett) or ``(pixels, bands)``, with the scan size in scalar
  variables (``lines``/``cols``, ``nRow``/``nCol``, ``rows``/``cols``, ``H``/``W``,
  ``height``/``width``).  MATLAB numbers pixels down the columns (column-major): pixel
  ``p`` is row ``p mod rows``, column ``p div rows``; the image is put back in that
  order.  Without the size, the spectra are read as a list along the longer axis
  (``--shape`` re-grids them).

The data variable is ``dataset=`` or the numeric array with the most entries; a 1-D
variable named like a wavelength axis (``wavelength(s)``, ``wl``, ``lambda``, ``energy``)
with one value a band becomes the signal axis.  Variable shapes are read from the header
first and checked against the memory budget before anything is loaded.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from ..spectral_image import Axis, SpectralImage
from ._common import (
    CorruptFileError,
    UnsupportedFormatError,
    check_allocation,
    check_numeric,
    choose,
    guarded,
    image_from_array,
    nbytes_of,
    read_into_memory,
)

__all__ = ["read_mat"]

_logger = logging.getLogger(__name__)

#: scalar variables holding the scan's rows and columns, as (rows, cols) name pairs
_GRID_NAMES = (
    ("lines", "cols"),
    ("lines", "samples"),
    ("nrow", "ncol"),
    ("nrows", "ncols"),
    ("rows", "cols"),
    ("h", "w"),
    ("height", "width"),
)
_AXIS_NAMES = ("wavelength", "wavelengths", "wl", "lambda", "wavenumber", "energy")


@guarded("MATLAB .mat file")
def read_mat(
    path: str,
    *,
    dataset: str | None = None,
    signal: str | int | None = None,
    lazy: bool = False,
    signal_ndim: int | None = None,
) -> SpectralImage:
    """Read a ``.mat`` file; ``dataset=`` names the data variable (module docstring)."""
    read_into_memory(path, signal, lazy, ".mat", "variables")
    key, variables = _read_variables(path, dataset)
    data = np.asarray(variables.pop(key))
    check_numeric(data.dtype, f"{path}: variable {key!r}")
    meta: dict[str, Any] = {
        "title": os.path.splitext(os.path.basename(path))[0],
        "mat_variable": key,
    }
    if data.ndim == 2 and signal_ndim in (None, 1):
        data = _as_pixels_by_bands(path, data, variables)
    image = image_from_array(data, path, signal_ndim=signal_ndim, metadata=meta)
    axis = _signal_axis(variables, image)
    if axis is not None:
        image.signal_axes = [axis]
    return image


# ------------------------------------------------------------------ the file
#: MATLAB classes read as data, and the NumPy dtype of each (for the memory budget)
_DTYPES = {"double": "f8", "single": "f4", "int8": "i1", "uint8": "u1", "int16": "i2",
           "uint16": "u2", "int32": "i4", "uint32": "u4", "int64": "i8", "uint64": "u8",
           "logical": "u1"}  # fmt: skip


def _read_variables(path: str, dataset: str | None) -> tuple[str, dict[str, Any]]:
    """The data variable's name, and it with the small variables (scan size, axis), in
    MATLAB's index order; shapes come from the header, checked against the budget first."""
    import h5py
    import scipy.io

    if h5py.is_hdf5(path):  # v7.3: an HDF5 file (after a 512-byte MATLAB header)
        from ._h5safe import open_h5

        with open_h5(path) as f:
            key, names = _wanted(path, _h5_shapes(f), dataset)
            return key, {n: np.asarray(f[n][()]).transpose() for n in names}  # axes reversed
    try:
        listed = scipy.io.whosmat(path)
    except (ValueError, OSError, TypeError, NotImplementedError) as exc:
        raise CorruptFileError(f"{path}: not a readable MATLAB .mat file ({exc})") from exc
    shapes = {name: (tuple(int(s) for s in shape), cls) for name, shape, cls in listed}
    key, names = _wanted(path, shapes, dataset)
    return key, dict(scipy.io.loadmat(path, variable_names=names, squeeze_me=False))


def _h5_shapes(f: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (MATLAB shape, class)}`` of a v7.3 file's variables."""
    out = {}
    for name, obj in f.items():
        if hasattr(obj, "shape") and not name.startswith("#"):
            cls = obj.attrs.get("MATLAB_class", "double")
            cls = cls.decode("ascii", "replace") if isinstance(cls, bytes) else str(cls)
            out[name] = (tuple(int(s) for s in reversed(obj.shape)), cls)
    return out


def _wanted(path: str, shapes: dict, dataset: str | None) -> tuple[str, list[str]]:
    """The data variable (budget checked) and the names to read: it and the small ones."""
    key = _data_variable(path, shapes, dataset)
    shape, cls = shapes[key]
    check_allocation(nbytes_of(shape, np.dtype(_DTYPES.get(cls, "u1"))), f"{path}: {key}")
    small = [n for n, (s, c) in shapes.items() if n != key and c in _DTYPES and np.prod(s) < 1e6]
    return key, [key, *small]


def _data_variable(path: str, shapes: dict, dataset: str | None) -> str:
    """``dataset`` or the numeric variable of 2+ dimensions with the most entries."""
    names = list(shapes)
    if dataset is not None:
        described = [_listing({n: shapes[n]}) for n in names]
        return names[choose(names, dataset, path, "variable", "dataset", described)]
    arrays = [
        n
        for n, (shape, cls) in shapes.items()
        if cls in _DTYPES and sum(s > 1 for s in shape) >= 2
    ]
    if not arrays:
        raise UnsupportedFormatError(
            f"{path}: no numeric variable of two or more dimensions; it holds "
            f"{_listing(shapes) or 'nothing'}. A spectrum image is a (rows, cols, bands) "
            "cube or a (bands, pixels) matrix"
        )
    return max(arrays, key=lambda n: int(np.prod(shapes[n][0])))


def _listing(shapes: dict) -> str:
    return "; ".join(f"{n} {'x'.join(map(str, s))} {c}" for n, (s, c) in shapes.items())


# ------------------------------------------------------------------ the layout
def _scalar(variables: dict, name: str) -> int | None:
    for key, value in variables.items():
        if key.lower() == name and np.size(value) == 1:
            v = np.asarray(value).ravel()[0]
            if np.issubdtype(np.asarray(v).dtype, np.number) and float(v) == int(v) and v >= 1:
                return int(v)
    return None


def _grid(variables: dict) -> tuple[int, int] | None:
    for rows, cols in _GRID_NAMES:
        h, w = _scalar(variables, rows), _scalar(variables, cols)
        if h is not None and w is not None:
            return h, w
    return None


def _as_pixels_by_bands(path: str, Y: np.ndarray, variables: dict) -> np.ndarray:
    """A 2-D variable as ``(rows, cols, bands)`` (scan size given) or ``(pixels, bands)``."""
    grid = _grid(variables)
    if grid is not None:
        h, w = grid
        if Y.shape[1] == h * w:  # (bands, pixels): the literature's Y
            Y = Y.T
        elif Y.shape[0] != h * w:
            raise CorruptFileError(
                f"{path}: the scan is {h} x {w} = {h * w} pixels, but the data variable is "
                f"{Y.shape[0]} x {Y.shape[1]}; pass dataset= (the data) or fix the sizes"
            )
        # MATLAB numbers the pixels down the columns: p = row + h * col
        return np.ascontiguousarray(Y.reshape(w, h, Y.shape[1]).transpose(1, 0, 2))
    if Y.shape[1] > Y.shape[0]:  # no size: the longer axis holds the spectra
        Y = Y.T
    _logger.info("%s: no scan size in the file; read as %d spectra of %d bands", path, *Y.shape)
    return np.ascontiguousarray(Y)


def _signal_axis(variables: dict, image: SpectralImage) -> Axis | None:
    if len(image.signal_axes) != 1:
        return None
    for key, value in variables.items():
        v = np.asarray(value)
        if key.lower() in _AXIS_NAMES and v.size == image.n_channels and v.size > 1:
            values = v.astype(float).ravel()
            if np.all(np.isfinite(values)):
                return Axis.from_values(key, values, "", navigate=False)
    return None
