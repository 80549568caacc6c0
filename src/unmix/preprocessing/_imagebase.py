"""Shared machinery of the image-level operations: base class, registry and axis helpers.

Every operation is a small dataclass; :meth:`ImageOp.apply` calls the operation's
``_transform`` on the data and builds a *new*
:class:`~unmix.SpectralImage` whose ``metadata["preprocessing"]`` is the input's list plus
the operation's JSON-friendly description (:meth:`ImageOp.to_dict`, with an ``"info"``
entry for data-dependent results such as a fitted centre).

Lazy (file-backed) images stay lazy where the operation allows it
(:meth:`ImageOp.line_kind`): an operation on each pixel's own signal, or one that maps
scan lines onto lines (crop, bin), returns a :class:`~unmix.preprocessing._lines.LineArray`
computed line by line when read; one that needs a statistic of the whole image first
(``Offset(value="min")``, the default centre of a polar transform) takes it in one
streamed pass (:meth:`ImageOp.settled`).  Any other operation reads lazy data into memory.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ..spectral_image import Axis, SpectralImage
from ._lines import LineArray, line_blocks

_logger = logging.getLogger("unmix.preprocessing")

#: op name (as in configs) -> class; filled by :func:`register`
OPS: dict[str, type[ImageOp]] = {}

#: metadata value meaning "remove this key from the new image"
DELETE = object()


def register(cls: type[ImageOp]) -> type[ImageOp]:
    """Class decorator: make an operation buildable by name (``{"op": cls.op, ...}``)."""
    OPS[cls.op] = cls
    return cls


class Out(NamedTuple):
    """What an operation's ``_transform`` returns."""

    data: Any
    spatial_axes: list[Axis]
    signal_axes: list[Axis]
    metadata: dict[str, Any] | None = None
    info: dict[str, Any] | None = None


def jsonable(value: Any) -> Any:
    """``value`` with tuples, NumPy scalars and arrays turned into plain Python objects and
    infinite floats into None (strict JSON; an open range end either way)."""
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isinf(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


@dataclass
class ImageOp:
    """Base class of the image-level preprocessing operations.

    Subclasses set ``op`` (the name used in configs) and implement ``_transform``;
    ``streaming`` is their :meth:`line_kind` when it does not depend on the parameters.
    :meth:`apply` never modifies the input image or its data.
    """

    op: ClassVar[str] = ""
    streaming: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly ``{"op": name, **parameters}``; :func:`op_from_dict` inverts it."""
        d: dict[str, Any] = {"op": self.op}
        d.update({f.name: jsonable(getattr(self, f.name)) for f in fields(self) if f.init})
        return d

    def __call__(self, image: SpectralImage) -> SpectralImage:
        return self.apply(image)

    def apply(self, image: SpectralImage) -> SpectralImage:
        """A new image with the operation applied and its description appended to
        ``metadata["preprocessing"]``."""
        if not isinstance(image, SpectralImage):
            raise TypeError(
                f"{type(self).__name__}.apply takes a SpectralImage, got "
                f"{type(image).__name__}; wrap arrays with unmix.SpectralImage(data, ...)"
            )
        out = self._stream(image) if image.is_lazy and not image.is_sparse else None
        return finish(self, image.metadata, self._transform(image) if out is None else out)

    def _transform(self, image: SpectralImage) -> Out:  # pragma: no cover - abstract
        raise NotImplementedError

    def line_kind(self, image: SpectralImage) -> str:
        """How this operation runs on a lazy image without reading it whole.

        ``"pixel"``: each output pixel comes from the same input pixel's signal alone;
        ``"lines"``: output scan lines come from a known run of input lines (the op's
        :meth:`stream_lines`); ``"settle"``: one streamed pass over the image fixes a
        statistic, then :meth:`settled` is a ``"pixel"`` operation; ``"meta"``: the data
        are passed through untouched; ``""``: the image must be read into memory.
        """
        return self.streaming

    def streams(self, image: SpectralImage) -> bool:
        """True when :meth:`apply` on the lazy ``image`` keeps it lazy."""
        return bool(self.line_kind(image))

    def settled(self, image: SpectralImage) -> tuple[ImageOp, dict[str, Any]]:
        """The ``"pixel"`` operation this one amounts to on ``image``, and the statistics
        taken (for the description's ``info``); only for ``line_kind == "settle"``."""
        raise NotImplementedError  # pragma: no cover - only called for "settle" kinds

    def stream_lines(self, image: SpectralImage) -> Out:
        """The lazy result of a ``"lines"`` operation."""
        raise NotImplementedError  # pragma: no cover - only called for "lines" kinds

    def _stream(self, image: SpectralImage) -> Out | None:
        kind = self.line_kind(image)
        if kind == "pixel":
            return pixelwise(self, image)
        if kind == "lines":
            return self.stream_lines(image)
        if kind == "settle":
            op, stats = self.settled(image)
            out = pixelwise(op, image)
            return out._replace(info={**(out.info or {}), **stats})
        return None


def finish(op: ImageOp, metadata: Mapping[str, Any], out: Out) -> SpectralImage:
    """Build the result image: copy the metadata, apply the updates, record provenance."""
    meta = dict(metadata)
    for key, value in (out.metadata or {}).items():
        if value is DELETE:
            meta.pop(key, None)
        else:
            meta[key] = value
    entry = op.to_dict()
    if out.info:
        entry["info"] = jsonable(out.info)
    meta["preprocessing"] = [*list(metadata.get("preprocessing", [])), entry]
    return SpectralImage(out.data, out.spatial_axes, out.signal_axes, meta)


# ----------------------------------------------------------------------------- data helpers
def sub_image(image: SpectralImage, a: int, b: int) -> SpectralImage:
    """Scan lines ``a .. b - 1`` of ``image`` read into memory (metadata without the
    pixel weights, which belong to the whole scan)."""
    first = image.spatial_axes[0]
    axes = [take_axis(first, np.arange(a, b)), *image.spatial_axes[1:]]
    meta = {k: v for k, v in image.metadata.items() if k != "pixel_weights"}
    return SpectralImage(np.asarray(image.data[a:b]), axes, list(image.signal_axes), meta)


def pixelwise(op: ImageOp, image: SpectralImage) -> Out:
    """``op`` on a lazy image, scan line by scan line: the first line fixes the output's
    signal axes, dtype and metadata; every other line is computed when it is read."""
    probe = op._transform(sub_image(image, 0, 1))
    nsp = len(image.spatial_axes)
    dtype = np.asarray(probe.data).dtype
    shape = (*image.spatial_shape, *np.shape(probe.data)[nsp:])

    def compute(a: int, b: int) -> np.ndarray:
        return np.asarray(op._transform(sub_image(image, a, b)).data, dtype=dtype)

    info = {"streamed": "line by line"}
    if probe.info:
        info["first_line"] = probe.info  # data-dependent numbers of the first line only
    meta = probe.metadata
    return Out(
        LineArray(shape, dtype, compute), list(image.spatial_axes), probe.signal_axes, meta, info
    )


def mean_signal(image: SpectralImage) -> np.ndarray:
    """The mean signal (of the signal shape, float64) over every pixel of ``image``, read
    in one streamed pass of blocks of scan lines."""
    total = np.zeros(image.signal_shape)
    for block in line_blocks(image.data):
        total += block.reshape(-1, *image.signal_shape).sum(axis=0, dtype=float)
    return total / max(1, image.n_pixels)


def read(image: SpectralImage) -> np.ndarray:
    """The image's data as a NumPy array (lazy data is read; in-memory data is not copied)."""
    if image.is_lazy:
        _logger.info("reading lazy data %s into memory", image.shape)
        return np.asarray(image.data[...])
    return image.data


def float_dtype(dtype: Any) -> np.dtype:
    """Floating dtypes stay; integers and booleans become float64."""
    dtype = np.dtype(dtype)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def as_float(image: SpectralImage) -> np.ndarray:
    """The data as a floating array (a new array unless it already is one)."""
    data = read(image)
    return np.asarray(data, dtype=float_dtype(data.dtype))


def need_signal_ndim(op: ImageOp, image: SpectralImage, ndim: int, hint: str = "") -> None:
    """Raise when the image does not have ``ndim`` signal axes."""
    if len(image.signal_axes) != ndim:
        kind = "spectrum (1 signal axis)" if ndim == 1 else "2-D pattern (2 signal axes)"
        raise ValueError(
            f"{type(op).__name__} works on a {kind}; the image has signal shape "
            f"{image.signal_shape}" + (f"; {hint}" if hint else "")
        )


def need_uniform(op: ImageOp, axis: Axis) -> None:
    if not axis.is_uniform:
        raise ValueError(
            f"{type(op).__name__} needs uniformly spaced points; axis {axis.name!r} is "
            "non-uniform: crop or bin it to a uniform range first"
        )


def pixel_weights(image: SpectralImage) -> np.ndarray | None:
    """``metadata["pixel_weights"]`` as a float array of the spatial shape, or None."""
    w = image.metadata.get("pixel_weights")
    if w is None:
        return None
    w = np.asarray(w, dtype=float)
    if w.shape != image.spatial_shape:
        raise ValueError(
            f"metadata['pixel_weights'] has shape {w.shape}, the image's spatial shape is "
            f"{image.spatial_shape}; remove it or apply MaskPixels again"
        )
    return w


# ----------------------------------------------------------------------------- axis helpers
def take_axis(axis: Axis, idx: np.ndarray) -> Axis:
    """The axis at the points ``idx`` (a sorted index array); stays uniform when it can."""
    idx = np.asarray(idx, dtype=np.intp)
    steps = np.diff(idx)
    if axis.is_uniform and (idx.size == 1 or np.all(steps == steps[0])):
        step = int(steps[0]) if idx.size > 1 else 1
        return Axis(
            axis.name,
            idx.size,
            axis.scale * step,
            axis.offset + axis.scale * int(idx[0]),
            axis.units,
            axis.navigate,
        )
    return Axis.from_values(axis.name, axis.values[idx], axis.units, axis.navigate)


def range_indices(
    op: ImageOp, axis: Axis, rng: Any, units: bool = True, what: str = "range"
) -> np.ndarray:
    """Indices of the points of ``axis`` inside ``rng = [lo, hi]`` (None or +-inf: open end).

    Calibrated ranges (``units=True``) are inclusive and work on decreasing and
    non-uniform axes; index ranges are Python slices ``[start, stop)``.
    """
    lo, hi = pair(op, rng, what)
    if not units:
        idx = np.arange(axis.size)[slice(_int_or_none(lo), _int_or_none(hi))]
    else:
        v = axis.values
        a = -math.inf if lo is None else float(lo)
        b = math.inf if hi is None else float(hi)
        a, b = min(a, b), max(a, b)
        step = abs(axis.scale) if axis.scale else 1.0
        tol = 1e-9 * step
        idx = np.flatnonzero((v >= a - tol) & (v <= b + tol))
    if idx.size == 0:
        v = axis.values
        u = axis.units if units else "(indices)"
        extent = f"{v.min():g} to {v.max():g} {axis.units}" if units else f"0 to {axis.size}"
        raise ValueError(
            f"{type(op).__name__}: {what} [{lo}, {hi}] {u} selects no point of axis "
            f"{axis.name!r} ({extent}); give a range inside the axis"
            + ("" if not units else ", or units=False for index ranges")
        )
    return idx


def _int_or_none(v: Any) -> int | None:
    return None if v is None or math.isinf(v) else int(v)


def _is_number(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool))


def pair(op: ImageOp, rng: Any, what: str = "range") -> tuple[Any, Any]:
    """``rng`` as ``(lo, hi)``; raises naming the operation otherwise."""
    if (
        isinstance(rng, (str, bytes))
        or not isinstance(rng, Sequence | np.ndarray)
        or len(rng) != 2
        or not all(_is_number(v) for v in rng)
    ):
        raise ValueError(
            f"{type(op).__name__}: a {what} is a pair [lo, hi] of numbers (None for an "
            f"open end), got {rng!r}"
        )
    return rng[0], rng[1]


def per_axis(op: ImageOp, spec: Any, axes: Sequence[Axis], what: str) -> list[Any]:
    """One range (or None) per axis from ``spec``: None, a pair (for a single axis), a list
    of pairs (one per axis) or a dict ``{axis name: pair}``."""
    if spec is None:
        return [None] * len(axes)
    names = [a.name for a in axes]
    if isinstance(spec, Mapping):
        unknown = [k for k in spec if k not in names]
        if unknown:
            raise ValueError(
                f"{type(op).__name__}: {what} names unknown axes {unknown}; the {what} axes "
                f"are {names}"
            )
        return [spec.get(n) for n in names]
    if isinstance(spec, Sequence | np.ndarray) and not isinstance(spec, str):
        if len(spec) == 2 and all(_is_number(v) for v in spec):
            if len(axes) == 1:
                return [spec]
            raise ValueError(
                f"{type(op).__name__}: {what}={list(spec)!r} is one range but there are "
                f"{len(axes)} {what} axes {names}; give one range per axis, e.g. "
                f"[[lo, hi], None], or a dict {{axis name: [lo, hi]}}"
            )
        if len(spec) == len(axes):
            return list(spec)
    raise ValueError(
        f"{type(op).__name__}: {what} must be None, [lo, hi], one [lo, hi] (or None) per "
        f"{what} axis {names}, or a dict {{axis name: [lo, hi]}}; got {spec!r}"
    )


def reciprocal_units(units: str) -> str:
    """``"nm"`` -> ``"1/nm"``, ``"1/nm"`` -> ``"nm"``, ``""`` -> ``"1/px"``."""
    if not units:
        return "1/px"
    if units.startswith("1/"):
        return units[2:]
    return f"1/{units}"


def bin_array(data: np.ndarray, factors: Sequence[int], method: str) -> np.ndarray:
    """Sum or mean over non-overlapping blocks of ``factors`` (trailing remainders dropped)."""
    new = [n // f for n, f in zip(data.shape, factors, strict=True)]
    data = data[tuple(slice(0, m * f) for m, f in zip(new, factors, strict=True))]
    shape = [d for m, f in zip(new, factors, strict=True) for d in (m, f)]
    blocks = data.reshape(shape)
    axes = tuple(range(1, 2 * len(new), 2))
    if method == "mean":
        return blocks.mean(axis=axes, dtype=float_dtype(data.dtype))
    if np.issubdtype(data.dtype, np.integer) or data.dtype == np.bool_:
        return blocks.sum(axis=axes, dtype=np.int64)
    return blocks.sum(axis=axes)


def bin_axis(axis: Axis, factor: int) -> Axis:
    """The axis of :func:`bin_array`: scale times ``factor``, offset at the first bin centre."""
    m = axis.size // factor
    if factor == 1:
        return axis
    if axis.is_uniform:
        return Axis(
            axis.name,
            m,
            axis.scale * factor,
            axis.offset + axis.scale * (factor - 1) / 2,
            axis.units,
            axis.navigate,
        )
    centres = axis.values[: m * factor].reshape(m, factor).mean(axis=1)
    return Axis.from_values(axis.name, centres, axis.units, axis.navigate)


def factors_for(op: ImageOp, spec: Any, axes: Sequence[Axis], what: str) -> list[int]:
    """Bin factors: an int for every axis, or one per axis."""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        out = [int(spec)] * len(axes)
    elif isinstance(spec, Sequence) and not isinstance(spec, str) and len(spec) == len(axes):
        out = [int(f) for f in spec]
    else:
        raise ValueError(
            f"{type(op).__name__}: {what} must be an int or one int per {what} axis "
            f"{[a.name for a in axes]}; got {spec!r}"
        )
    for f, a in zip(out, axes, strict=True):
        if f < 1 or f > a.size:
            raise ValueError(
                f"{type(op).__name__}: bin factor {f} for axis {a.name!r} (size {a.size}) "
                f"must be between 1 and {a.size}"
            )
    return out
