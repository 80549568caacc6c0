"""HDF5 (``.h5``, ``.hdf5``, ``.nxs``), HyperSpy ``.hspy`` and Zarr (``.zarr``) readers.

Generic HDF5 / Zarr: ``dataset=`` names the array (a path inside the file); without it the
only array of two or more dimensions is read (for NeXus files, the ``signal`` of the only
``NXdata`` group), otherwise the error lists the candidates. Arrays follow the shape
conventions of :mod:`unmix.io`. Axes and title/type are read back from the
attributes written by :func:`write_hdf5` / :func:`write_zarr` (``unmix_axes``: a JSON list
of axes, ``title``, ``signal_type``, ``quantity``, ``units``).

HyperSpy ``.hspy`` files are read with h5py directly: ``/Experiments/<title>/data`` and its
``axis-N`` groups (name, scale, offset, units, navigate, size); ``signal=`` picks the
experiment when there are several.

Before anything is read the file is checked (:mod:`unmix.io._h5safe`): data stored or
linked outside the file's folder is refused unless ``allow_external=True``, a dataset never
(or partly) written is refused, and the array must fit the memory budget unless lazy.

With ``lazy=True`` the data stay on disk (an ``h5py.Dataset`` or ``zarr.Array``); the HDF5
file stays open until :meth:`SpectralImage.close` (or the end of a ``with`` block).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import h5py
import numpy as np

from ..spectral_image import Axis, SpectralImage
from ._common import (
    CorruptFileError,
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
)
from ._h5safe import check_dataset, open_dataset, open_h5
from ._sparse import csr_groups, read_csr_group

__all__ = ["read_hdf5", "read_hspy", "read_zarr", "write_hdf5", "write_zarr"]

_logger = logging.getLogger(__name__)
_META_KEYS = ("title", "signal_type", "quantity", "units")


def _attrs_meta(attrs: Any, path: str) -> dict[str, Any]:
    meta = {k: plain(attrs[k]) for k in _META_KEYS if k in attrs}
    meta.setdefault("title", os.path.splitext(os.path.basename(path))[0])
    return meta


def _finish(f: Any, ds: Any, path: str, lazy: bool, signal_ndim: int | None) -> SpectralImage:
    """Image from a dataset with the unmix attributes (or none); closes ``f`` unless lazy."""
    try:
        if isinstance(ds, h5py.Dataset):
            check_dataset(ds, path, lazy=lazy)
        else:  # a Zarr array
            what = f"{path}: array {tuple(ds.shape)} {ds.dtype}"
            check_numeric(ds.dtype, what)
            if not lazy:
                check_allocation(nbytes_of(ds.shape, ds.dtype), what)
        meta = _attrs_meta(ds.attrs, path)
        axes = None
        if "unmix_axes" in ds.attrs:
            axes = axes_from_json(ds.attrs["unmix_axes"], tuple(ds.shape), path)
        data = ds if lazy else _read_all(ds, path)
        return image_from_array(
            data,
            path,
            signal_ndim=signal_ndim,
            axes=axes,
            metadata=meta,
            file=f if lazy else None,
        )
    finally:
        if not lazy and hasattr(f, "close"):
            f.close()


def _read_all(ds: Any, path: str) -> np.ndarray:
    try:
        return np.asarray(ds[...])
    except (OSError, ValueError, RuntimeError) as exc:
        hint = ""
        if "filter" in str(exc).lower():
            hint = "; the data need an HDF5 compression filter: pip install hdf5plugin"
        raise CorruptFileError(f"{path}: reading {ds.name} failed ({exc}){hint}") from exc


# --------------------------------------------------------------------- generic HDF5
@guarded("HDF5 file")
def read_hdf5(
    path: str,
    *,
    dataset: str | None = None,
    signal: str | int | None = None,
    lazy: bool = False,
    signal_ndim: int | None = None,
    allow_external: bool = False,
) -> SpectralImage:
    """Read one array of an HDF5 / NeXus file (HyperSpy files are recognized).

    ``allow_external=True`` accepts data stored or linked outside the file's folder.
    """
    f = open_h5(path, allow_external)
    try:
        if dataset is None and f.attrs.get("file_format") == "HyperSpy":
            f.close()
            return read_hspy(path, signal=signal, lazy=lazy, allow_external=allow_external)
        if signal is not None:
            raise ValueError(f"{path}: signal= is for HyperSpy files; use dataset= (a path)")
        sparse = _sparse_group(f, dataset)
        if sparse is not None:  # a CSR matrix: read as sparse rows
            try:
                return read_csr_group(f[sparse], path)
            finally:
                f.close()
        name = dataset if dataset is not None else _pick_h5(f, path)
        if name not in f or not isinstance(f[name], h5py.Dataset):
            raise ValueError(f"{path}: no dataset {name!r}; it holds {_h5_listing(f)}")
        ds = open_dataset(f, name)
    except BaseException:
        f.close()
        raise
    return _finish(f, ds, path, lazy, signal_ndim)


def _sparse_group(f: h5py.File, dataset: str | None) -> str | None:
    """The CSR group to read: ``dataset`` when it names one, else the file's only CSR
    group when the file has no 2-D+ dataset."""
    if dataset is not None:
        name = dataset.strip("/")
        return name if name in csr_groups(f) else None
    groups = csr_groups(f)
    if len(groups) == 1 and not any(_h5_candidates(f)):
        return groups[0]
    return None


def _h5_candidates(f: h5py.File) -> tuple[list[str], list[str]]:
    found: list[str] = []
    nx_signals: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            if obj.ndim >= 2 and plain(obj.attrs.get("CLASS", "")) != "DIMENSION_SCALE":
                found.append(name)
        elif plain(obj.attrs.get("NX_class", "")) == "NXdata" and "signal" in obj.attrs:
            sig = f"{name}/{plain(obj.attrs['signal'])}"
            if sig in f and isinstance(f[sig], h5py.Dataset) and f[sig].ndim >= 2:
                nx_signals.append(sig)

    f.visititems(visit)
    return found, nx_signals


def _h5_listing(f: h5py.File) -> str:
    found, _ = _h5_candidates(f)
    return ", ".join(f"{n} {f[n].shape} {f[n].dtype}" for n in found) or "no 2-D+ datasets"


def _pick_h5(f: h5py.File, path: str) -> str:
    found, nx_signals = _h5_candidates(f)
    if len(nx_signals) == 1:
        return nx_signals[0]
    if len(found) == 1:
        return found[0]
    if not found:
        raise CorruptFileError(f"{path}: holds no dataset with 2 or more dimensions")
    desc = [f"{n} {f[n].shape} {f[n].dtype}" for n in found]
    return found[choose(found, None, path, "dataset", "dataset", desc)]


def write_hdf5(image: SpectralImage, path: str, *, dataset: str = "data") -> None:
    """Save an image to HDF5 (data plus ``unmix_axes`` and title/type attributes)."""
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(dataset, data=np.asarray(image.data[...]))
        ds.attrs["unmix_axes"] = axes_to_json(image.axes)
        for key in _META_KEYS:
            ds.attrs[key] = str(image.metadata.get(key, ""))


# ------------------------------------------------------------------------- HyperSpy
@guarded("HyperSpy file")
def read_hspy(
    path: str,
    *,
    dataset: str | None = None,
    signal: str | int | None = None,
    lazy: bool = False,
    allow_external: bool = False,
) -> SpectralImage:
    """Read a HyperSpy ``.hspy`` file; ``signal=`` names the experiment (its title)."""
    if dataset is not None:
        raise ValueError(f"{path}: use signal= (an experiment title) for .hspy files")
    f = open_h5(path, allow_external)
    try:
        exps = f.get("Experiments")
        titles = [t for t in (exps or {}) if isinstance(exps[t], h5py.Group) and "data" in exps[t]]
        if not titles:
            raise CorruptFileError(
                f"{path}: no /Experiments/<title>/data: not a HyperSpy file (read it with "
                "dataset= as generic HDF5)"
            )
        desc = [f"{t!r} {exps[t]['data'].shape}" for t in titles]
        idx = 0 if len(titles) == 1 and signal is None else None
        if idx is None:
            idx = choose(titles, signal, path, "experiment", "signal", desc)
        group = exps[titles[idx]]
        if not isinstance(group["data"], h5py.Dataset):
            raise CorruptFileError(f"{path}: {group.name}/data is not a dataset")
        ds = open_dataset(group, "data")
        check_dataset(ds, path, lazy=lazy)
        axes = [_hspy_axis(group, i, path) for i in range(ds.ndim)]
        meta = _hspy_metadata(group)
        meta.setdefault("title", titles[idx])
        shape = tuple(ds.shape)
        data: Any = ds if lazy else _read_all(ds, path)
    except BaseException:
        f.close()
        raise
    if not lazy:
        f.close()
    nav = [a.navigate for a in axes]
    if not any(nav):
        if len(axes) > 2:
            if lazy:
                f.close()
            raise UnsupportedFormatError(
                f"{path}: {titles[idx]!r} has shape {shape} and no navigation axes, not a "
                "spectrum image; read it with HyperSpy or h5py"
            )
        what = "spectrum" if len(axes) == 1 else "image (one 2-D pattern)"
        _logger.warning("%s holds a single %s: read as a one-pixel image", path, what)
        data = data[None] if not lazy else np.asarray(data[...])[None]
        axes.insert(0, Axis("index", 1))
    elif nav != sorted(nav, reverse=True):  # signal axes before navigation axes
        order = [i for i, n in enumerate(nav) if n] + [i for i, n in enumerate(nav) if not n]
        if lazy:
            check_allocation(nbytes_of(shape, data.dtype), f"{path}: {titles[idx]!r} {shape}")
        data = np.transpose(np.asarray(data[...]), order)
        axes = [axes[i] for i in order]
    return image_from_array(data, path, axes=axes, metadata=meta, file=f if lazy else None)


def _hspy_axis(group: h5py.Group, i: int, path: str) -> Axis:
    key = f"axis-{i}"
    if key not in group:
        raise CorruptFileError(f"{path}: {group.name}/{key} is missing")
    a = {k: plain(v) for k, v in group[key].attrs.items()}
    if "axis" in group[key]:  # HyperSpy writes a non-uniform axis as a dataset
        values = group[key]["axis"]
        if tuple(values.shape) != (group["data"].shape[i],):
            raise CorruptFileError(
                f"{path}: {values.name} has shape {values.shape} but the data have "
                f"{group['data'].shape[i]} points along axis {i}"
            )
        a["axis"] = values[()]
    name = "" if a.get("name") in (None, "<undefined>", "_None_") else str(a["name"])
    units = "" if a.get("units") in (None, "<undefined>", "_None_") else str(a["units"])
    kind = a.get("_type", "UniformDataAxis")
    navigate = bool(a.get("navigate", False))
    if kind == "DataAxis" and "axis" in a:
        return Axis.from_values(name, np.asarray(a["axis"]), units, navigate)
    if kind not in ("UniformDataAxis", "DataAxis"):
        raise UnsupportedFormatError(
            f"{path}: axis {name!r} is a {kind}; load the file with HyperSpy and use "
            "SpectralImage.from_hyperspy"
        )
    size = int(a.get("size", group["data"].shape[i]))
    return Axis(name, size, a.get("scale", 1.0), a.get("offset", 0.0), units, navigate)


def _tree(group: h5py.Group) -> dict[str, Any]:
    out: dict[str, Any] = {k: plain(v) for k, v in group.attrs.items()}
    for k, v in group.items():
        if isinstance(v, h5py.Group):
            out[k] = _tree(v)
        elif v.size <= 4096:
            out[k] = plain(v[()])
    return out


def _hspy_metadata(group: h5py.Group) -> dict[str, Any]:
    md = _tree(group["metadata"]) if "metadata" in group else {}
    general, sig = md.get("General", {}), md.get("Signal", {})
    meta: dict[str, Any] = {
        "title": general.get("title", ""),
        "signal_type": sig.get("signal_type", ""),
        "quantity": sig.get("quantity", ""),
    }
    if "original_filename" in general:
        meta["original_filename"] = general["original_filename"]
    for src, dst in (("Acquisition_instrument", "instrument"), ("Sample", "sample")):
        if md.get(src):
            meta[dst] = md[src]
    if "original_metadata" in group:
        om = _tree(group["original_metadata"])
        if om:
            meta["original_metadata"] = om
    return {k: v for k, v in meta.items() if v != "" or k == "title"}


# ----------------------------------------------------------------------------- Zarr
def _zarr() -> Any:
    try:
        import zarr
    except ImportError as exc:
        raise ImportError("reading .zarr needs the zarr package: pip install 'unmix[io]'") from exc
    return zarr


@guarded("Zarr store")
def read_zarr(
    path: str,
    *,
    dataset: str | None = None,
    signal: str | int | None = None,
    lazy: bool = False,
    signal_ndim: int | None = None,
) -> SpectralImage:
    """Read an array of a Zarr store (a ``.zarr`` directory); ``dataset=`` names it."""
    zarr = _zarr()
    if signal is not None:
        raise ValueError(f"{path}: signal= is not used for Zarr stores; use dataset=")
    try:
        node = zarr.open(path, mode="r")
    except Exception as exc:  # zarr raises many types for a broken store
        raise CorruptFileError(f"{path}: not a readable Zarr store ({exc})") from exc
    if hasattr(node, "shape"):
        if dataset is not None:
            raise ValueError(f"{path}: the store is a single array; drop dataset=")
        arr = node
    else:
        arrays = _zarr_arrays(node)
        if dataset is not None:
            if dataset.strip("/") not in arrays:
                raise ValueError(f"{path}: no array {dataset!r}; it holds {sorted(arrays)}")
            arr = arrays[dataset.strip("/")]
        else:
            big = [n for n, a in arrays.items() if a.ndim >= 2]
            if not big:
                raise CorruptFileError(f"{path}: holds no array with 2 or more dimensions")
            desc = [f"{n} {arrays[n].shape} {arrays[n].dtype}" for n in big]
            idx = 0 if len(big) == 1 else choose(big, None, path, "array", "dataset", desc)
            arr = arrays[big[idx]]
    return _finish(None, arr, path, lazy, signal_ndim)


def _zarr_arrays(group: Any, prefix: str = "") -> dict[str, Any]:
    out = {f"{prefix}{name}": a for name, a in sorted(group.arrays())}
    for name, sub in sorted(group.groups()):
        out.update(_zarr_arrays(sub, f"{prefix}{name}/"))
    return out


def write_zarr(image: SpectralImage, path: str) -> None:
    """Save an image as a single-array Zarr store with ``unmix_axes`` and title/type attrs."""
    zarr = _zarr()
    data = np.asarray(image.data[...])
    arr = zarr.open_array(path, mode="w", shape=data.shape, dtype=data.dtype)
    arr[...] = data
    attrs = {key: str(image.metadata.get(key, "")) for key in _META_KEYS}
    attrs["unmix_axes"] = json.loads(axes_to_json(image.axes))
    arr.attrs.update(attrs)
