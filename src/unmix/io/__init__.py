"""Readers (and a few writers) for spectrum images: :func:`load` dispatches on the extension.

========================  ===========================================================
extension                 reader
========================  ===========================================================
``.npy``, ``.npz``        :mod:`unmix.io`
``.h5 .hdf5 .nxs``        :mod:`unmix.io` (generic; HyperSpy files recognized)
``.hspy``                 :mod:`unmix.io` (HyperSpy, read with h5py)
``.zarr`` (directory)     :mod:`unmix.io` (needs ``zarr``)
``.3ds``                  :mod:`unmix.io._nanonis` (Nanonis grid spectroscopy)
``.imzml``                :mod:`unmix.io._imzml` (mass spectrometry imaging)
``.dm3 .dm4 .emd .bcf``   :mod:`unmix.io` (RosettaSciIO; every format it reads)
``.mib .blo .wdf .msa``
========================  ===========================================================

HyperSpy signals convert both ways with :meth:`SpectralImage.to_hyperspy` and
:meth:`SpectralImage.from_hyperspy` (:mod:`unmix.spectral_image`).

Every reader returns a :class:`unmix.SpectralImage` whose ``metadata`` records ``source``
(absolute path), ``sha256`` (of the file; ``checksum=False`` skips it) and ``reader``.
Unreadable files raise :class:`CorruptFileError` (a ``ValueError``) naming the file; an
unknown extension raises :class:`UnsupportedFormatError` listing the supported ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from ..spectral_image import Axis, SpectralImage
from ._common import CorruptFileError, UnsupportedFormatError, sha256_of
from ._hdf5 import read_hdf5, read_hspy, read_zarr, write_hdf5, write_zarr
from ._imzml import read_imzml
from ._nanonis import read_3ds
from ._numpy import read_npy, read_npz, write_npy, write_npz
from ._rsciio import read_rsciio, rsciio_extensions

__all__ = [
    "Axis",
    "CorruptFileError",
    "SpectralImage",
    "UnsupportedFormatError",
    "load",
    "save",
    "supported_extensions",
]

_logger = logging.getLogger(__name__)

_READERS: dict[str, tuple[str, Callable[..., SpectralImage]]] = {
    "npy": ("numpy", read_npy),
    "npz": ("numpy", read_npz),
    "h5": ("hdf5", read_hdf5),
    "hdf5": ("hdf5", read_hdf5),
    "nxs": ("hdf5", read_hdf5),
    "hspy": ("hspy", read_hspy),
    "zarr": ("zarr", read_zarr),
    "3ds": ("nanonis", read_3ds),
    "imzml": ("imzml", read_imzml),
}
_WRITERS: dict[str, Callable[[SpectralImage, str], None]] = {
    "npy": write_npy,
    "npz": write_npz,
    "h5": write_hdf5,
    "hdf5": write_hdf5,
    "zarr": write_zarr,
}


def supported_extensions() -> list[str]:
    """Every extension :func:`load` reads (RosettaSciIO's only when it is installed)."""
    return sorted(set(_READERS) | set(rsciio_extensions()))


def _extension(path: str) -> str:
    ext = os.path.splitext(path.rstrip("/\\"))[1].lstrip(".").lower()
    if not ext and os.path.isdir(path):
        names = set(os.listdir(path))
        if names & {".zgroup", ".zarray", "zarr.json"}:
            return "zarr"
    return ext


def load(
    path: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    signal: str | int | None = None,
    lazy: bool = False,
    checksum: bool = True,
    spatial_shape: Sequence[int] | None = None,
    **kw: Any,
) -> SpectralImage:
    """Read a spectrum image; the format is chosen by the file extension.

    Parameters
    ----------
    path : str or PathLike
        The file (or ``.zarr`` directory).
    dataset : str, optional
        The array inside a container: an HDF5/Zarr path or an ``.npz`` key.
    signal : str or int, optional
        Which signal of a multi-signal file: a HyperSpy experiment title, a RosettaSciIO
        signal (title or index), a Nanonis channel (default ``"Current (A)"``).
    lazy : bool
        Keep HDF5/Zarr data on disk (``.npy`` is memory-mapped, RosettaSciIO returns dask
        arrays); other formats are read into memory. Close the image (or use ``with``) to
        release the file.
    checksum : bool
        Record the SHA-256 of the input in ``metadata["sha256"]`` (reads the file once).
    spatial_shape : sequence of int, optional
        Re-grid the pixels (C order), e.g. ``(11, 13)`` for a list of 143 spectra.
    **kw
        Format options: ``signal_ndim`` (NumPy/HDF5/Zarr: 1 or 2 trailing signal
        dimensions), ``mz_bins``/``mz_range`` (imzML), ``plugin`` (force a RosettaSciIO
        plugin, e.g. ``plugin="USID"`` for an ``.h5``), other keywords go to RosettaSciIO.

    Returns
    -------
    SpectralImage
        ``data`` of shape ``(*spatial_shape, *signal_shape)``; :meth:`SpectralImage.unfold`
        gives the ``(pixels, channels)`` matrix for :func:`unmix.factorize`.
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    ext = _extension(path)
    if "plugin" in kw:
        name, reader = "rsciio", read_rsciio
    elif ext in _READERS:
        name, reader = _READERS[ext]
    elif ext in rsciio_extensions():
        name, reader = "rsciio", read_rsciio
    else:
        hint = "" if rsciio_extensions() else " (pip install 'unmix[io]' adds instrument formats)"
        raise UnsupportedFormatError(
            f"{path}: unknown extension {('.' + ext) if ext else '(none)'}; supported: "
            f"{', '.join('.' + e for e in supported_extensions())}{hint}"
        )
    _logger.info("reading %s with the %s reader", path, name)
    image = reader(path, dataset=dataset, signal=signal, lazy=lazy, **kw)
    md = image.metadata
    md["source"] = path
    md["reader"] = name if name != "rsciio" else f"rsciio:{md.get('rsciio_plugin', '')}"
    if checksum:
        md["sha256"] = sha256_of(path)
        companions = md.get("companion_files") or []
        if companions:
            md["sha256_companions"] = {p: sha256_of(p) for p in companions}
    if spatial_shape is not None:
        image = image.with_spatial_shape(spatial_shape)
    return image


def save(image: SpectralImage, path: str | os.PathLike[str]) -> None:
    """Write ``image`` to ``.npz``, ``.h5``/``.hdf5`` or ``.zarr`` (axes and title kept).

    ``.npy`` stores the data array only. :func:`load` reads all of them back.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path.rstrip("/\\"))[1].lstrip(".").lower()
    if ext not in _WRITERS:
        raise UnsupportedFormatError(
            f"{path}: cannot write .{ext}; use one of {', '.join('.' + e for e in _WRITERS)}"
        )
    _WRITERS[ext](image, path)
