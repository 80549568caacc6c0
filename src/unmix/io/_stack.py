"""A folder (or a glob) of 2-D images, one per channel, read as one spectrum image.

X-ray diffraction microscopy records one image per Q, EFTEM one per energy-loss window,
ToF-SIMS one per mass: :func:`read_stack` puts them side by side as a ``(y, x, channel)``
:class:`~unmix.SpectralImage` (the unfolded ``X`` is ``(pixels, channels)``, one pixel's
values across the images per row). :func:`unmix.io.load` calls it for a folder that is not
a Zarr store, or for a glob pattern (``"scan_*.tif"``) that names no file.

Images: TIFF (``tifffile``), PNG / JPEG (Pillow, grey-level modes only), ``.dm3``/``.dm4``
(RosettaSciIO) and 2-D ``.npy``. Every image must have the same shape and dtype; any other
file in a folder is refused (select the images with a glob instead). Hidden files and the
sidecars below are skipped.

The channel axis, in this order of precedence:

1. a sidecar in the images' folder: ``channels.csv`` / ``channels.txt`` (one value per
   image in the images' order, optionally after a header line ``name,unit``, e.g.
   ``q,1/nm``) or ``axis.json`` (``{"name", "units", "values"}`` or ``{"name", "units",
   "offset", "scale"}``);
2. ``channel_pattern=``: a template with ``{value}`` (``"q_{value}nm.tif"``) or a regular
   expression with one group, matched against each file name: the images are sorted by
   the numbers it captures, which become the axis values;
3. otherwise the images are sorted by the natural order of the names (``img_2`` before
   ``img_10``; by value when every name holds one number, or one number that varies), and
   those numbers are the axis values when they are distinct; else the axis is the index.

What reading costs (``lazy=True`` keeps the stack on disk as an :class:`ImageStack`, whose
``chunks`` are one scan line; ``unmix.factorize(ScanRows(image.data, 2), k)`` streams it
by blocks of scan lines (:class:`unmix.blocks.ScanRows`), as the CLI's out-of-core path
does):

- uncompressed TIFF and ``.npy``: memory-mapped; a block of scan lines reads only those
  rows of each image;
- ``.dm3``/``.dm4``: RosettaSciIO's lazy reader (a memory map for the usual uncompressed
  files): also only those rows;
- compressed TIFF, PNG, JPEG: each image is decoded whole and kept in a cache of at most a
  quarter of the memory budget; when the stack does not fit the cache, every pass over
  the data decodes every image again for each block of scan lines (slow: convert the
  stack to HDF5, ``unmix.io.save``, for repeated fits).

Without ``lazy`` the whole stack is read into memory (checked against the memory budget).
Provenance in ``metadata``: ``source`` (the folder or glob), ``files`` (names relative to
their common folder, the first :data:`MAX_LISTED` then a count), ``n_files``,
``reader="stack"``, ``channel_source`` and, with ``checksum``, ``sha256`` over the files'
names and bytes (and the sidecar's), read in chunks.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..preprocessing._lines import take_lines
from ..spectral_image import Axis, SpectralImage
from ._common import (
    CorruptFileError,
    UnsupportedFormatError,
    check_allocation,
    check_file,
    check_numeric,
    memory_budget,
    nbytes_of,
)
from ._stackfiles import (
    channel_order,
    find_sidecar,
    image_kind,
    read_sidecar,
    stack_files,
    stack_sha256,
)

__all__ = ["MAX_LISTED", "ImageStack", "read_stack"]

_logger = logging.getLogger(__name__)

#: how many file names ``metadata["files"]`` lists
MAX_LISTED = 100
_PILLOW_DTYPES = {
    "L": np.uint8,
    "I;16": np.uint16,
    "I;16L": np.uint16,
    "I;16B": np.uint16,
    "I": np.int32,
    "F": np.float32,
}


# ------------------------------------------------------------------ one image
class _Plane:
    """One 2-D image file: its shape, dtype and rows (memory-mapped or decoded)."""

    def __init__(self, path: str, shape: tuple[int, ...], dtype: Any, rows: Any) -> None:
        self.path = path
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.mapped = rows  # an array that reads rows on demand, or None: decode whole
        self.axes: list[dict] = []

    def decode(self) -> np.ndarray:
        """The whole image in memory."""
        try:
            if image_kind(self.path) == "tifffile":
                import tifffile

                return np.asarray(tifffile.imread(self.path))
            from PIL import Image

            with Image.open(self.path) as im:
                return np.asarray(im)
        except (ImportError, MemoryError):
            raise
        except Exception as exc:  # damaged compressed data
            raise CorruptFileError(
                f"{self.path}: decoding the image failed ({type(exc).__name__}: {exc}); the "
                "file is damaged: replace or remove it"
            ) from exc


def _open_plane(path: str) -> _Plane:
    """Read the header of one image (no pixels unless the format needs it)."""
    opener = {
        "tifffile": _open_tiff,
        "Pillow": _open_pillow,
        "RosettaSciIO": _open_dm,
        "NumPy": _open_npy,
    }[image_kind(path)]
    check_file(path)  # empty, or not a regular file
    try:
        plane = opener(path)
    except (UnsupportedFormatError, CorruptFileError, ImportError):
        raise
    except Exception as exc:  # any decoding failure of a damaged file
        raise CorruptFileError(
            f"{path}: not a readable {image_kind(path)} image ({type(exc).__name__}: {exc}); "
            "the file is damaged or not the format its extension says: replace or remove it"
        ) from exc
    if len(plane.shape) != 2:
        raise UnsupportedFormatError(
            f"{path}: holds an array of shape {plane.shape}, not one 2-D image; a stack "
            "takes one 2-D grey image per file (save each image or channel in its own "
            "file, or remove this one)"
        )
    check_numeric(plane.dtype, f"{path}: the image")
    return plane


def _open_tiff(path: str) -> _Plane:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape, dtype, offset = series.shape, series.dtype, series.dataoffset
    rows = None
    if len(shape) == 2 and offset is not None:
        try:
            rows = tifffile.memmap(path, mode="r")
        except ValueError:  # compressed or scattered strips: decoded whole
            rows = None
    return _Plane(path, shape, np.dtype(dtype).newbyteorder("="), rows)


def _open_pillow(path: str) -> _Plane:
    from PIL import Image

    with Image.open(path) as im:
        mode, (width, height) = im.mode, im.size
    if mode not in _PILLOW_DTYPES:
        raise UnsupportedFormatError(
            f"{path}: a {mode} (colour or palette) image, not a grey-level one; convert it "
            "to greyscale (Pillow: Image.open(f).convert('L').save(f)) or save each colour "
            "channel in its own file"
        )
    return _Plane(path, (height, width), _PILLOW_DTYPES[mode], None)


def _open_npy(path: str) -> _Plane:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return _Plane(path, arr.shape, np.dtype(arr.dtype).newbyteorder("="), arr)


def _open_dm(path: str) -> _Plane:
    from rsciio.digitalmicrograph import file_reader

    signals = file_reader(path, lazy=True)
    if len(signals) != 1:
        raise UnsupportedFormatError(
            f"{path}: holds {len(signals)} images; a stack takes one image per file"
        )
    data = signals[0]["data"]
    plane = _Plane(path, data.shape, np.dtype(data.dtype).newbyteorder("="), data)
    plane.axes = list(signals[0].get("axes", []))
    return plane


# ------------------------------------------------------------------ the stack
class ImageStack:
    """``(y, x, channel)`` array over 2-D image files, read on demand.

    Indexing reads only the rows of the images (channels) it needs: ``stack[a:b]`` reads
    rows ``a:b`` of every image. Use :class:`unmix.blocks.ScanRows` on it for the
    unfolded ``X`` (pixels, channels) read by scan lines.

    Parameters
    ----------
    planes : sequence of image files
        Opened by :func:`read_stack`, in channel order; all of one shape and dtype.
    cache_bytes : int, keyword-only
        Memory for images that cannot be memory-mapped (decoded whole, least recently
        used dropped first).

    Attributes
    ----------
    shape : tuple of int
        ``(y, x, channels)``.
    chunks : tuple of int
        ``(1, x, channels)``: one scan line.
    files : list of str
        The image files, one per channel.
    reads : int
        Values read so far (for tests and benchmarks).
    decodes : int
        Images decoded whole so far (formats that cannot be memory-mapped).
    """

    ndim = 3

    def __init__(self, planes: Sequence[Any], *, cache_bytes: int) -> None:
        self._planes = list(planes)
        ny, nx = self._planes[0].shape
        self.shape = (ny, nx, len(self._planes))
        self.dtype = self._planes[0].dtype
        self.chunks = (1, nx, len(self._planes))
        self.files = [p.path for p in self._planes]
        self.reads = 0
        self.decodes = 0
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._cache_bytes = max(int(cache_bytes), ny * nx * self.dtype.itemsize)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def nbytes(self) -> int:
        return nbytes_of(self.shape, self.dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<ImageStack {self.shape} {self.dtype}: {len(self.files)} files>"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        ky, kx, kc = _expand(key)
        cs = np.arange(self.shape[2])[kc]
        c_idx = np.atleast_1d(cs)
        block = take_lines(ky, self.shape[0], lambda lo, hi: self._block(lo, hi, c_idx))
        block = block[..., kx, :]
        return block[..., 0] if np.ndim(cs) == 0 else block

    def _block(self, lo: int, hi: int, c_idx: np.ndarray) -> np.ndarray:
        """Rows ``lo .. hi - 1`` of the channels ``c_idx``: each image read once."""
        nx = self.shape[1]
        if hi == lo or c_idx.size == 0:
            return np.empty((hi - lo, nx, c_idx.size), self.dtype)
        chans = np.unique(c_idx)
        block = np.empty((hi - lo, nx, chans.size), self.dtype)
        for j, c in enumerate(chans):
            block[:, :, j] = self._rows(int(c), lo, hi)
        if not np.array_equal(chans, c_idx):
            block = block[:, :, np.searchsorted(chans, c_idx)]
        return block

    def _rows(self, c: int, lo: int, hi: int) -> np.ndarray:
        if self._closed:
            raise ValueError(
                f"the image stack of {os.path.dirname(self.files[0])} is closed; load it again"
            )
        plane = self._planes[c]
        if plane.mapped is not None:
            rows = np.asarray(plane.mapped[lo:hi])
        else:
            rows = self._decoded(c)[lo:hi]
        with self._lock:
            self.reads += rows.size
        return rows

    def _decoded(self, c: int) -> np.ndarray:
        with self._lock:
            if c in self._cache:
                self._cache.move_to_end(c)
                return self._cache[c]
        image = self._planes[c].decode()
        if image.shape != self._planes[c].shape:
            raise CorruptFileError(
                f"{self.files[c]}: decoded as {image.shape}, its header said "
                f"{self._planes[c].shape}; the file is damaged: replace or remove it"
            )
        with self._lock:
            self.decodes += 1
            self._cache[c] = image
            while sum(a.nbytes for a in self._cache.values()) > self._cache_bytes:
                self._cache.popitem(last=False)
        return image

    def close(self) -> None:
        """Drop the decoded images and the memory maps."""
        with self._lock:
            self._cache.clear()
            self._closed = True
        for plane in self._planes:
            plane.mapped = None


def _expand(key: Any) -> tuple[Any, Any, Any]:
    """``key`` as three per-axis indices (int, slice or 1-D integer / boolean array)."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is None for k in key):
        raise TypeError("ImageStack indexing: no np.newaxis (None); index the result")
    if sum(k is Ellipsis for k in key) > 1:
        raise IndexError("ImageStack indexing: at most one Ellipsis (...)")
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1 :]
    if len(key) > 3:
        raise IndexError(f"ImageStack indexing: {len(key)} indices for 3 axes (y, x, channel)")
    key = key + (slice(None),) * (3 - len(key))
    return tuple(np.asarray(k) if isinstance(k, (list, np.ndarray)) else k for k in key)


# ------------------------------------------------------------------ the reader
def read_stack(
    path: str,
    *,
    lazy: bool = False,
    checksum: bool = True,
    channel_pattern: str | None = None,
    spatial_shape: Sequence[int] | None = None,
    dataset: str | None = None,
    signal: str | int | None = None,
    **kw: Any,
) -> SpectralImage:
    """Read a folder or a glob of 2-D images as one ``(y, x, channel)`` spectrum image.

    Parameters
    ----------
    path : str
        A folder of images, or a glob pattern such as ``"/data/scan_*.tif"``.
    lazy : bool, keyword-only
        Keep the images on disk (an :class:`ImageStack`, read by scan lines); else the
        stack is read into memory (within the memory budget).
    checksum : bool, keyword-only
        Record in ``metadata["sha256"]`` the SHA-256 of the file names and bytes (and of
        the sidecar), read in chunks.
    channel_pattern : str, optional, keyword-only
        ``"q_{value}nm.tif"`` or a regular expression with one group: the channel value in
        each file name (see the module's notes for the other ways).
    spatial_shape : sequence of int, optional, keyword-only
        Another scan grid for the same pixels (:meth:`SpectralImage.with_spatial_shape`).
    dataset, signal
        Refused: they pick an array inside one file.
    **kw
        ``signal_ndim=1`` and ``allow_external`` are accepted; anything else is refused.

    Returns
    -------
    SpectralImage
        ``data`` of shape ``(y, x, channels)``; :meth:`~SpectralImage.unfold` gives ``X``
        (pixels, channels).

    Raises
    ------
    FileNotFoundError, UnsupportedFormatError, CorruptFileError, TooLargeError
        Naming the odd file (shape, dtype, format) and what to do.
    """
    _refuse(path, dataset, signal, kw)
    files, folder = stack_files(path)
    files, values, how = channel_order(files, channel_pattern)
    name, units, sidecar = "channel", "", find_sidecar(folder)
    if sidecar is not None:
        values, name, units = read_sidecar(sidecar, len(files))
        how = f"sidecar {os.path.basename(sidecar)}"
    planes = [_open_plane(f) for f in files]
    _check_alike(planes)
    stack = ImageStack(planes, cache_bytes=memory_budget() // 4 if lazy else 0)
    if not lazy:
        check_allocation(
            stack.nbytes,
            f"{path}: the stack {stack.shape} {stack.dtype}",
            hint="pass lazy=True (the images are read by scan lines), or set "
            "UNMIX_MEMORY_BUDGET if more memory is really available",
        )
    if values is None:
        axis = Axis(name, len(files), navigate=False)
    else:
        axis = Axis.from_values(name, values, units=units)
    meta = _metadata(path, files, folder, how, sidecar, checksum)
    _logger.info("stack %s: %s %s, channels from %s", path, stack.shape, stack.dtype, how)
    data, file = (stack, stack) if lazy else (stack[...], None)
    image = SpectralImage(data, _spatial_axes(planes[0]), [axis], meta, file=file)
    return image if spatial_shape is None else image.with_spatial_shape(spatial_shape)


def _refuse(path: str, dataset: Any, signal: Any, kw: dict) -> None:
    kw.pop("allow_external", None)
    ndim = kw.pop("signal_ndim", None)
    given = ["dataset"] if dataset is not None else []
    given += ["signal"] if signal is not None else []
    given += [] if ndim in (None, 1) else ["signal_ndim"]
    given += sorted(kw)
    if given:
        raise ValueError(
            f"{path}: {', '.join(o + '=' for o in given)} do(es) not apply to an image stack "
            "(a folder or glob of 2-D images, one signal axis); drop it"
        )


def _check_alike(planes: Sequence[_Plane]) -> None:
    first = planes[0]
    for p in planes[1:]:
        if p.shape != first.shape:
            raise UnsupportedFormatError(
                f"{p.path}: a {p.shape[0]}x{p.shape[1]} image, but {first.path} is "
                f"{first.shape[0]}x{first.shape[1]}; every image of a stack must have the "
                "same shape: crop or remove the odd one, or select the others with a glob"
            )
        if p.dtype != first.dtype:
            raise UnsupportedFormatError(
                f"{p.path}: {p.dtype} pixels, but {first.path} has {first.dtype}; every "
                "image of a stack must have the same data type: save them alike, or "
                "select the others with a glob"
            )


def _spatial_axes(plane: _Plane) -> list[Axis]:
    """``y``, ``x``: the calibration a DM file records, else uncalibrated."""
    axes = [a for a in plane.axes if isinstance(a, dict)]
    if [int(a.get("size", 0)) for a in axes] != list(plane.shape):
        return [Axis("y", plane.shape[0]), Axis("x", plane.shape[1])]
    keys = ("scale", "offset", "units")
    return [
        Axis(str(a.get("name") or n), int(a["size"]), **{k: a[k] for k in keys if k in a})
        for a, n in zip(axes, ("y", "x"), strict=True)
    ]


def _metadata(
    path: str, files: list[str], folder: str | None, how: str, sidecar: str | None, checksum: bool
) -> dict[str, Any]:
    root = folder or os.path.commonpath(files)
    names = [os.path.relpath(f, root) for f in files]
    listed = names[:MAX_LISTED]
    if len(names) > MAX_LISTED:
        listed.append(f"... ({len(names)} files in all)")
    title = os.path.basename(path.rstrip("/\\")) or path
    meta = {"title": title, "source": path, "reader": "stack", "files": listed}
    meta.update({"n_files": len(files), "channel_source": how})
    if checksum:
        meta["sha256"] = stack_sha256(files + ([sidecar] if sidecar else []))
    return meta
