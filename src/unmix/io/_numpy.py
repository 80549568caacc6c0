"""NumPy ``.npy`` and ``.npz`` spectrum images.

Array conventions (spatial dimensions first, see :class:`unmix.SpectralImage`):

- 2-D ``(pixels, channels)``: a list of spectra, spatial shape ``(pixels,)``;
- 3-D ``(rows, cols, channels)``: a spectrum image;
- 4-D ``(rows, cols, det_y, det_x)``: 4D-STEM, a 2-D signal per pixel.

``signal_ndim=`` overrides the split (e.g. 4-D ``(z, y, x, channels)`` with
``signal_ndim=1``). An ``.npz`` holds the array under ``data`` (or ``dataset=`` names the
key, or it is the only array of two or more dimensions) and optionally the signal axis as
``axis`` (coordinates), ``axis_name`` and ``axis_units``, as in the shared EDS, Raman and XRD
files; files written by :func:`write_npz` also carry every axis (``axes_json``) and the
title and signal type (``metadata_json``).

Only the headers are trusted first: the shape and dtype each ``.npy`` (or ``.npz`` member)
declares are checked against the bytes that really follow (a truncated file is refused
before anything is allocated) and against the memory budget
(:func:`unmix.io._common.check_allocation`); arrays of Python objects are never loaded.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
import zlib
from typing import Any

import numpy as np

from ..spectral_image import Axis, SpectralImage
from ._common import (
    CorruptFileError,
    TooLargeError,
    UnsupportedFormatError,
    axes_from_json,
    axes_to_json,
    check_allocation,
    check_numeric,
    choose,
    guarded,
    image_from_array,
    nbytes_of,
    plain,
    read_into_memory,
)
from ._sparse import is_sparse_npz, sparse_npz_image

__all__ = ["npy_header", "read_npy", "read_npz", "write_npy", "write_npz"]

_logger = logging.getLogger(__name__)

_READ_ERRORS = (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error, KeyError)
_AXIS_KEYS = {"data", "axis", "axis_name", "axis_units", "axes_json", "metadata_json"}
#: deflate expands at most ~1032-fold: a member declaring more than this is a lie
_MAX_DEFLATE_RATIO = 1100

#: signal type guessed from the signal axis units or name (npz files carry no type)
_GUESS = (
    (("kev",), "EDS"),
    (("1/cm", "cm-1", "cm^-1", "raman"), "Raman"),
    (("2theta", "2θ", "two theta"), "XRD"),
    (("m/z",), "MSI"),
    (("energy loss",), "EELS"),
)


def _guess_signal_type(axis: Axis) -> str:
    text = f"{axis.units} {axis.name}".lower()
    for needles, kind in _GUESS:
        if any(n in text for n in needles):
            return kind
    return ""


def npy_header(fp: Any, what: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and header length of an ``.npy`` stream; only the header is read.

    Raises :class:`CorruptFileError` for a stream that is not ``.npy`` or a damaged header
    and :class:`UnsupportedFormatError` for arrays of Python objects (pickles).
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp)
        else:
            raise ValueError(f"format version {version} is not supported")
        offset = fp.tell()
    except (ValueError, EOFError, SyntaxError, TypeError, OSError) as exc:
        raise CorruptFileError(
            f"{what}: not a readable .npy file ({exc}); check that it was fully written "
            "with numpy.save and holds a numeric array"
        ) from exc
    if any(int(n) < 0 for n in shape):
        raise CorruptFileError(f"{what}: the .npy header declares a negative shape {shape}")
    if dtype.hasobject:
        raise UnsupportedFormatError(
            f"{what} holds Python objects (pickled data), which unmix never loads (loading "
            "them can run code); save a numeric array instead"
        )
    return tuple(int(n) for n in shape), dtype, offset


def _declared(what: str, shape: tuple, dtype: np.dtype, have: int) -> int:
    """Bytes the header declares; refuse when fewer follow (a truncated file)."""
    need = nbytes_of(shape, dtype)
    if have < need:
        raise CorruptFileError(
            f"{what}: not a readable .npy file (truncated: its header declares an array "
            f"{shape} {dtype} of {need} bytes but only {have} bytes follow); the write or "
            "the copy stopped early: copy or save it again"
        )
    if have > need:
        _logger.warning("%s: %d bytes after the array are ignored", what, have - need)
    return need


@guarded(".npy file")
def read_npy(
    path: str,
    *,
    dataset: str | None = None,
    signal: str | int | None = None,
    lazy: bool = False,
    signal_ndim: int | None = None,
) -> SpectralImage:
    """Read an ``.npy`` array (memory-mapped when ``lazy``); see the module docstring."""
    _only_data(path, dataset, signal)
    with open(path, "rb") as fp:
        shape, dtype, offset = npy_header(fp, path)
    check_numeric(dtype, path)
    need = _declared(path, shape, dtype, os.path.getsize(path) - offset)
    if not lazy:
        check_allocation(need, f"{path}: the array {shape} {dtype}")
    try:
        data = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise CorruptFileError(
            f"{path}: not a readable .npy file ({exc}); check that it was fully written "
            "with numpy.save and holds a numeric array"
        ) from exc
    title = os.path.splitext(os.path.basename(path))[0]
    return image_from_array(data, path, signal_ndim=signal_ndim, metadata={"title": title})


@guarded(".npz archive")
def read_npz(
    path: str,
    *,
    dataset: str | None = None,
    signal: str | int | None = None,
    lazy: bool = False,
    signal_ndim: int | None = None,
) -> SpectralImage:
    """Read an ``.npz`` archive; ``dataset=`` names the array key (default ``data``).

    An archive written by ``scipy.sparse.save_npz`` is read as a sparse image
    (:mod:`unmix.io._sparse`): CSR rows, never densified."""
    read_into_memory(path, signal, lazy, ".npz", "members")
    try:
        keys = _npz_members(path)
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in keys}
    except (TooLargeError, CorruptFileError, UnsupportedFormatError):
        raise
    except _READ_ERRORS as exc:
        raise CorruptFileError(
            f"{path}: not a readable .npz archive ({type(exc).__name__}: {exc}); the file "
            "may be truncated or not written by numpy.savez"
        ) from exc
    if dataset is None and is_sparse_npz(arrays):
        return sparse_npz_image(path, arrays)  # scipy.sparse.save_npz: kept sparse
    key = _data_key(path, arrays, dataset)
    data = arrays[key]
    check_numeric(data.dtype, f"{path}: array {key!r}")
    meta: dict[str, Any] = {"title": os.path.splitext(os.path.basename(path))[0]}
    if "metadata_json" in arrays:
        meta.update(_json_object(path, arrays["metadata_json"]))
    if "axes_json" in arrays and key == "data":
        axes = axes_from_json(arrays["axes_json"], data.shape, path)
        return image_from_array(data, path, axes=axes, metadata=meta)
    image = image_from_array(data, path, signal_ndim=signal_ndim, metadata=meta)
    if "axis" in arrays and key == "data" and len(image.signal_axes) == 1:
        values = _axis_values(path, arrays["axis"])
        if values.size != image.n_channels:
            raise CorruptFileError(
                f"{path}: 'axis' has {values.size} values but 'data' has {image.n_channels} "
                "channels in its last dimension"
            )
        name = str(arrays.get("axis_name", "channel"))
        units = str(arrays.get("axis_units", ""))
        image.signal_axes = [Axis.from_values(name, values, units, navigate=False)]
        if not image.metadata.get("signal_type"):
            image.metadata["signal_type"] = _guess_signal_type(image.signal_axes[0])
    extra = {k: plain(v) for k, v in arrays.items() if k != key and k not in _AXIS_KEYS}
    if extra:
        image.metadata["extra"] = extra
    return image


def _npz_members(path: str) -> list[str]:
    """The ``.npy`` members of an archive, their headers checked before any is loaded."""
    if not zipfile.is_zipfile(path):
        raise CorruptFileError(
            f"{path}: not a readable .npz archive (not a zip file); the file may be "
            "truncated or not written by numpy.savez"
        )
    keys, total = [], 0
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                _logger.warning("%s: member %r is not an array; ignored", path, info.filename)
                continue
            what = f"{path}: member {info.filename!r}"
            with zf.open(info) as fp:
                shape, dtype, offset = npy_header(fp, what)
            need = _declared(what, shape, dtype, info.file_size - offset)
            ratio = need / max(1, info.compress_size)
            if info.compress_type != zipfile.ZIP_STORED and ratio > _MAX_DEFLATE_RATIO:
                raise CorruptFileError(
                    f"{what} declares {need} bytes from {info.compress_size} compressed: "
                    "more than compression can hold; the archive is damaged"
                )
            total += need
            keys.append(info.filename[:-4])
    check_allocation(total, f"{path}: its arrays")
    return keys


def _json_object(path: str, value: Any) -> dict[str, Any]:
    try:
        out = json.loads(str(value))
    except ValueError as exc:
        raise CorruptFileError(f"{path}: unreadable metadata_json ({exc})") from exc
    if not isinstance(out, dict):
        raise CorruptFileError(f"{path}: metadata_json is not a JSON object")
    return out


def _axis_values(path: str, value: Any) -> np.ndarray:
    try:
        values = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise CorruptFileError(f"{path}: 'axis' does not hold numbers ({exc})") from exc
    if not np.isfinite(values).all():
        raise CorruptFileError(f"{path}: 'axis' holds NaN or infinite values")
    return values


def _data_key(path: str, arrays: dict[str, np.ndarray], dataset: str | None) -> str:
    keys = list(arrays)
    if dataset is not None:
        if dataset not in arrays:
            raise ValueError(f"{path}: no array {dataset!r}; it holds {keys}")
        return dataset
    if "data" in arrays:
        return "data"
    big = [k for k in keys if arrays[k].ndim >= 2]
    if len(big) == 1:
        return big[0]
    if not big:
        raise CorruptFileError(f"{path}: no array with 2 or more dimensions among {keys}")
    desc = [f"{k} {arrays[k].shape} {arrays[k].dtype}" for k in big]
    return big[choose(big, None, path, "array", "dataset", desc)]


def _only_data(path: str, dataset: Any, signal: Any) -> None:
    if dataset is not None or signal is not None:
        raise ValueError(f"{path}: an .npy file holds one array; drop dataset= and signal=")


def write_npy(image: SpectralImage, path: str) -> None:
    """Save the data array only (axes and metadata are lost; use :func:`write_npz`)."""
    np.save(path, np.asarray(image.data[...]), allow_pickle=False)


def write_npz(image: SpectralImage, path: str, *, compress: bool = False) -> None:
    """Save data, axes and title/type/quantity/units to an ``.npz`` (read by :func:`read_npz`).

    For a 1-D signal the signal axis is also stored as ``axis``, ``axis_name`` and
    ``axis_units`` so that other tools can read it without unmix.
    """
    md = image.metadata
    meta = {k: str(md.get(k, "")) for k in ("title", "signal_type", "quantity", "units")}
    arrays: dict[str, Any] = {
        "data": np.asarray(image.data[...]),
        "axes_json": np.array(axes_to_json(image.axes)),
        "metadata_json": np.array(json.dumps(meta)),
    }
    if len(image.signal_axes) == 1:
        ax = image.signal_axes[0]
        arrays.update(axis=ax.values, axis_name=np.array(ax.name), axis_units=np.array(ax.units))
    (np.savez_compressed if compress else np.savez)(path, **arrays)
