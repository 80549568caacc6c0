"""The files of an image stack: which, in what order, and the channel axis they give.

See :mod:`unmix.io._stack` for the rules (sidecars, ``channel_pattern``, natural order).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import CorruptFileError, UnsupportedFormatError

__all__ = [
    "IMAGE_EXTENSIONS",
    "SIDECARS",
    "channel_order",
    "find_sidecar",
    "image_kind",
    "is_stack",
    "natural_key",
    "read_sidecar",
    "stack_files",
    "stack_sha256",
]

#: extensions of the images a stack is made of, and who reads them
IMAGE_EXTENSIONS = {
    "tif": "tifffile",
    "tiff": "tifffile",
    "png": "Pillow",
    "jpg": "Pillow",
    "jpeg": "Pillow",
    "dm3": "RosettaSciIO",
    "dm4": "RosettaSciIO",
    "npy": "NumPy",
}
#: files in an image folder that describe the channel axis (first found wins)
SIDECARS = ("axis.json", "channels.csv", "channels.txt")
_ZARR_MARKERS = {".zgroup", ".zarray", "zarr.json"}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def is_stack(path: str) -> bool:
    """True when ``path`` is a folder that is not a Zarr store, or a glob naming no file."""
    if os.path.isdir(path):
        name = os.path.basename(path.rstrip("/\\")).lower()
        return not name.endswith((".zarr", ".zspy")) and not (
            set(os.listdir(path)) & _ZARR_MARKERS
        )
    return not os.path.exists(path) and glob.has_magic(path)


def image_kind(path: str) -> str:
    """Who reads the image ``path`` (``"tifffile"``, ``"Pillow"`` ...), ``""``: not an image."""
    return IMAGE_EXTENSIONS.get(os.path.splitext(path)[1].lstrip(".").lower(), "")


# ------------------------------------------------------------------ the files
def stack_files(path: str) -> tuple[list[str], str | None]:
    """The image files of a folder or a glob (sorted by name) and the folder they share.

    Raises
    ------
    FileNotFoundError
        A glob that matches no file.
    UnsupportedFormatError
        A folder without images, or a file that is not an image a stack reads.
    """
    exts = " ".join("." + e for e in IMAGE_EXTENSIONS)
    if os.path.isdir(path):
        names = [n for n in os.listdir(path) if not n.startswith(".")]
        files = [os.path.join(path, n) for n in names if n.lower() not in SIDECARS]
        files = sorted(f for f in files if os.path.isfile(f))
        if not files:
            raise UnsupportedFormatError(
                f"{path}: the folder holds no images ({exts}); give a folder of 2-D images, "
                "one per channel, or a glob such as 'scan_*.tif'"
            )
    else:
        files = sorted(f for f in glob.glob(path) if os.path.isfile(f))
        files = [f for f in files if os.path.basename(f).lower() not in SIDECARS]
        if not files:
            raise FileNotFoundError(
                f"{path}: no file matches this pattern; check the folder and the pattern "
                "(quote it on the command line so that the shell does not expand it)"
            )
    for f in files:
        if not image_kind(f):
            where = path if os.path.isdir(path) else os.path.dirname(f)
            raise UnsupportedFormatError(
                f"{f}: not an image a stack reads ({exts}); move it out of {where}, or "
                f"select the images with a glob such as '{os.path.join(where, '*.tif')}'"
            )
    folders = {os.path.dirname(f) for f in files}
    return files, (folders.pop() if len(folders) == 1 else None)


def natural_key(name: str) -> list[Any]:
    """Sort key of a file name: digit runs compare as numbers (``img_2`` < ``img_10``)."""
    parts = re.split(r"(\d+)", os.path.basename(name).lower())
    return [int(t) if i % 2 else t for i, t in enumerate(parts)]


def _name_values(files: Sequence[str]) -> list[float] | None:
    """The number that varies across the names (exactly one per name), or None."""
    nums = [
        [float(t) for t in _NUMBER.findall(os.path.splitext(os.path.basename(f))[0])]
        for f in files
    ]
    counts = {len(v) for v in nums}
    if len(counts) != 1 or 0 in counts:
        return None
    n = counts.pop()
    varying = [i for i in range(n) if len({v[i] for v in nums}) > 1] if n > 1 else [0]
    return [v[varying[0]] for v in nums] if len(varying) == 1 else None


def _pattern_values(files: Sequence[str], pattern: str) -> list[float]:
    """The channel value of each file name from ``channel_pattern``."""
    template = "{value}" in pattern
    rx = pattern
    if template:
        head, _, tail = pattern.partition("{value}")
        if "{value}" in tail:
            raise ValueError(f"channel_pattern={pattern!r}: give {{value}} once")
        rx = _glob_rx(head) + r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)" + _glob_rx(tail)
    try:
        compiled = re.compile(rx)
    except re.error as exc:
        raise ValueError(
            f"channel_pattern={pattern!r} is not a valid regular expression ({exc}); give "
            "a template such as 'q_{value}nm.tif' or a regular expression with one group"
        ) from exc
    if compiled.groups != 1:
        raise ValueError(
            f"channel_pattern={pattern!r} has {compiled.groups} groups; give exactly one, "
            "around the channel value (or a template with {value})"
        )
    values = []
    for f in files:
        name = os.path.basename(f)
        hit = compiled.fullmatch(name) if template else compiled.search(name)
        try:
            values.append(float(hit.group(1)) if hit else float("nan"))
        except (TypeError, ValueError):  # an optional group that took nothing
            values.append(float("nan"))
        if not np.isfinite(values[-1]):
            raise ValueError(
                f"{f}: its name gives no number for channel_pattern={pattern!r}; fix the "
                "pattern, or select only the images it describes with a glob"
            )
    return values


def _glob_rx(text: str) -> str:
    return re.escape(text).replace(r"\*", ".*").replace(r"\?", ".")


def channel_order(
    files: list[str], pattern: str | None
) -> tuple[list[str], list[float] | None, str]:
    """The files in channel order, their values (or None: the index) and where from."""
    if pattern is not None:
        values = _pattern_values(files, pattern)
        how = f"channel_pattern {pattern!r}"
    else:
        files = sorted(files, key=natural_key)
        values, how = _name_values(files), "numbers in the file names"
        if values is None or len(set(values)) < len(values):
            return files, None, "index (natural order of the file names)"
    order = np.argsort(values, kind="stable")
    files, values = [files[i] for i in order], [values[i] for i in order]
    for a, b, va, vb in zip(files, files[1:], values, values[1:], strict=False):
        if va == vb:
            raise ValueError(
                f"{a} and {b} both give the channel value {va:g} ({how}); remove one, or "
                "give the channel axis in a sidecar (channels.csv, one value per image)"
            )
    return files, values, how


# ------------------------------------------------------------------ sidecars
def find_sidecar(folder: str | None) -> str | None:
    """The channel-axis file in ``folder`` (the first of :data:`SIDECARS`), or None."""
    if folder is None:
        return None
    found = [os.path.join(folder, n) for n in os.listdir(folder) if n.lower() in SIDECARS]
    found.sort(key=lambda p: SIDECARS.index(os.path.basename(p).lower()))
    return found[0] if found else None


def read_sidecar(path: str, n: int) -> tuple[np.ndarray, str, str]:
    """``(values, name, units)`` of the channel axis a sidecar describes."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.lower().endswith(".json"):
            values, name, units = _json_axis(json.loads(text), n)
        else:
            values, name, units = _table_axis(text)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CorruptFileError(
            f"{path}: not a readable channel axis ({exc}); write one value per image (an "
            'optional header line "name,unit"), or JSON {"name", "units", "values"}'
        ) from exc
    if not np.all(np.isfinite(values)):
        raise CorruptFileError(f"{path}: a channel value is NaN or infinite; give numbers")
    if values.size != n:
        raise CorruptFileError(
            f"{path}: {values.size} channel values for {n} images; give one value per "
            "image, in the images' order (a glob must select every image it describes)"
        )
    return values, name, units


def _json_axis(d: Any, n: int) -> tuple[np.ndarray, str, str]:
    if not isinstance(d, dict):
        raise ValueError("expected a JSON object")
    if "values" in d:
        values = np.asarray(d["values"], dtype=float).reshape(-1)
    else:
        size = int(d.get("size", n))
        values = float(d["offset"]) + float(d["scale"]) * np.arange(size, dtype=float)
    return values, str(d.get("name", "channel")), str(d.get("units", ""))


def _table_axis(text: str) -> tuple[np.ndarray, str, str]:
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    name, units = "channel", ""
    if lines and not _is_number(lines[0]):
        fields = [p.strip() for p in re.split(r"[,;\t]", lines.pop(0)) if p.strip()]
        bracket = re.fullmatch(r"(.*?)\s*[(\[](.*)[)\]]", fields[0]) if fields else None
        if len(fields) == 1 and bracket:
            fields = [bracket.group(1), bracket.group(2)]
        name = fields[0] if fields else name
        units = fields[1] if len(fields) > 1 else ""
    bad = [ln for ln in lines if not _is_number(ln)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not one number")
    return np.array([float(ln) for ln in lines]), name, units


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def stack_sha256(files: Sequence[str], chunk: int = 1 << 20) -> str:
    """SHA-256 over each file's name and bytes in order (streamed: ``chunk`` at a time)."""
    h = hashlib.sha256()
    for path in files:
        h.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()
