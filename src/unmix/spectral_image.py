"""The data model: a spectrum (or pattern) at every pixel of a scan, with calibrated axes.

A :class:`SpectralImage` holds ``data`` of shape ``(*spatial_shape, *signal_shape)``: one to
three spatial (navigation) axes first, then one signal axis (a spectrum) or two (a
diffraction pattern, 4D-STEM). :meth:`SpectralImage.unfold` gives the ``(pixels, channels)``
matrix that :func:`unmix.factorize` takes; :meth:`~SpectralImage.fold_maps` and
:meth:`~SpectralImage.fold_endmembers` put the factors back on the scan and signal axes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ._sparse_cube import SparseCube

__all__ = ["SIGNAL_TYPES", "Axis", "SpectralImage", "from_hyperspy", "to_hyperspy"]

_logger = logging.getLogger(__name__)

#: HyperSpy / RosettaSciIO signal types with a more specific name than unmix uses
SIGNAL_TYPES = {"EDS_SEM": "EDS", "EDS_TEM": "EDS", "EDX": "EDS"}


@dataclass
class Axis:
    """One calibrated axis of a :class:`SpectralImage`.

    Parameters
    ----------
    name : str
        E.g. ``"x"``, ``"Energy loss"``, ``"Bias"``, ``"m/z"``.
    size : int
        Number of points along the axis.
    scale, offset : float
        Uniform calibration: point ``i`` lies at ``offset + scale * i``. ``scale`` may be
        negative (a bias sweep from +0.2 V down to -0.1 V).
    units : str
        E.g. ``"eV"``, ``"keV"``, ``"nm"``, ``"V"``; empty when uncalibrated.
    navigate : bool
        True for spatial (navigation) axes, False for signal axes.
    array : ndarray or None
        Explicit coordinates of a non-uniform axis (Raman shift, m/z); ``scale`` and
        ``offset`` are then the mean step and the first value, for information only.
    """

    name: str
    size: int
    scale: float = 1.0
    offset: float = 0.0
    units: str = ""
    navigate: bool = True
    array: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.size = int(self.size)
        self.scale = float(self.scale)
        self.offset = float(self.offset)
        self.units = str(self.units)
        self.name = str(self.name)
        self.navigate = bool(self.navigate)
        if self.array is not None:
            self.array = np.asarray(self.array, dtype=float).reshape(-1)
            if self.array.size != self.size:
                raise ValueError(
                    f"axis {self.name!r}: {self.array.size} coordinates for size {self.size}"
                )

    @property
    def is_uniform(self) -> bool:
        """True when the axis is ``offset + scale * arange(size)``."""
        return self.array is None

    @property
    def values(self) -> np.ndarray:
        """Coordinates of the points, ``offset + scale * arange(size)`` for a uniform axis."""
        if self.array is not None:
            return self.array.copy()
        return self.offset + self.scale * np.arange(self.size, dtype=float)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Axis):
            return NotImplemented
        same = (self.name, self.size, self.units, self.navigate) == (
            other.name,
            other.size,
            other.units,
            other.navigate,
        )
        return same and bool(np.allclose(self.values, other.values, rtol=1e-9, atol=0.0))

    @classmethod
    def from_values(
        cls,
        name: str,
        values: Any,
        units: str = "",
        navigate: bool = False,
        rtol: float = 1e-6,
    ) -> Axis:
        """An axis from its coordinates: uniform when the steps agree within ``rtol``.

        Parameters
        ----------
        name, units, navigate
            As in :class:`Axis`.
        values : array-like (size,)
            Coordinates of the points.
        rtol : float
            Largest deviation from the straight line, relative to the mean step, for the
            axis to be stored as ``offset + scale * i``; otherwise ``array`` keeps them.
        """
        v = np.asarray(values, dtype=float).reshape(-1)
        n = v.size
        if n == 0:
            raise ValueError(f"axis {name!r} has no points")
        if n == 1:
            return cls(name, 1, 1.0, float(v[0]), units, navigate)
        scale = (v[-1] - v[0]) / (n - 1)
        line = v[0] + scale * np.arange(n)
        dev = float(np.max(np.abs(v - line)))
        if scale != 0 and dev <= rtol * abs(scale):
            return cls(name, n, scale, float(v[0]), units, navigate)
        return cls(name, n, scale, float(v[0]), units, navigate, array=v)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (``values`` only for a non-uniform axis)."""
        d: dict[str, Any] = {
            "name": self.name,
            "size": self.size,
            "scale": self.scale,
            "offset": self.offset,
            "units": self.units,
            "navigate": self.navigate,
        }
        if self.array is not None:
            d["values"] = self.array.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Axis:
        """Inverse of :meth:`to_dict`."""
        keys = ("name", "size", "scale", "offset", "units", "navigate")
        kw = {k: d[k] for k in keys if k in d}
        values = d.get("values")
        return cls(**kw, array=None if values is None else np.asarray(values, dtype=float))


def _default_axes(shape: tuple[int, ...], signal_ndim: int) -> tuple[list[Axis], list[Axis]]:
    nsp = len(shape) - signal_ndim
    names = {1: ["index"], 2: ["y", "x"], 3: ["z", "y", "x"]}.get(nsp, [])
    spatial = [Axis(n, s, navigate=True) for n, s in zip(names, shape[:nsp], strict=False)]
    sig_names = ["channel"] if signal_ndim == 1 else ["det_y", "det_x"]
    signal = [Axis(n, s, navigate=False) for n, s in zip(sig_names, shape[nsp:], strict=False)]
    return spatial, signal


class SpectralImage:
    """A spectrum image: ``data`` of shape ``(*spatial_shape, *signal_shape)`` with axes.

    Parameters
    ----------
    data : ndarray, h5py.Dataset, zarr.Array or dask.array.Array
        Spatial (navigation) dimensions first, then the signal dimensions. Anything that is
        not a NumPy array is *lazy*: it is read when :meth:`unfold` or :meth:`compute` is
        called.
    spatial_axes : sequence of Axis, optional
        One to three axes (a line scan, a map, a volume). Default: uncalibrated axes.
    signal_axes : sequence of Axis, optional
        One axis (a spectrum) or two (a 2-D pattern). Default: as many as ``signal_ndim``.
    metadata : dict, optional
        ``title``, ``signal_type`` (``"EELS"``, ``"EDS"``, ``"Raman"``, ``"XRD"``,
        ``"STS"``, ``"MSI"``, ...), ``quantity``, ``units``, ``source``, ``sha256``,
        ``reader`` and any instrument metadata.
    signal_ndim : int
        Used only when no axes are given: number of trailing signal dimensions.
    file : object with ``close()``, optional
        The open file a lazy ``data`` reads from; :meth:`close` (or leaving a ``with``
        block) closes it.

    Notes
    -----
    :func:`unmix.factorize` works on the unfolded matrix ``X`` of shape
    ``(pixels, channels)``: one spectrum per row, pixels in C order of ``spatial_shape``,
    channels in C order of ``signal_shape``.
    """

    def __init__(
        self,
        data: Any,
        spatial_axes: Sequence[Axis] | None = None,
        signal_axes: Sequence[Axis] | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        signal_ndim: int = 1,
        file: Any = None,
    ) -> None:
        if not hasattr(data, "shape") or not hasattr(data, "dtype"):
            data = np.asarray(data)
        shape = tuple(int(s) for s in data.shape)
        if signal_axes is not None:
            signal_ndim = len(signal_axes)
        elif spatial_axes is not None:
            signal_ndim = len(shape) - len(spatial_axes)
        dsp, dsig = _default_axes(shape, signal_ndim)
        spatial = list(spatial_axes) if spatial_axes is not None else dsp
        signal = list(signal_axes) if signal_axes is not None else dsig
        if not 1 <= len(signal) <= 2:
            raise ValueError(f"a SpectralImage needs 1 or 2 signal axes, got {len(signal)}")
        if not 1 <= len(spatial) <= 3:
            raise ValueError(
                f"a SpectralImage needs 1 to 3 spatial axes, got {len(spatial)} for data "
                f"of shape {shape}; reshape a single spectrum to (1, channels)"
            )
        if len(spatial) + len(signal) != len(shape):
            raise ValueError(
                f"{len(spatial)} spatial + {len(signal)} signal axes do not match data of "
                f"shape {shape}"
            )
        for ax, n in zip(spatial + signal, shape, strict=True):
            if ax.size != n:
                raise ValueError(f"axis {ax.name!r} has size {ax.size}, data has {n} there")
        self.data = data
        self.spatial_axes = [a if a.navigate else replace(a, navigate=True) for a in spatial]
        self.signal_axes = [replace(a, navigate=False) if a.navigate else a for a in signal]
        self.metadata: dict[str, Any] = dict(metadata or {})
        for key in ("title", "signal_type", "quantity", "units"):
            self.metadata.setdefault(key, "")
        self._file = file

    # ------------------------------------------------------------------ shapes
    @property
    def shape(self) -> tuple[int, ...]:
        """``(*spatial_shape, *signal_shape)``."""
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def axes(self) -> list[Axis]:
        """All axes in array order: spatial, then signal."""
        return [*self.spatial_axes, *self.signal_axes]

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the scan, e.g. ``(rows, cols)``."""
        return tuple(a.size for a in self.spatial_axes)

    @property
    def signal_shape(self) -> tuple[int, ...]:
        """Shape of one spectrum ``(channels,)`` or pattern ``(det_y, det_x)``."""
        return tuple(a.size for a in self.signal_axes)

    @property
    def n_pixels(self) -> int:
        return math.prod(self.spatial_shape)

    @property
    def n_channels(self) -> int:
        return math.prod(self.signal_shape)

    @property
    def is_lazy(self) -> bool:
        """True when ``data`` is not held in memory (h5py, zarr, dask)."""
        return not isinstance(self.data, (np.ndarray, SparseCube))

    @property
    def is_sparse(self) -> bool:
        """True when ``data`` is held as sparse rows (:class:`unmix.io.SparseCube`)."""
        return isinstance(self.data, SparseCube)

    @property
    def title(self) -> str:
        return str(self.metadata.get("title", ""))

    def __repr__(self) -> str:
        sp = ", ".join(f"{a.name}={a.size}" for a in self.spatial_axes)
        sg = ", ".join(
            f"{a.name}={a.size}" + (f" {a.units}" if a.units else "") for a in self.signal_axes
        )
        lazy = ", lazy" if self.is_lazy else ""
        kind = self.metadata.get("signal_type") or "?"
        return f"<SpectralImage {self.title!r} {kind}: ({sp} | {sg}), {self.dtype}{lazy}>"

    # ------------------------------------------------------------- (un)folding
    def unfold(self, load: bool = True) -> Any:
        """The ``(pixels, channels)`` matrix: one spectrum per row.

        Parameters
        ----------
        load : bool
            For lazy data, True reads everything into a NumPy array; False returns a lazy
            2-D dask array (needs ``dask``). NumPy data is always reshaped without a copy
            when its memory layout allows it.

        Returns
        -------
        ndarray, dask array, or (sparse data) a SciPy CSR array of shape
        (n_pixels, n_channels)
        """
        shape2 = (self.n_pixels, self.n_channels)
        if isinstance(self.data, SparseCube):
            return self.data.csr  # CSR (pixels, channels), never densified here
        if isinstance(self.data, np.ndarray):
            return self.data.reshape(shape2)
        if load:
            return np.asarray(self.data[...]).reshape(shape2)
        try:
            import dask.array as da
        except ImportError as exc:  # pragma: no cover - dask is optional
            raise ImportError(
                "unfold(load=False) on lazy data needs dask: pip install dask, "
                "or call unfold() to read the data into memory"
            ) from exc
        arr = self.data if isinstance(self.data, da.Array) else da.from_array(self.data)
        return arr.reshape(shape2)

    def fold_maps(self, A: Any) -> Any:
        """Abundance maps ``A`` (pixels, k) -> (*spatial_shape, k); (pixels,) -> spatial_shape."""
        if A.shape[0] != self.n_pixels:
            raise ValueError(
                f"maps have {A.shape[0]} rows but the image has {self.n_pixels} pixels "
                f"(spatial shape {self.spatial_shape})"
            )
        return A.reshape((*self.spatial_shape, *tuple(A.shape[1:])))

    def fold_endmembers(self, S: Any) -> Any:
        """Endmembers ``S`` (k, channels) -> (k, *signal_shape); (channels,) -> signal_shape."""
        if S.shape[-1] != self.n_channels:
            raise ValueError(
                f"endmembers have {S.shape[-1]} channels but the image has {self.n_channels} "
                f"(signal shape {self.signal_shape})"
            )
        return S.reshape((*tuple(S.shape[:-1]), *self.signal_shape))

    def with_spatial_shape(self, spatial_shape: Sequence[int]) -> SpectralImage:
        """Same pixels (C order) on another scan grid, e.g. 143 patterns as (11, 13)."""
        spatial_shape = tuple(int(s) for s in spatial_shape)
        if any(s < 1 for s in spatial_shape) or math.prod(spatial_shape) != self.n_pixels:
            raise ValueError(
                f"spatial_shape {spatial_shape} holds {math.prod(spatial_shape)} pixels, "
                f"the image has {self.n_pixels}; give positive sizes whose product is "
                f"{self.n_pixels}"
            )
        if spatial_shape == self.spatial_shape:
            return self
        data = self.data
        if not hasattr(data, "reshape"):  # h5py / zarr: no lazy reshape
            _logger.info("with_spatial_shape: reading the lazy data into memory")
            data = np.asarray(data[...])
        data = data.reshape((*spatial_shape, *self.signal_shape))
        spatial, _ = _default_axes((*spatial_shape, 1), 1)
        return SpectralImage(data, spatial, self.signal_axes, self.metadata, file=self._file)

    def compute(self) -> SpectralImage:
        """An in-memory copy (NumPy data) of a lazy image; ``self`` if already in memory."""
        if not self.is_lazy:
            return self
        data = np.asarray(self.data[...])
        return SpectralImage(data, self.spatial_axes, self.signal_axes, self.metadata)

    def provenance(self) -> dict[str, Any]:
        """JSON-friendly summary: source, checksum, reader, title, type and axes."""
        keys = ("source", "sha256", "reader", "title", "signal_type", "quantity", "units")
        out = {k: self.metadata[k] for k in keys if k in self.metadata}
        out["spatial_axes"] = [a.to_dict() for a in self.spatial_axes]
        out["signal_axes"] = [a.to_dict() for a in self.signal_axes]
        out["dtype"] = str(self.dtype)
        return out

    # -------------------------------------------------------------- file handle
    def close(self) -> None:
        """Close the file a lazy image reads from (no-op for in-memory data)."""
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None

    def __enter__(self) -> SpectralImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- HyperSpy
    def to_hyperspy(self) -> Any:
        """A HyperSpy ``Signal1D`` (1-D signal) or ``Signal2D`` (2-D signal).

        Navigation axes are the spatial axes, signal axes the signal axes; lazy data gives
        a lazy signal. ``title``, ``signal_type`` and ``quantity`` go to ``metadata``, the
        rest of :attr:`metadata` to ``original_metadata``.
        """
        return to_hyperspy(self)

    @classmethod
    def from_hyperspy(cls, signal: Any) -> SpectralImage:
        """A SpectralImage from a HyperSpy signal (navigation axes become spatial axes).

        A signal without navigation axes (one spectrum) becomes a one-pixel image.
        """
        return from_hyperspy(signal)


# ---------------------------------------------------------------- HyperSpy
def to_hyperspy(image: SpectralImage) -> Any:
    """A HyperSpy ``Signal1D`` (1-D signal) or ``Signal2D`` (2-D signal).

    Navigation axes are the spatial axes, signal axes the signal axes; lazy data gives
    a lazy signal. ``title``, ``signal_type`` and ``quantity`` go to ``metadata``, the
    rest of :attr:`metadata` to ``original_metadata``.
    """
    try:
        import hyperspy.api as hs
    except ImportError as exc:
        raise ImportError("to_hyperspy() needs HyperSpy: pip install hyperspy") from exc
    axes = []
    for ax in image.axes:
        d: dict[str, Any] = {"name": ax.name, "units": ax.units, "navigate": ax.navigate}
        if ax.is_uniform:
            d.update(size=ax.size, scale=ax.scale, offset=ax.offset)
        else:
            d["axis"] = ax.values
        axes.append(d)
    md = image.metadata
    meta = {
        "General": {"title": str(md.get("title", ""))},
        "Signal": {
            "signal_type": str(
                md.get("hyperspy_signal_type")
                or md.get("rsciio_signal_type")
                or md.get("signal_type", "")
            ),
            "quantity": str(md.get("quantity", "")),
        },
    }
    skip = {"title", "signal_type", "quantity", "hyperspy_signal_type"}
    original = {k: v for k, v in md.items() if k not in skip and not (v is None or str(v) == "")}
    data = image.data
    lazy = image.is_lazy
    if lazy:
        import dask.array as da

        data = data if isinstance(data, da.Array) else da.from_array(data)
    cls = hs.signals.Signal1D if len(image.signal_axes) == 1 else hs.signals.Signal2D
    sig = cls(data, axes=axes, metadata=meta, original_metadata=original)
    return sig.as_lazy() if lazy else sig


def from_hyperspy(signal: Any) -> SpectralImage:
    """A SpectralImage from a HyperSpy signal (navigation axes become spatial axes).

    A signal without navigation axes (one spectrum) becomes a one-pixel image.
    """
    am = signal.axes_manager
    hs_axes = sorted(am._axes, key=lambda a: a.index_in_array)
    axes = []
    for a in hs_axes:
        units = "" if a.units in (None, "<undefined>") else str(a.units)
        name = "" if a.name in (None, "<undefined>") else str(a.name)
        if getattr(a, "is_uniform", True):
            axes.append(Axis(name, a.size, a.scale, a.offset, units, a.navigate))
        else:
            axes.append(Axis.from_values(name, a.axis, units, a.navigate))
    spatial = [a for a in axes if a.navigate]
    signal_axes = [a for a in axes if not a.navigate]
    data = signal.data
    if not spatial:
        data = data[None]
        spatial = [Axis("index", 1)]
    md = signal.metadata
    raw_type = str(md.get_item("Signal.signal_type", "") or "")
    meta = {
        "title": md.get_item("General.title", ""),
        "signal_type": SIGNAL_TYPES.get(raw_type, raw_type),
        "quantity": md.get_item("Signal.quantity", ""),
        "reader": "hyperspy",
    }
    if meta["signal_type"] != raw_type:
        meta["hyperspy_signal_type"] = raw_type
    for key, value in signal.original_metadata.as_dictionary().items():
        meta.setdefault(key, value)
    return SpectralImage(data, spatial, signal_axes, meta)
