"""Instrument formats through RosettaSciIO (``pip install 'unmix[io]'``).

Gatan ``.dm3/.dm4``, Velox/EMD ``.emd``, Bruker ``.bcf/.spx``, Quantum Detectors ``.mib``,
blockfiles ``.blo``, Renishaw ``.wdf``, EMSA ``.msa`` and the other formats of RosettaSciIO's
plugin registry: the reader is looked up by extension (several plugins for one extension are
tried in turn; ``plugin=`` names one). Each signal RosettaSciIO returns (a dict with
``data``, ``axes``, ``metadata``, ``original_metadata``) is put in HyperSpy's layout
(navigation axes first, applying the DigitalMicrograph spectrum-image transpose); then the
spectrum image is chosen: among the signals with navigation axes, those with a 1-D signal,
the one with the most dimensions. ``signal=`` (an index or a title) picks another one; a
file with several equally good candidates, or none, raises an error listing its content.
Extra keyword arguments go to the format's ``file_reader`` (e.g. ``sum_EDS_detectors``).

Guards (:mod:`unmix.io._bruker`, :mod:`unmix.io._h5safe`): a Bruker ``.bcf`` is checked as
a container, then parsed in a child process (its parser can crash the interpreter), and an
all-zero result is refused; an HDF5-based file (``.emd``, ...) is checked for data stored
or linked outside its folder (``allow_external=True`` accepts it) before the plugin opens it.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

import numpy as np

from ..spectral_image import SIGNAL_TYPES, Axis, SpectralImage
from ._bruker import ISOLATED_EXTENSIONS, ChildError, check_not_blank, check_sfs, read_isolated
from ._common import (
    CorruptFileError,
    ReaderCrashError,
    TooLargeError,
    UnsupportedFormatError,
    choose,
    guarded,
    plain,
    sniff,
)
from ._h5safe import check_h5_file

__all__ = ["read_rsciio", "rsciio_extensions"]

_logger = logging.getLogger(__name__)

#: extensions that unmix reads itself (the rsciio plugin is used only with ``plugin=``)
NATIVE = {"npy", "npz", "h5", "hdf5", "hspy", "nxs", "zarr"}
#: plugins that are not for spectroscopic data (plain images)
_SKIP_PLUGINS = {"Image"}


def _plugins() -> list[dict[str, Any]]:
    try:
        from rsciio import IO_PLUGINS
    except ImportError as exc:
        raise ImportError("instrument formats need RosettaSciIO: pip install 'unmix[io]'") from exc
    return [p for p in IO_PLUGINS if p["name"] not in _SKIP_PLUGINS]


def rsciio_extensions() -> dict[str, list[str]]:
    """Lower-case extension -> names of the RosettaSciIO plugins that read it.

    Empty when RosettaSciIO is not installed. Extensions in :data:`NATIVE` are left out.
    """
    try:
        plugins = _plugins()
    except ImportError:
        return {}
    out: dict[str, list[str]] = {}
    for p in plugins:
        for ext in p["file_extensions"]:
            ext = ext.lower()
            if ext not in NATIVE and p["name"] not in out.setdefault(ext, []):
                out[ext].append(p["name"])
    return out


def _candidates(path: str, plugin: str | None) -> list[dict[str, Any]]:
    plugins = _plugins()
    if plugin is not None:
        found = [
            p
            for p in plugins
            if plugin.lower() in [p["name"].lower(), *(a.lower() for a in p["name_aliases"])]
        ]
        if not found:
            names = sorted(p["name"] for p in plugins)
            raise UnsupportedFormatError(f"{path}: no RosettaSciIO plugin {plugin!r}; {names}")
        return found
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    found = [p for p in plugins if ext in (e.lower() for e in p["file_extensions"])]
    if not found:
        raise UnsupportedFormatError(f"{path}: RosettaSciIO has no reader for .{ext}")
    return found


@guarded("instrument file")
def read_rsciio(
    path: str,
    *,
    dataset: str | None = None,
    signal: str | int | None = None,
    lazy: bool = False,
    plugin: str | None = None,
    allow_external: bool = False,
    **kw: Any,
) -> SpectralImage:
    """Read an instrument file with RosettaSciIO and return its spectrum image.

    Parameters
    ----------
    path : str
    dataset : None
        Not used (use ``signal=``).
    signal : int or str, optional
        Index or title of the signal to return when the file holds several.
    lazy : bool
        Passed to RosettaSciIO: the data come back as a dask array (a ``.bcf``: a
        memory-mapped array).
    plugin : str, optional
        RosettaSciIO plugin name (e.g. ``"USID"``), to override the extension lookup.
    allow_external : bool
        Accept an HDF5-based file whose data are stored or linked outside its folder.
    **kw
        Passed to the plugin's ``file_reader``.
    """
    if dataset is not None:
        raise ValueError(f"{path}: dataset= is not used for instrument files; use signal=")
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    isolate = ext in ISOLATED_EXTENSIONS
    if isolate:
        check_sfs(path)
    kind = sniff(path)
    if kind is not None and kind[0] == "an HDF5":
        check_h5_file(path, allow_external=allow_external)
    errors = []
    for p in _candidates(path, plugin):
        try:
            dicts = _file_reader(p, path, lazy, isolate, kw)
        except (TooLargeError, ReaderCrashError, MemoryError):
            raise  # MemoryError: guarded() makes it a TooLargeError naming the file
        except TypeError as exc:
            if "unexpected keyword" in str(exc):
                raise TypeError(f"{path}: the {p['name']} reader says: {exc}") from exc
            errors.append(f"{p['name']}: {type(exc).__name__}: {exc}")
        except ChildError as exc:
            errors.append(f"{p['name']}: {exc}")
        except Exception as exc:  # any decoding failure of a third-party reader
            errors.append(f"{p['name']}: {type(exc).__name__}: {exc}")
        else:
            image = _select(path, [_normalize(d, path) for d in dicts], signal, p["name"])
            if isolate and not lazy:
                check_not_blank(image.data, path)
            return image
    raise CorruptFileError(
        f"{path}: RosettaSciIO could not read the file ({'; '.join(errors)}); check that "
        "it is complete and of the format its extension says"
    )


def _file_reader(
    p: dict[str, Any], path: str, lazy: bool, isolate: bool, kw: dict[str, Any]
) -> list[dict[str, Any]]:
    """The plugin's signal dicts: in a child process for readers that can crash."""
    if isolate:
        return read_isolated(path, p["api"], p["name"], lazy, kw)
    module = importlib.import_module(p["api"])
    return module.file_reader(path, lazy=lazy, **kw)


def _normalize(d: dict[str, Any], path: str) -> dict[str, Any]:
    """Data and axes in HyperSpy's layout: navigation axes first, then signal axes."""
    data = d["data"]
    raw = sorted(enumerate(d.get("axes", [])), key=lambda t: t[1].get("index_in_array", t[0]))
    axes = [_axis(a) for _, a in raw]
    if len(axes) != data.ndim:
        axes = [Axis(f"axis{i}", n) for i, n in enumerate(data.shape)]
    if not all("navigate" in a for _, a in raw):  # HyperSpy: all signal axes
        axes = [Axis(a.name, a.size, a.scale, a.offset, a.units, False, a.array) for a in axes]
    post = [set(names) for names in d.get("post_names", [])] or [
        set(getattr(getattr(f, "__code__", None), "co_names", ()))
        for f in d.get("post_process", [])
    ]
    if any("to_signal1D" in names for names in post) and any(a.navigate for a in axes):
        last_nav = max(i for i, a in enumerate(axes) if a.navigate)
        for i, a in enumerate(axes):
            a.navigate = i != last_nav
    order = [i for i, a in enumerate(axes) if a.navigate]
    order += [i for i, a in enumerate(axes) if not a.navigate]
    if order != list(range(len(axes))):
        data = data.transpose(order)
        axes = [axes[i] for i in order]
    if any("squeeze" in names for names in post):
        keep = [i for i, a in enumerate(axes) if a.size > 1]
        if keep and len(keep) < len(axes):
            data = data.reshape([axes[i].size for i in keep])
            axes = [axes[i] for i in keep]
    md = d.get("metadata", {}) or {}
    om = d.get("original_metadata", {}) or {}
    title = str(md.get("General", {}).get("title", "") or "")
    detector = om.get("BinaryResult", {}).get("Detector") if isinstance(om, dict) else None
    return {
        "data": data,
        "axes": axes,
        "metadata": md,
        "om": om,
        "title": title,
        "detector": detector,
    }


def _axis(a: dict[str, Any]) -> Axis:
    units = a.get("units")
    units = "" if units in (None, "<undefined>") else str(units)
    name = a.get("name")
    name = "" if name in (None, "<undefined>") else str(name)
    navigate = bool(a.get("navigate", True))
    if "axis" in a and a["axis"] is not None:
        return Axis.from_values(name, np.asarray(a["axis"]), units, navigate)
    size = int(a.get("size", 1))
    return Axis(
        name, size, float(a.get("scale", 1.0)), float(a.get("offset", 0.0)), units, navigate
    )


def _label(i: int, s: dict[str, Any]) -> str:
    nav = tuple(a.size for a in s["axes"] if a.navigate)
    sig = tuple(a.size for a in s["axes"] if not a.navigate)
    det = f" [{s['detector']}]" if s["detector"] else ""
    units = "/".join(a.units for a in s["axes"] if not a.navigate and a.units)
    return f"#{i} {s['title']!r}{det}: navigation {nav}, signal {sig} {units}".rstrip()


def _select(
    path: str, signals: list[dict[str, Any]], wanted: str | int | None, plugin: str
) -> SpectralImage:
    labels = [_label(i, s) for i, s in enumerate(signals)]
    if not signals:
        raise CorruptFileError(f"{path}: the {plugin} reader found no data in the file")
    if wanted is not None:
        names = [s["title"] + (f" [{s['detector']}]" if s["detector"] else "") for s in signals]
        idx = choose(names, wanted, path, "signal", "signal", labels)
    elif len(signals) == 1:
        idx = 0
    else:

        def rank(s: dict[str, Any]) -> tuple[int, int]:
            nsig = sum(not a.navigate for a in s["axes"])
            nnav = len(s["axes"]) - nsig
            return (int(nnav > 0 and nsig == 1), len(s["axes"]) if nnav > 0 else 0)

        ranks = [rank(s) for s in signals]
        best = max(ranks)
        hits = [i for i, r in enumerate(ranks) if r == best]
        if best[1] == 0 or len(hits) > 1:
            if best[1] == 0:  # nothing to choose between: say so, not "pick one"
                raise UnsupportedFormatError(
                    f"{path} holds no spectrum image among its {len(signals)} signals "
                    f"(each has no navigation axes: a single spectrum or image): "
                    f"{'; '.join(labels)}. Pass signal= an index or a title to read one "
                    "of them as a one-pixel image, or export the spectrum image itself"
                )
            raise ValueError(
                f"{path} holds several spectrum images among its {len(signals)} signals: "
                f"{'; '.join(labels)}. Pass signal= an index or a title"
            )
        idx = hits[0]
    return _to_image(path, signals[idx], plugin, labels)


def _to_image(path: str, s: dict[str, Any], plugin: str, labels: list[str]) -> SpectralImage:
    data, axes = s["data"], list(s["axes"])
    spatial = [a for a in axes if a.navigate]
    signal = [a for a in axes if not a.navigate]
    if not spatial:
        if len(signal) > 2:
            raise UnsupportedFormatError(
                f"{path}: signal {s['title']!r} has shape {data.shape} and no navigation "
                "axes, not a spectrum image"
            )
        what = "spectrum" if len(signal) == 1 else "image (one 2-D pattern)"
        _logger.warning("%s: %r is a single %s; read as a one-pixel image", path, s["title"], what)
        data = data[None]
        spatial = [Axis("index", 1)]
    md = s["metadata"]
    sig_md = md.get("Signal", {}) or {}
    raw_type = str(sig_md.get("signal_type", "") or "")
    meta: dict[str, Any] = {
        "title": s["title"],
        "signal_type": SIGNAL_TYPES.get(raw_type, raw_type),
        "quantity": str(sig_md.get("quantity", "") or ""),
        "rsciio_plugin": plugin,
        "contents": labels,
    }
    if raw_type and raw_type != meta["signal_type"]:
        meta["rsciio_signal_type"] = raw_type
    for src, dst in (("Acquisition_instrument", "instrument"), ("Sample", "sample")):
        if md.get(src):
            meta[dst] = {k: plain(v) for k, v in md[src].items()}
    if s["om"]:
        meta["original_metadata"] = s["om"]
    return SpectralImage(data, spatial, signal, meta)
