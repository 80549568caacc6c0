"""imzML mass spectrometry imaging: an XML ``.imzML`` file plus its binary ``.ibd`` file.

The XML (parsed incrementally with :mod:`xml.etree.ElementTree`) lists, per spectrum, the
pixel position (``IMS:1000050`` x, ``IMS:1000051`` y, ``IMS:1000052`` z) and, for its m/z
and intensity arrays, the offset, length and encoded length in the ``.ibd`` file
(``IMS:1000102``, ``IMS:1000103``, ``IMS:1000104``) and the number type (``MS:1000521``
float32, ``MS:1000523`` float64, ``IMS:1000141``/``IMS:1000142`` int32/int64), directly
or through ``referenceableParamGroup`` references; zlib-compressed arrays are inflated.

- **Continuous** mode (``IMS:1000030``): one m/z array shared by all pixels; the result is a
  ``(rows, cols, n_mz)`` cube (``(z, rows, cols, n_mz)`` for 3-D data) with the m/z axis.
- **Processed** mode (``IMS:1000031``): each pixel has its own m/z values. They are binned
  onto a common grid: ``mz_bins`` equal bins spanning ``mz_range`` (default: the union of
  all m/z ranges); each bin holds the *sum* of the intensities that fall into it (total ion
  counts are preserved). Without ``mz_bins`` a processed file raises an error saying so.
  ``mz_bins`` also works for continuous files (to coarsen the m/z axis).

Pixels are placed on the bounding box of the measured positions; pixels never measured are
zero and flagged False in ``metadata["pixel_mask"]``. Everything is read into memory.

Damaged files are refused before anything large is allocated: a pixel position twice, a
bounding box of more than :data:`MAX_GRID_PER_SPECTRUM` grid pixels per spectrum (a
damaged coordinate such as x=300000), a cube beyond the memory budget, offsets or lengths
beyond the end of the ``.ibd``, compressed arrays that do not inflate to their declared
length, non-finite m/z values, and an ``.ibd`` that does not start with the imzML's UUID
or lacks the SHA-1 (or MD5) checksum the imzML declares (``verify=False`` skips this).
"""

from __future__ import annotations

import hashlib
import logging
import os
import xml.etree.ElementTree as ET
import zlib
from typing import Any

import numpy as np

from ..spectral_image import Axis, SpectralImage
from ._common import (
    CorruptFileError,
    UnsupportedFormatError,
    check_allocation,
    check_file,
    guarded,
)

__all__ = ["read_imzml"]

_logger = logging.getLogger(__name__)
_DTYPES = {
    "MS:1000521": "<f4",
    "MS:1000523": "<f8",
    "IMS:1000141": "<i4",
    "IMS:1000142": "<i8",
    "MS:1000519": "<i4",
    "MS:1000522": "<i8",
}
_ZLIB, _NO_COMPRESSION = "MS:1000574", "MS:1000576"
#: the bounding box of the pixel positions may hold at most this many grid pixels per
#: spectrum (plus :data:`MIN_GRID`): sparse acquisitions pass, a damaged coordinate not
MAX_GRID_PER_SPECTRUM = 64
MIN_GRID = 4096


def _ibd_path(path: str) -> str:
    stem = os.path.splitext(path)[0]
    for ext in (".ibd", ".IBD", ".Ibd"):
        if os.path.exists(stem + ext):
            check_file(stem + ext)  # a pipe would hang, an empty file is incomplete
            return stem + ext
    raise FileNotFoundError(
        f"{path}: the binary data file {stem}.ibd is missing; an imzML file needs its .ibd "
        "next to it with the same name"
    )


def _parse(path: str) -> tuple[list[tuple], list[dict[str, Any]]]:
    """File-level cvParams and, per spectrum, its params and binary arrays."""
    groups: dict[str, list[tuple]] = {}
    file_params: list[tuple] = []
    spectra: list[dict[str, Any]] = []
    group: list[tuple] | None = None
    spec: dict[str, Any] | None = None
    arr: list[tuple] | None = None
    try:
        for event, el in ET.iterparse(path, events=("start", "end")):
            tag = el.tag.rpartition("}")[2]
            if event == "start":
                target = arr if arr is not None else spec["params"] if spec else group
                target = file_params if target is None else target
                if tag == "cvParam":
                    target.append((el.get("accession"), el.get("value"), el.get("unitName")))
                elif tag == "referenceableParamGroupRef":
                    target.extend(groups.get(el.get("ref", ""), []))
                elif tag == "referenceableParamGroup":
                    group = groups.setdefault(el.get("id", ""), [])
                elif tag == "spectrum":
                    spec = {"params": [], "arrays": []}
                elif tag == "binaryDataArray" and spec is not None:
                    arr = []
                    spec["arrays"].append(arr)
            elif tag == "referenceableParamGroup":
                group = None
            elif tag == "binaryDataArray":
                arr = None
            elif tag == "spectrum" and spec is not None:
                spectra.append(spec)
                spec = None
                el.clear()
    except ET.ParseError as exc:
        raise CorruptFileError(f"{path}: not a readable imzML (XML) file ({exc})") from exc
    if not spectra:
        raise CorruptFileError(f"{path}: no <spectrum> elements: not an imzML file")
    return file_params, spectra


def _value(params: list[tuple], accession: str, default: Any = None) -> Any:
    for acc, value, _ in params:
        if acc == accession:
            return value
    return default


def _array_info(arr: list[tuple], path: str) -> dict[str, Any]:
    accs = {a for a, _, _ in arr}
    kind = "mz" if "MS:1000514" in accs else "intensity" if "MS:1000515" in accs else "other"
    dtypes = [d for a, d in _DTYPES.items() if a in accs]
    if kind != "other" and not dtypes:
        raise UnsupportedFormatError(f"{path}: a {kind} array has no supported number type")
    if (
        kind != "other"
        and accs & {_ZLIB, _NO_COMPRESSION} == set()
        and any(a.startswith("MS:10005") for a in accs)
    ):
        _logger.debug("%s: no compression term on a %s array; assuming none", path, kind)
    try:
        info = {
            "kind": kind,
            "dtype": np.dtype(dtypes[0]) if dtypes else None,
            "zlib": _ZLIB in accs,
            "offset": int(_value(arr, "IMS:1000102", -1)),
            "length": int(_value(arr, "IMS:1000103", -1)),
            "encoded": int(_value(arr, "IMS:1000104", -1)),
        }
    except (TypeError, ValueError) as exc:
        raise CorruptFileError(f"{path}: bad external offset/length ({exc})") from exc
    units = [u for a, _, u in arr if a in ("MS:1000514", "MS:1000515") and u]
    info["units"] = units[0] if units else ""
    return info


def _read_array(f: Any, info: dict[str, Any], ibd: str) -> np.ndarray:
    if info["offset"] < 0 or info["length"] < 0:
        raise CorruptFileError(f"{ibd}: a spectrum lacks its external offset or array length")
    raw_bytes = info["length"] * info["dtype"].itemsize
    n_bytes = info["encoded"] if info["encoded"] >= 0 else raw_bytes
    if not info["zlib"] and n_bytes != raw_bytes:
        raise CorruptFileError(
            f"{ibd}: an array of {info['length']} values of {info['dtype']} is declared "
            f"{n_bytes} bytes long; the imzML's offsets or lengths are damaged"
        )
    size = os.fstat(f.fileno()).st_size
    if info["offset"] + n_bytes > size:
        raise CorruptFileError(
            f"{ibd}: truncated: {n_bytes} bytes expected at offset {info['offset']}, found "
            f"{max(0, size - info['offset'])}; the .ibd is incomplete or does not belong to "
            "this imzML"
        )
    f.seek(info["offset"])
    raw = f.read(n_bytes)
    if len(raw) != n_bytes:
        raise CorruptFileError(
            f"{ibd}: truncated: {n_bytes} bytes expected at offset {info['offset']}, "
            f"found {len(raw)}"
        )
    if info["zlib"]:
        raw = _inflate(raw, raw_bytes, ibd)
    return np.frombuffer(raw, dtype=info["dtype"], count=info["length"])


def _inflate(raw: bytes, expected: int, ibd: str) -> bytes:
    """zlib-inflate at most ``expected`` bytes (a decompression bomb stops there)."""
    try:
        d = zlib.decompressobj()
        out = d.decompress(raw, expected)
        extra = bool(d.unconsumed_tail) or not d.eof
    except zlib.error as exc:
        raise CorruptFileError(f"{ibd}: a compressed array does not inflate ({exc})") from exc
    if len(out) != expected or extra:
        raise CorruptFileError(
            f"{ibd}: a compressed array inflates to {'more than ' if extra else ''}"
            f"{len(out)} bytes instead of the declared {expected}; the file is damaged"
        )
    return out


def _positions(spectra: list[dict[str, Any]], path: str) -> np.ndarray:
    """Pixel positions (z, y, x) per spectrum, checked: unique, on a sane grid."""
    try:
        pos = np.array(
            [[int(_value(s["params"], f"IMS:100005{i}", 1)) for i in (2, 1, 0)] for s in spectra],
            dtype=np.int64,
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptFileError(f"{path}: unreadable pixel position ({exc})") from exc
    span = [int(v) for v in pos.max(axis=0) - pos.min(axis=0) + 1]
    cells = span[0] * span[1] * span[2]
    limit = max(MAX_GRID_PER_SPECTRUM * len(spectra), MIN_GRID)
    if cells > limit:
        worst = np.unravel_index(np.argmax(np.abs(pos - np.median(pos, axis=0))), pos.shape)
        raise CorruptFileError(
            f"{path}: the pixel positions span a {span[1]} x {span[2]} grid"
            f"{f' x {span[0]} planes' if span[0] > 1 else ''} ({cells} pixels) for only "
            f"{len(spectra)} spectra (e.g. {'zyx'[worst[1]]}={pos[worst]} at spectrum "
            f"{worst[0] + 1}); a coordinate is damaged (the limit is "
            f"{MAX_GRID_PER_SPECTRUM} grid pixels per spectrum)"
        )
    uniq, counts = np.unique(pos, axis=0, return_counts=True)
    if (counts > 1).any():
        z, y, x = (int(v) for v in uniq[np.argmax(counts)])
        raise CorruptFileError(
            f"{path}: {int((counts > 1).sum())} pixel positions hold several spectra (e.g. "
            f"x={x}, y={y}, z={z}); the positions are damaged"
        )
    return pos


@guarded("imzML file")
def read_imzml(
    path: str,
    *,
    dataset: str | None = None,
    signal: str | int | None = None,
    lazy: bool = False,
    mz_bins: int | None = None,
    mz_range: tuple[float, float] | None = None,
    verify: bool = True,
) -> SpectralImage:
    """Read an imzML image into a ``(rows, cols, n_mz)`` SpectralImage; see the module doc.

    ``verify=False`` skips the check of the ``.ibd`` against the UUID and the SHA-1 / MD5
    checksum the imzML declares (for files whose writer got them wrong).
    """
    if dataset is not None or signal is not None:
        raise ValueError(f"{path}: dataset= and signal= are not used for imzML files")
    if lazy:
        _logger.info("%s: imzML data are read into memory (lazy=True is ignored)", path)
    ibd = _ibd_path(path)
    file_params, spectra = _parse(path)
    accs = {a for a, _, _ in file_params}
    mode = "processed" if "IMS:1000031" in accs else "continuous"
    if "IMS:1000030" not in accs and mode == "continuous":
        _logger.warning(
            "%s: neither continuous nor processed is declared; assuming continuous", path
        )
    if mode == "processed" and mz_bins is None:
        raise UnsupportedFormatError(
            f"{path} is a processed imzML file (each pixel has its own m/z values); pass "
            "mz_bins=N (e.g. 10000), and optionally mz_range=(lo, hi), to bin all spectra "
            "onto one common m/z grid"
        )
    pos = _positions(spectra, path)
    infos = []
    for s in spectra:
        arrays = {a["kind"]: a for a in (_array_info(x, path) for x in s["arrays"])}
        if "mz" not in arrays or "intensity" not in arrays:
            raise CorruptFileError(f"{path}: a spectrum lacks its m/z or intensity array")
        infos.append(arrays)
    with open(ibd, "rb") as f:
        if verify:
            _check_uuid(f, file_params, ibd)
        cube, mz_axis, pixel_mask = _fill(f, infos, pos, mz_bins, mz_range, ibd)
        if verify:  # after the offsets were checked: a cut file says "truncated"
            _check_digest(f, file_params, ibd)
    spatial = _spatial_axes(file_params, pos, cube.shape[:-1])
    meta: dict[str, Any] = {
        "title": os.path.splitext(os.path.basename(path))[0],
        "signal_type": "MSI",
        "quantity": "Intensity",
        "units": infos[0]["intensity"]["units"],
        "imzml_mode": mode,
        "companion_files": [ibd],
        "ibd_sha1": _value(file_params, "IMS:1000091"),
        "n_spectra": len(spectra),
    }
    if not pixel_mask.all():
        meta["pixel_mask"] = pixel_mask
    if mz_bins is not None:
        meta["mz_binning"] = {
            "bins": int(mz_bins),
            "range": [mz_axis.values[0], mz_axis.values[-1]],
        }
    return SpectralImage(cube, spatial, [mz_axis], meta)


_FIX = (
    "the .ibd is damaged, incomplete or belongs to another acquisition: copy both files "
    "again (verify=False skips this check)"
)


def _check_uuid(f: Any, file_params: list[tuple], ibd: str) -> None:
    """The ``.ibd`` starts with the UUID the imzML declares."""
    uuid = _value(file_params, "IMS:1000080")
    f.seek(0)
    head = f.read(16)
    if uuid:
        want = uuid.strip("{}").replace("-", "").lower()
        if head.hex() != want:
            raise CorruptFileError(f"{ibd}: starts with UUID {head.hex()}, not {want}; {_FIX}")


def _check_digest(f: Any, file_params: list[tuple], ibd: str) -> None:
    """The ``.ibd`` has the SHA-1 (or MD5) checksum the imzML declares."""
    for acc, algo in (("IMS:1000091", "sha1"), ("IMS:1000090", "md5")):
        want = (_value(file_params, acc) or "").strip().lower()
        if want:
            f.seek(0)
            got = _digest(f, algo)
            if got != want:
                raise CorruptFileError(f"{ibd}: its {algo.upper()} is {got}, not {want}; {_FIX}")
            return


def _digest(f: Any, algo: str) -> str:
    h = hashlib.new(algo)
    while block := f.read(1 << 20):
        h.update(block)
    return h.hexdigest()


def _fill(
    f: Any,
    infos: list[dict[str, Any]],
    pos: np.ndarray,
    mz_bins: int | None,
    mz_range: tuple[float, float] | None,
    ibd: str,
) -> tuple[np.ndarray, Axis, np.ndarray]:
    lo_pos = pos.min(axis=0)
    shape = tuple(int(v) for v in pos.max(axis=0) - lo_pos + 1)
    idx = pos - lo_pos
    dtype = np.result_type(infos[0]["intensity"]["dtype"], np.float32)
    pixel_mask = np.zeros(shape, dtype=bool)
    pixel_mask[tuple(idx.T)] = True
    if mz_bins is None:
        mz = _read_array(f, infos[0]["mz"], ibd).astype(float)
        _check_mz(mz, ibd)
        _check_cube(shape, mz.size, dtype, ibd)
        cube = np.zeros((*shape, mz.size), dtype=dtype)
        for (z, y, x), info in zip(idx, infos, strict=True):
            if info["mz"]["length"] != mz.size:
                raise CorruptFileError(
                    f"{ibd}: continuous mode but spectra have different lengths; read the "
                    "file with mz_bins=N to bin it"
                )
            cube[z, y, x] = _read_array(f, info["intensity"], ibd)
        axis = Axis.from_values("m/z", mz, "m/z", navigate=False)
    else:
        _check_cube(shape, int(mz_bins), np.float64, ibd)
        mzs = [_read_array(f, info["mz"], ibd) for info in infos]
        for m in mzs:
            _check_mz(m, ibd)
        mz_range = _mz_range(mzs, mz_range, ibd)
        edges = np.linspace(float(mz_range[0]), float(mz_range[1]), int(mz_bins) + 1)
        cube = np.zeros((*shape, int(mz_bins)), dtype=np.float64)
        for (z, y, x), info, mz in zip(idx, infos, mzs, strict=True):
            inten = _read_array(f, info["intensity"], ibd).astype(np.float64)
            b = np.searchsorted(edges, mz, side="right") - 1
            b[mz == edges[-1]] = int(mz_bins) - 1
            ok = (b >= 0) & (b < int(mz_bins))
            cube[z, y, x] = np.bincount(b[ok], weights=inten[ok], minlength=int(mz_bins))
        cube = cube.astype(dtype)
        centers = (edges[:-1] + edges[1:]) / 2
        axis = Axis("m/z", int(mz_bins), edges[1] - edges[0], centers[0], "m/z", navigate=False)
    if shape[0] == 1:
        cube, pixel_mask = cube[0], pixel_mask[0]
    return cube, axis, pixel_mask


def _check_mz(mz: np.ndarray, ibd: str) -> None:
    if not np.isfinite(mz).all():
        raise CorruptFileError(f"{ibd}: an m/z array holds NaN or infinite values; damaged")


def _check_cube(shape: tuple[int, ...], n_mz: int, dtype: Any, ibd: str) -> None:
    if n_mz < 1:
        raise ValueError(f"{ibd}: mz_bins (or the m/z array length) must be >= 1; got {n_mz}")
    nbytes = int(np.prod(shape, dtype=object)) * n_mz * np.dtype(dtype).itemsize
    check_allocation(nbytes, f"{ibd}: the cube {(*shape, n_mz)}", hint="pass a smaller mz_bins")


def _mz_range(mzs: list, mz_range: Any, ibd: str) -> tuple[float, float]:
    if mz_range is None:
        filled = [m for m in mzs if m.size]
        if not filled:
            raise CorruptFileError(f"{ibd}: every spectrum is empty; nothing to bin")
        mz_range = (min(float(m.min()) for m in filled), max(float(m.max()) for m in filled))
    lo, hi = (float(v) for v in mz_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{ibd}: mz_range must be two finite numbers lo < hi; got {mz_range}")
    return lo, hi


def _spatial_axes(file_params: list[tuple], pos: np.ndarray, shape: tuple[int, ...]) -> list[Axis]:
    lo = pos.min(axis=0)
    axes = []
    for name, i, acc in (("z", 0, None), ("y", 1, "IMS:1000047"), ("x", 2, "IMS:1000046")):
        if name == "z" and len(shape) == 2:
            continue
        size = shape[i - (3 - len(shape))]
        step = _value(file_params, acc) if acc else None
        if step is not None:
            scale = float(step)
            axes.append(Axis(name, size, scale, (int(lo[i]) - 1) * scale, "µm"))
        else:
            axes.append(Axis(name, size, 1.0, float(lo[i] - 1)))
    return axes
