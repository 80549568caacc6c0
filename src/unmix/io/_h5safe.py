"""HDF5 files one can trust: data outside the folder, unwritten data, the memory budget.

An HDF5 file can take its values from other files: *external links* (a link to an object
of another file), *external storage* (a dataset whose raw values are in other files) and
*virtual datasets* (VDS: a dataset mapped onto datasets of other files). EIGER and ARINA
master files depend on links to data files next to them, which stay allowed; anything that
resolves (symbolic links followed) outside the file's own folder is refused with
:class:`UnsafeFileError` unless the caller passes ``allow_external=True``. Sources that
are missing (or external files too short) are refused always: HDF5 would otherwise return
the fill value (or zeros) silently, or look for the file in the working directory.

A dataset that was never written (no storage allocated) or whose chunks were only partly
written holds the fill value where nothing was written; it is refused as incomplete.
Datasets with external storage or virtual sources are opened with the HDF5 prefix
``${ORIGIN}``: relative paths resolve next to the file, as checked, not in the working
directory.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import h5py

from ._common import (
    CorruptFileError,
    UnsafeFileError,
    check_allocation,
    check_numeric,
    nbytes_of,
)

__all__ = ["check_dataset", "check_h5_file", "open_dataset", "open_h5"]

_logger = logging.getLogger(__name__)

ORIGIN = b"${ORIGIN}"
#: how many files deep links are followed when checking (master -> data -> ...)
MAX_DEPTH = 4
TRUST = "pass allow_external=True (CLI: --allow-external) if you trust it"


def open_h5(path: str, allow_external: bool = False) -> h5py.File:
    """Check the file (:func:`check_h5_file`), then open it read-only."""
    check_h5_file(path, allow_external=allow_external)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise CorruptFileError(f"{path}: not a readable HDF5 file ({exc})") from exc


def check_h5_file(path: str, *, allow_external: bool = False, hint: str = TRUST) -> None:
    """Refuse external links, external storage and virtual sources outside the folder.

    Parameters
    ----------
    path : str
        The HDF5 file.
    allow_external : bool
        Accept data outside the file's folder (missing sources are refused anyway).
    hint : str
        What the refusal tells the user to do.

    Raises
    ------
    UnsafeFileError
        Data outside the folder without ``allow_external``.
    CorruptFileError
        Not HDF5, or a source (external file, VDS source) missing or too short.
    """
    root = os.path.dirname(os.path.realpath(path))
    _scan_file(path, path, (root, allow_external, hint), set(), 0)


def _scan_file(shown: str, fname: str, policy: tuple, seen: set, depth: int) -> None:
    real = os.path.realpath(fname)
    if real in seen or depth > MAX_DEPTH:
        return
    seen.add(real)
    try:
        f = h5py.File(fname, "r")
    except OSError as exc:
        where = "" if depth == 0 else f" (its linked file {fname})"
        raise CorruptFileError(
            f"{shown}{where}: not a readable HDF5 file ({exc}); check that the file is "
            "complete and really HDF5 (its extension may be wrong)"
        ) from exc
    with f:
        targets = _scan(f, shown, policy)
    for target in targets:
        _scan_file(shown, target, policy, seen, depth + 1)


def _scan(f: h5py.File, shown: str, policy: tuple) -> list[str]:
    """Check every link and dataset of ``f``; return the files it refers to."""
    folder = os.path.dirname(os.path.realpath(f.filename))
    files: list[str] = []

    def links(group: h5py.Group) -> None:
        for key in group:
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                where = f"{group.name.rstrip('/')}/{key}".lstrip("/")
                what = f"'{where}' is an external link to"
                found = _source(shown, link.filename, folder, policy, what, dangling=True)
                files.extend([found] if found else [])

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group):
            links(obj)
        elif isinstance(obj, h5py.Dataset):
            files.extend(_dataset_sources(obj, shown, folder, policy))

    links(f)
    f.visititems(visit)  # objects of this file only: external links are not followed
    return files


def _inside(real: str, root: str) -> bool:
    try:
        return os.path.commonpath([real, root]) == root
    except ValueError:  # different drives
        return False


def _source(
    shown: str, name: str, folder: str, policy: tuple, what: str, dangling: bool
) -> str | None:
    """The checked real path of a file the HDF5 file refers to (None: dangling link)."""
    root, allow, hint = policy
    name = os.fsdecode(name)
    real = os.path.realpath(name if os.path.isabs(name) else os.path.join(folder, name))
    if not _inside(real, root) and not allow:
        raise UnsafeFileError(f"{shown}: {what} {real} outside the file's folder; {hint}.")
    if os.path.isfile(real):
        return real
    if dangling and allow:
        _logger.warning("%s: %s %s, which is missing", shown, what, real)
        return None
    why = (
        "HDF5 would look for it elsewhere (the working directory)"
        if dangling
        else "its values would read as the fill value"
    )
    raise CorruptFileError(
        f"{shown}: {what} {real}, which is missing ({why}); copy that file next to "
        f"{os.path.basename(shown)}, as the instrument wrote them"
    )


def _dataset_sources(ds: h5py.Dataset, shown: str, folder: str, policy: tuple) -> list:
    out = []
    external = ds.external
    if external:
        what = f"dataset '{ds.name}' stores its values in"
        have = 0
        for name, offset, size in external:
            real = _source(shown, name, folder, policy, what, dangling=False)
            avail = max(0, os.path.getsize(real) - int(offset))
            have += avail if size == h5py.h5f.UNLIMITED else min(int(size), avail)
        need = nbytes_of(ds.shape, ds.dtype)
        if have < need:
            raise CorruptFileError(
                f"{shown}: dataset '{ds.name}' needs {need} bytes from its external files "
                f"but they hold {have}: one is truncated (the rest would read as zeros); "
                "copy the files again"
            )
    if ds.is_virtual:
        what = f"virtual dataset '{ds.name}' takes its values from"
        for src in ds.virtual_sources():
            if src.file_name != ".":
                out.append(_source(shown, src.file_name, folder, policy, what, False))
    return out


def open_dataset(group: h5py.Group, name: str) -> h5py.Dataset:
    """The dataset ``group[name]``, opened so that external and virtual sources resolve
    next to its file (not in the working directory).

    No other handle on the dataset may be open (HDF5 refuses a second prefix).
    """
    obj = group.get(name)
    if not isinstance(obj, h5py.Dataset):
        raise KeyError(f"{name!r} is not a dataset")
    if not (obj.external or obj.is_virtual):
        return obj
    del obj  # closes it: HDF5 keeps one external-file prefix per open dataset
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    dapl.set_efile_prefix(ORIGIN)
    if hasattr(dapl, "set_virtual_prefix"):
        dapl.set_virtual_prefix(ORIGIN)
    return h5py.Dataset(h5py.h5d.open(group.id, name.encode(), dapl=dapl))


#: what to do about a dataset never or partly written (readers; result files say theirs)
UNWRITTEN = "copy the complete file, or pass dataset= another dataset"


def check_dataset(
    ds: h5py.Dataset, shown: str, *, lazy: bool = False, fix: str = UNWRITTEN
) -> None:
    """Refuse a dataset of non-numbers, never or partly written, or beyond the budget.

    Parameters
    ----------
    ds : h5py.Dataset
    shown : str
        The file, for the messages.
    lazy : bool
        The data stay on disk: the memory budget does not apply.
    fix : str
        What the message about a dataset never or partly written tells to do.
    """
    what = f"{shown}: dataset '{ds.name}' {tuple(ds.shape)} {ds.dtype}"
    check_numeric(ds.dtype, what)
    nbytes = nbytes_of(ds.shape, ds.dtype)
    if nbytes and not ds.is_virtual and not ds.external:
        _check_written(ds, shown, fix)
    if not lazy:
        check_allocation(nbytes, what)


def _check_written(ds: h5py.Dataset, shown: str, fix: str) -> None:
    fill = ds.fillvalue
    if ds.id.get_storage_size() == 0:
        raise CorruptFileError(
            f"{shown}: dataset '{ds.name}' {tuple(ds.shape)} was never written: the file "
            f"holds no values for it, only the fill value {fill}; the acquisition stopped "
            f"before saving data or the file is incomplete: {fix}"
        )
    if not ds.chunks or not hasattr(ds.id, "get_num_chunks"):
        return
    expected = math.prod(math.ceil(s / c) for s, c in zip(ds.shape, ds.chunks, strict=True))
    written = ds.id.get_num_chunks()
    if written < expected:
        raise CorruptFileError(
            f"{shown}: dataset '{ds.name}' has only {written} of its {expected} chunks "
            f"written; the rest would read as the fill value {fill}: the acquisition or the "
            f"copy stopped early: {fix}"
        )
