"""Image-level preprocessing: operations on a :class:`~unmix.SpectralImage` before unmixing.

Each operation is a small dataclass with keyword parameters whose ``apply(image)`` returns
a *new* image (the input and its data are never modified) with correct axes and the
operation's JSON-friendly description appended to ``metadata["preprocessing"]``. A
:class:`Pipeline` chains them; :func:`op_from_dict` and :func:`pipeline_from_config` build
them from plain dicts such as ``{"op": "crop", "signal": [900, 1100]}`` (one TOML table
per step), and a recorded ``metadata["preprocessing"]`` list can be replayed the same way.

====================  =====================================================================
op                    what it does
====================  =====================================================================
``crop``              :class:`Crop` - keep ranges of spatial / signal axes
``bin``               :class:`Bin` - sum or average blocks of pixels / channels
``bin_detector``      :class:`BinDetector` - bin the two detector axes of 2-D patterns
``mask_channels``     :class:`MaskChannels` - drop channel ranges (signal may turn non-uniform)
``mask_pixels``       :class:`MaskPixels` - give pixels weight 0 (``metadata["pixel_weights"]``)
``power_law_background``  :class:`~.background.PowerLawBackground` - EELS ``A E^-r``
``baseline_als``      :class:`~.background.BaselineALS` - asymmetric least squares baseline
``offset``            :class:`Offset` - add a constant (``"min"``: make the minimum 0)
``absolute``          :class:`Absolute` - ``|X|``
``clip``              :class:`Clip` - clip to ``[lower, upper]``
``derivative``        :class:`Derivative` - ``dX/dE`` along the signal axis
``log``               :class:`Log` - ``log(X + offset)``
``normalize``         :class:`Normalize` - per pixel or per channel, by sum / max / L2
``fft``               :class:`~.fourier.FFT` - FFT magnitude of each signal
``sliding_window_fft``  :class:`~.fourier.SlidingWindowFFT` - local FFTs of one 2-D image
``polar_transform``   :class:`~.fourier.PolarTransform` - 2-D patterns to (r, theta)
====================  =====================================================================
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..spectral_image import SpectralImage
from ._background import BaselineALS, PowerLawBackground
from ._fourier import FFT, PolarTransform, SlidingWindowFFT, image_from_array
from ._imagebase import (
    OPS,
    ImageOp,
    Out,
    bin_array,
    bin_axis,
    factors_for,
    need_signal_ndim,
    per_axis,
    pixel_weights,
    range_indices,
    read,
    register,
    take_axis,
)
from ._lines import LineArray
from ._pointwise import Absolute, Clip, Derivative, Log, Normalize, Offset

__all__ = [
    "FFT",
    "Absolute",
    "BaselineALS",
    "Bin",
    "BinDetector",
    "Clip",
    "Crop",
    "Derivative",
    "ImageOp",
    "Log",
    "MaskChannels",
    "MaskPixels",
    "Normalize",
    "Offset",
    "Pipeline",
    "PolarTransform",
    "PowerLawBackground",
    "SlidingWindowFFT",
    "image_from_array",
    "op_from_dict",
    "pipeline_from_config",
]

_logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------ crop and bin
@register
@dataclass
class Crop(ImageOp):
    """Keep a range of every spatial and signal axis.

    Parameters
    ----------
    spatial, signal : optional
        ``[lo, hi]`` for a single axis, one ``[lo, hi]`` (or None) per axis, or a dict
        ``{axis name: [lo, hi]}``; None (or a None or infinite end, ``inf`` in TOML)
        keeps everything.
    units : bool
        True: calibrated coordinates, inclusive at both ends (decreasing and non-uniform
        axes work). False: indices, a Python slice ``[start, stop)``.

    Notes
    -----
    Cropped axes keep their scale; the offset moves to the first kept point (a
    non-uniform axis keeps its coordinates). ``metadata["pixel_weights"]`` is cropped too.
    """

    op = "crop"
    streaming = "lines"
    spatial: Any = None
    signal: Any = None
    units: bool = True

    def __post_init__(self) -> None:
        if self.spatial is None and self.signal is None:
            raise ValueError(
                "Crop: no range given, so it would keep everything; give signal=[lo, hi] "
                'and/or spatial=[lo, hi] (e.g. {op="crop", signal=[0.2, 12]}), or drop '
                "the step."
            )

    def _indices(self, image: SpectralImage) -> list[np.ndarray]:
        idx = []
        for what, spec, axes in (
            ("spatial", self.spatial, image.spatial_axes),
            ("signal", self.signal, image.signal_axes),
        ):
            for ax, rng in zip(axes, per_axis(self, spec, axes, what), strict=True):
                if rng is None:
                    idx.append(np.arange(ax.size))
                else:
                    idx.append(range_indices(self, ax, rng, self.units, f"{what} range"))
        return idx

    def _transform(self, image: SpectralImage) -> Out:
        idx = self._indices(image)
        contiguous = all(np.all(np.diff(i) == 1) for i in idx)
        if contiguous:
            sl = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)
            data = np.array(image.data[sl])  # reads only the crop of lazy data; copies
        else:
            data = read(image)[np.ix_(*idx)].copy()
        return self._out(image, idx, data)

    def _out(self, image: SpectralImage, idx: list[np.ndarray], data: Any) -> Out:
        axes = [take_axis(a, i) for a, i in zip(image.axes, idx, strict=True)]
        nsp = len(image.spatial_axes)
        meta: dict[str, Any] = {}
        w = pixel_weights(image)
        if w is not None:
            meta["pixel_weights"] = w[np.ix_(*idx[:nsp])].copy()
        return Out(data, axes[:nsp], axes[nsp:], meta)

    def stream_lines(self, image: SpectralImage) -> Out:
        idx = self._indices(image)
        lines, rest = idx[0], idx[1:]

        def compute(a: int, b: int) -> np.ndarray:
            want = lines[a:b]
            block = np.asarray(image.data[int(want[0]) : int(want[-1]) + 1])
            return block[np.ix_(want - want[0], *rest)]

        shape = tuple(i.size for i in idx)
        return self._out(image, idx, LineArray(shape, image.dtype, compute))


@register
@dataclass
class Bin(ImageOp):
    """Sum (or average) non-overlapping blocks of pixels and channels.

    Parameters
    ----------
    spatial, signal : int or sequence of int
        Bin factor for every spatial (signal) axis, or one per axis, e.g. ``(by, bx)``.
    method : {"sum", "mean"}
        ``"sum"`` keeps counts as counts (integers are summed in int64).

    Notes
    -----
    Each binned axis has ``size // factor`` points, scale times ``factor`` and its offset
    at the centre of the first bin (a non-uniform axis gets the bin-centre means). A
    trailing remainder that does not fill a bin is dropped (logged).
    ``metadata["pixel_weights"]`` is averaged over each spatial bin.
    """

    op = "bin"
    streaming = "lines"
    spatial: Any = 1
    signal: Any = 1
    method: str = "sum"

    def __post_init__(self) -> None:
        if self.method not in ("sum", "mean"):
            raise ValueError(f"Bin: method must be 'sum' or 'mean', got {self.method!r}")
        if _all_ones(self.spatial) and _all_ones(self.signal):
            raise ValueError(
                "Bin: every factor is 1, so it would change nothing; give spatial= and/or "
                'signal= factors above 1 (e.g. {op="bin", spatial=2}), or drop the step.'
            )

    def _transform(self, image: SpectralImage) -> Out:
        return _bin(self, image, self._factors(image), self.method)

    def _factors(self, image: SpectralImage) -> list[int]:
        fs = factors_for(self, self.spatial, image.spatial_axes, "spatial")
        return fs + factors_for(self, self.signal, image.signal_axes, "signal")

    def stream_lines(self, image: SpectralImage) -> Out:
        factors = self._factors(image)
        f0 = factors[0]

        def compute(a: int, b: int) -> np.ndarray:
            return bin_array(np.asarray(image.data[a * f0 : b * f0]), factors, self.method)

        probe = bin_array(np.asarray(image.data[:f0]), factors, self.method)
        shape = (image.spatial_shape[0] // f0, *probe.shape[1:])
        return _bin(self, image, factors, self.method, data=LineArray(shape, probe.dtype, compute))


def _all_ones(factors: Any) -> bool:
    """Whether a bin factor (an int, or one per axis) is 1 everywhere (a value of another
    kind: False, for :func:`factors_for` to report)."""
    values = factors if isinstance(factors, (list, tuple)) else [factors]
    return all(isinstance(f, int) and not isinstance(f, bool) and f == 1 for f in values)


def _bin(
    op: ImageOp, image: SpectralImage, factors: list[int], method: str, data: Any = None
) -> Out:
    """Binned data (``data``: already binned, e.g. lazily) with its axes and weights."""
    for ax, f in zip(image.axes, factors, strict=True):
        if ax.size % f:
            _logger.info(
                "%s: dropping the last %d point(s) of axis %r (size %d is not a multiple of %d)",
                type(op).__name__,
                ax.size % f,
                ax.name,
                ax.size,
                f,
            )
    if data is None:
        data = bin_array(read(image), factors, method)
    axes = [bin_axis(a, f) for a, f in zip(image.axes, factors, strict=True)]
    nsp = len(image.spatial_axes)
    meta: dict[str, Any] = {}
    w = pixel_weights(image)
    if w is not None:
        meta["pixel_weights"] = bin_array(w, factors[:nsp], "mean")
    return Out(data, axes[:nsp], axes[nsp:], meta)


@register
@dataclass
class BinDetector(ImageOp):
    """Bin the two detector axes of 2-D patterns (4D-STEM) by ``factor``.

    Parameters
    ----------
    factor : int or (int, int)
        Bin factor of both detector axes, or one per axis.
    method : {"sum", "mean"}

    Notes
    -----
    Same as ``Bin(signal=factor)`` but insists on a 2-D signal; the spatial axes are
    unchanged, the detector axes as in :class:`Bin`.
    """

    op = "bin_detector"
    streaming = "pixel"
    factor: Any = 2
    method: str = "sum"

    def __post_init__(self) -> None:
        if self.method not in ("sum", "mean"):
            raise ValueError(f"BinDetector: method must be 'sum' or 'mean', got {self.method!r}")

    def _transform(self, image: SpectralImage) -> Out:
        need_signal_ndim(self, image, 2, "use Bin(signal=...) for spectra")
        fg = factors_for(self, self.factor, image.signal_axes, "detector")
        return _bin(self, image, [1] * len(image.spatial_axes) + fg, self.method)


# ----------------------------------------------------------------------------- masks
@register
@dataclass
class MaskChannels(ImageOp):
    """Drop channel ranges (a zero-loss peak, a detector artefact, a cosmic-ray band).

    Parameters
    ----------
    ranges : [lo, hi] or list of [lo, hi]
        The ranges to remove, inclusive, in calibrated units (indices ``[start, stop)``
        with ``units=False``).
    units : bool

    Notes
    -----
    Works on spectra (one signal axis). Removing a range in the middle makes the signal
    axis non-uniform (it keeps the coordinates of the remaining channels); removing an end
    keeps it uniform.
    """

    op = "mask_channels"
    streaming = "pixel"
    ranges: Any = field(default_factory=list)
    units: bool = True

    def _ranges(self) -> list[Any]:
        r = self.ranges
        if (
            isinstance(r, Sequence)
            and len(r) == 2
            and all(v is None or isinstance(v, (int, float, np.number)) for v in r)
        ):
            return [r]
        if not isinstance(r, Sequence) or isinstance(r, str) or not r:
            raise ValueError(
                f"MaskChannels: ranges must be [lo, hi] or a non-empty list of [lo, hi]; got {r!r}"
            )
        return list(r)

    def _transform(self, image: SpectralImage) -> Out:
        need_signal_ndim(self, image, 1, "use Crop or BinDetector on 2-D patterns")
        ax = image.signal_axes[0]
        keep = np.ones(ax.size, dtype=bool)
        for rng in self._ranges():
            keep[range_indices(self, ax, rng, self.units, "channel range")] = False
        if not keep.any():
            raise ValueError(
                f"MaskChannels: the ranges {self.ranges!r} remove every channel of axis "
                f"{ax.name!r}; give narrower ranges"
            )
        idx = np.flatnonzero(keep)
        _logger.info("MaskChannels: dropping %d of %d channels", ax.size - idx.size, ax.size)
        data = read(image)[..., idx]
        return Out(data, list(image.spatial_axes), [take_axis(ax, idx)])


@register
@dataclass
class MaskPixels(ImageOp):
    """Mark pixels to ignore: ``metadata["pixel_weights"]`` (0 = ignored, 1 = used).

    Parameters
    ----------
    mask : array-like of bool, or str, optional
        True where a pixel is to be ignored, of the image's spatial shape; or the path of a
        ``.npy`` file holding it (for configs).
    pixels : list of index tuples, optional
        Pixels to ignore, e.g. ``[[0, 3], [12, 7]]`` (row, column) on a 2-D scan.

    Notes
    -----
    No pixel is dropped and the axes are unchanged (the scan grid stays intact, so spatial
    regularizers keep working); weights already present are multiplied by the new ones.
    The data array is shared with the input (it is not modified). In the recorded
    description an array mask is stored as the list of ignored ``pixels``.
    """

    op = "mask_pixels"
    streaming = "meta"  # the data pass through unread
    mask: Any = None
    pixels: Any = None

    def __post_init__(self) -> None:
        if self.mask is None and self.pixels is None:
            raise ValueError("MaskPixels: give mask= (bool array or .npy path) or pixels=")

    def _ignored(self, shape: tuple[int, ...]) -> np.ndarray:
        ignored = np.zeros(shape, dtype=bool)
        if self.mask is not None:
            m = self.mask
            if isinstance(m, (str, os.PathLike)):
                m = np.load(m)
            m = np.asarray(m, dtype=bool)
            if m.shape != shape:
                raise ValueError(
                    f"MaskPixels: mask has shape {m.shape}, the image's spatial shape is "
                    f"{shape}; give one value per scan pixel (True = ignore)"
                )
            ignored |= m
        if self.pixels is not None:
            p = np.asarray(self.pixels, dtype=np.intp)
            if p.ndim == 1 and len(shape) == 1:
                p = p[:, None]
            if p.ndim != 2 or p.shape[1] != len(shape):
                raise ValueError(
                    f"MaskPixels: pixels must be a list of {len(shape)}-index tuples for a "
                    f"scan of shape {shape}; got {self.pixels!r}"
                )
            bad = np.any((p < 0) | (p >= np.asarray(shape)), axis=1)
            if bad.any():
                raise ValueError(
                    f"MaskPixels: pixels {p[bad].tolist()} lie outside the scan of shape {shape}"
                )
            ignored[tuple(p.T)] = True
        return ignored

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.mask is not None and not isinstance(self.mask, (str, os.PathLike)):
            extra = np.argwhere(np.asarray(self.mask, dtype=bool)).tolist()
            d["pixels"] = (d.get("pixels") or []) + extra
            d["mask"] = None
        elif isinstance(self.mask, os.PathLike):
            d["mask"] = os.fspath(self.mask)
        return d

    def _transform(self, image: SpectralImage) -> Out:
        ignored = self._ignored(image.spatial_shape)
        w = pixel_weights(image)
        w = (np.ones(image.spatial_shape) if w is None else w) * (~ignored)
        if not w.any():
            raise ValueError("MaskPixels: every pixel would be ignored; unmask some pixels")
        info = {"n_ignored": int(ignored.sum()), "n_pixels": image.n_pixels}
        return Out(
            image.data,
            list(image.spatial_axes),
            list(image.signal_axes),
            {"pixel_weights": w},
            info,
        )


# ------------------------------------------------------------------------------ pipelines
def op_from_dict(d: Mapping[str, Any]) -> ImageOp:
    """Build one operation from ``{"op": name, **parameters}`` (the inverse of ``to_dict``).

    Names are case-insensitive; ``-`` and spaces count as ``_``; class names work too
    (``"PowerLawBackground"``). An ``"info"`` entry (as recorded in
    ``metadata["preprocessing"]``) is ignored, so a recorded list can be replayed.

    Raises
    ------
    ValueError
        For a missing or unknown op (naming the valid ones) or unknown keys (naming the
        valid keys of that op).
    """
    if isinstance(d, ImageOp):
        return d
    if not isinstance(d, Mapping):
        raise ValueError(
            f"a preprocessing step must be a dict like {{'op': 'crop', ...}}, got {d!r}"
        )
    params = dict(d)
    name = params.pop("op", None)
    params.pop("info", None)
    valid = sorted(OPS)
    if name is None:
        raise ValueError(f"preprocessing step {dict(d)!r} has no 'op' key; valid ops: {valid}")
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    by_class = {cls.__name__.lower(): cls for cls in OPS.values()}
    cls = OPS.get(key) or by_class.get(key.replace("_", ""))
    if cls is None:
        raise ValueError(f"unknown preprocessing op {name!r}; valid ops: {valid}")
    keys = [f.name for f in fields(cls) if f.init]
    unknown = sorted(set(params) - set(keys))
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} for preprocessing op {cls.op!r}; valid keys: "
            f"{['op', *keys]}"
        )
    return cls(**params)


@dataclass
class Pipeline:
    """A sequence of image operations applied in order.

    Parameters
    ----------
    steps : sequence of ImageOp or dict
        Operations, or dicts for :func:`op_from_dict`.

    Each step appends its own entry to ``metadata["preprocessing"]``.
    """

    steps: list[ImageOp] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps = [op_from_dict(s) for s in self.steps]

    def apply(self, image: SpectralImage) -> SpectralImage:
        """The image after every step; the input is not modified."""
        for step in self.steps:
            _logger.debug("preprocessing: %s", step)
            image = step.apply(image)
        return image

    def __call__(self, image: SpectralImage) -> SpectralImage:
        return self.apply(image)

    def blocking(self, image: SpectralImage) -> ImageOp | None:
        """The first step that reads a lazy ``image`` into memory (None: the whole
        pipeline stays lazy, computed scan line by scan line; see
        :meth:`ImageOp.line_kind`)."""
        return next((step for step in self.steps if not step.streams(image)), None)

    def to_config(self) -> list[dict[str, Any]]:
        """JSON/TOML-friendly list of step dicts (``pipeline_from_config`` inverts it).

        Parameters left at a default of None are omitted (TOML has no null)."""
        out = []
        for step in self.steps:
            defaults = {f.name: f.default for f in fields(step) if f.init}
            d = step.to_dict()
            out.append(
                {k: v for k, v in d.items() if v is not None or defaults.get(k) is not None}
            )
        return out

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[ImageOp]:
        return iter(self.steps)


def pipeline_from_config(config: Sequence[Mapping[str, Any]]) -> Pipeline:
    """A :class:`Pipeline` from a list of dicts such as
    ``[{"op": "crop", "signal": [900, 1100]}, {"op": "bin", "spatial": 2}]`` (a TOML
    array of tables), or from a recorded ``metadata["preprocessing"]`` list."""
    if isinstance(config, (Mapping, str)) or not isinstance(config, Sequence):
        raise ValueError(
            "a preprocessing config is a list of dicts, one per step, e.g. "
            f"[{{'op': 'crop', 'signal': [900, 1100]}}]; got {config!r}"
        )
    return Pipeline([op_from_dict(d) for d in config])
