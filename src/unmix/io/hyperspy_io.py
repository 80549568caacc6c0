"""Conversion between :class:`unmix.SpectralImage` and HyperSpy signals (HyperSpy >= 2)."""

from __future__ import annotations

from typing import Any

from ..spectral_image import _SIGNAL_TYPES, Axis, SpectralImage

__all__ = ["from_hyperspy", "to_hyperspy"]


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
        "signal_type": _SIGNAL_TYPES.get(raw_type, raw_type),
        "quantity": md.get_item("Signal.quantity", ""),
        "reader": "hyperspy",
    }
    if meta["signal_type"] != raw_type:
        meta["hyperspy_signal_type"] = raw_type
    for key, value in signal.original_metadata.as_dictionary().items():
        meta.setdefault(key, value)
    return SpectralImage(data, spatial, signal_axes, meta)
