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
``.mat``                  :mod:`unmix.io._matlab` (MATLAB v4-v7.3: a cube, or a
                          ``(bands, pixels)`` matrix with its scan size)
``.dm3 .dm4 .emd .bcf``   :mod:`unmix.io` (RosettaSciIO; every format it reads)
``.mib .blo .wdf .msa``
a folder or a glob        :mod:`unmix.io._stack`: 2-D images (``.tif .png .jpg .dm3
                          .dm4 .npy``), one per channel, as ``(y, x, channel)``
========================  ===========================================================

Sparse files stay sparse (:mod:`unmix.io._sparse`): an ``.npz`` written by
``scipy.sparse.save_npz`` (CSR, CSC, COO) and an HDF5 group with ``data``/``indices``/
``indptr`` (the AnnData / h5sparse CSR layout) are read as CSR rows;
:meth:`SpectralImage.unfold` returns the CSR matrix and ``image.is_sparse`` is True.

HyperSpy signals convert both ways with :meth:`SpectralImage.to_hyperspy` and
:meth:`SpectralImage.from_hyperspy` (:mod:`unmix.spectral_image`).

Every reader returns a :class:`unmix.SpectralImage` whose ``metadata`` records ``source``
(absolute path), ``sha256`` (of the file; ``checksum=False`` skips it) and ``reader``.
Unreadable files raise :class:`CorruptFileError` (a ``ValueError``) naming the file; an
unknown extension raises :class:`UnsupportedFormatError` listing the supported ones.

Hostile or damaged files fail with a clear error, never a crash, a hang or a silent wrong
result: shapes a file declares are checked against its size and the memory budget before
anything is allocated (:class:`TooLargeError`, :func:`check_allocation`; the budget is 80 %
of the available memory or ``$UNMIX_MEMORY_BUDGET``); HDF5 data stored or linked outside
the file's folder is refused unless ``allow_external=True`` (:class:`UnsafeFileError`);
the Bruker ``.bcf`` parser runs in a child process (:class:`ReaderCrashError`); any other
exception a damaged file provokes becomes a :class:`CorruptFileError` naming the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from ..spectral_image import Axis, SpectralImage
from ._common import (
    CorruptFileError,
    ReaderCrashError,
    TooLargeError,
    UnsafeFileError,
    UnsupportedFormatError,
    check_allocation,
    check_file,
    memory_budget,
    sha256_of,
    sniff,
)
from ._h5safe import check_dataset, check_h5_file, open_dataset
from ._hdf5 import read_hdf5, read_hspy, read_zarr, write_hdf5, write_zarr
from ._imzml import read_imzml
from ._matlab import read_mat
from ._nanonis import read_3ds
from ._numpy import read_npy, read_npz, write_npy, write_npz
from ._rsciio import read_rsciio, rsciio_extensions
from ._stack import ImageStack, read_stack
from ._stackfiles import is_stack

__all__ = [
    "Axis",
    "CorruptFileError",
    "ImageStack",
    "ReaderCrashError",
    "SpectralImage",
    "TooLargeError",
    "UnsafeFileError",
    "UnsupportedFormatError",
    "check_allocation",
    "check_dataset",
    "check_h5_file",
    "is_stack",
    "load",
    "memory_budget",
    "open_dataset",
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
    "mat": ("matlab", read_mat),
}
#: readers that take ``allow_external`` (HDF5 data outside the file's folder)
_EXTERNAL = {"hdf5", "hspy", "rsciio"}
#: format options and the readers that take them; ``signal_ndim`` elsewhere is checked
#: against what the file says, the others are refused
_FORMAT_OPTIONS = {
    "signal_ndim": {"numpy", "hdf5", "zarr", "matlab"},
    "mz_bins": {"imzml"},
    "mz_range": {"imzml"},
    "channel_pattern": {"stack"},
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
    allow_external: bool = False,
    **kw: Any,
) -> SpectralImage:
    """Read a spectrum image; the format is chosen by the file extension.

    Parameters
    ----------
    path : str or PathLike
        The file, a ``.zarr`` directory, or a folder or glob of 2-D images (a stack).
    dataset : str, optional
        The array inside a container: an HDF5/Zarr path or an ``.npz`` key.
    signal : str or int, optional
        Which signal of a multi-signal file: a HyperSpy experiment title, a RosettaSciIO
        signal (title or index), a Nanonis channel (default ``"Current (A)"``).
    lazy : bool
        Keep HDF5/Zarr data on disk (``.npy`` is memory-mapped, RosettaSciIO returns dask
        arrays, an image stack is read by scan lines); other formats are read into memory.
        Close the image (or use ``with``) to release the file.
    checksum : bool
        Record the SHA-256 of the input in ``metadata["sha256"]`` (reads the file once).
    spatial_shape : sequence of int, optional
        Re-grid the pixels (C order), e.g. ``(11, 13)`` for a list of 143 spectra.
    allow_external : bool
        Accept HDF5 files whose data are stored or linked outside the file's own folder
        (external links, external storage, virtual datasets). Links to files in the same
        folder (EIGER / ARINA master files) are always accepted.
    **kw
        Format options: ``signal_ndim`` (NumPy/HDF5/Zarr: 1 or 2 trailing signal
        dimensions), ``mz_bins``/``mz_range`` (imzML), ``channel_pattern`` (image stacks),
        ``plugin`` (force a RosettaSciIO plugin, e.g. ``plugin="USID"`` for an ``.h5``);
        other keywords go to RosettaSciIO.

    Returns
    -------
    SpectralImage
        ``data`` of shape ``(*spatial_shape, *signal_shape)``; :meth:`SpectralImage.unfold`
        gives the ``(pixels, channels)`` matrix for :func:`unmix.factorize`.

    Raises
    ------
    FileNotFoundError
        No such file.
    CorruptFileError, UnsupportedFormatError, TooLargeError, UnsafeFileError
        ``ValueError`` subclasses naming the file and what to do.
    ReaderCrashError
        The ``.bcf`` parser crashed (an ``OSError`` and a ``CorruptFileError``).
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if is_stack(path):  # a folder or a glob of 2-D images, one per channel
        kw.update(dataset=dataset, signal=signal, lazy=lazy, checksum=checksum)
        return read_stack(path, spatial_shape=spatial_shape, **kw)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    check_file(path)
    ext = _extension(path)
    name, reader = _reader_for(path, ext, "plugin" in kw)
    _logger.info("reading %s with the %s reader", path, name)
    if name in _EXTERNAL:
        kw["allow_external"] = allow_external
    ndim = _format_options(path, name, kw)
    try:
        image = reader(path, dataset=dataset, signal=signal, lazy=lazy, **kw)
    except CorruptFileError as exc:
        hint = _content_hint(path, ext)
        if not hint:
            raise
        raise type(exc)(f"{exc}; {hint}") from exc
    _check_signal_ndim(path, image, ndim)
    _provenance(image, path, name, checksum)
    if spatial_shape is not None:
        image = image.with_spatial_shape(spatial_shape)
    return image


def _format_options(path: str, name: str, kw: dict) -> int | None:
    """Refuse format options the reader ``name`` does not take; ``signal_ndim`` for a
    format whose file says its axes is taken out of ``kw`` and returned, to be checked."""
    for option, readers in _FORMAT_OPTIONS.items():
        if option in kw and name not in readers and option != "signal_ndim":
            raise ValueError(
                f"{path}: {option}= applies to {', '.join(sorted(readers))} files only, "
                f"this one is read by the {name} reader; drop it"
            )
    if "signal_ndim" in kw and name not in _FORMAT_OPTIONS["signal_ndim"]:
        return int(kw.pop("signal_ndim"))
    return None


def _check_signal_ndim(path: str, image: SpectralImage, ndim: int | None) -> None:
    if ndim is not None and len(image.signal_shape) != ndim:
        raise ValueError(
            f"{path}: its signal has {len(image.signal_shape)} axes {image.signal_shape}, "
            f"not signal_ndim={ndim}; signal_ndim chooses only for plain arrays "
            "(.npy, .npz, HDF5, Zarr), where the file does not say"
        )


def _reader_for(path: str, ext: str, plugin: bool) -> tuple[str, Callable[..., SpectralImage]]:
    """The reader's name and function for ``ext`` (``plugin=``: RosettaSciIO)."""
    if plugin:
        return "rsciio", read_rsciio
    if ext in _READERS:
        return _READERS[ext]
    if ext in rsciio_extensions():
        return "rsciio", read_rsciio
    hint = "" if rsciio_extensions() else " (pip install 'unmix[io]' adds instrument formats)"
    raise UnsupportedFormatError(
        f"{path}: unknown extension {('.' + ext) if ext else '(none)'}; supported: "
        f"{', '.join('.' + e for e in supported_extensions())}{hint}"
    )


def _provenance(image: SpectralImage, path: str, name: str, checksum: bool) -> None:
    """Record the source, the reader and (with ``checksum``) the SHA-256 of the files."""
    md = image.metadata
    md["source"] = path
    md["reader"] = name if name != "rsciio" else f"rsciio:{md.get('rsciio_plugin', '')}"
    if checksum:
        md["sha256"] = sha256_of(path)
        companions = md.get("companion_files") or []
        if companions:
            md["sha256_companions"] = {p: sha256_of(p) for p in companions}


def _content_hint(path: str, ext: str) -> str:
    """'its content looks like ...' when the first bytes say another format."""
    found = sniff(path)
    if found is None or "." + ext in found[1].lower().split(" or "):
        return ""
    if found[1] == ".h5 or .hspy" and ext in ("h5", "hdf5", "hspy", "nxs", "emd"):
        return ""
    return f"its content looks like {found[0]} file: rename it to {found[1]}"


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
