"""Helpers shared by the readers: errors, checksums, default axes, JSON axes."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..spectral_image import Axis, SpectralImage

__all__ = [
    "CorruptFileError",
    "UnsupportedFormatError",
    "axes_from_json",
    "axes_to_json",
    "image_from_array",
    "plain",
    "sha256_of",
]


class UnsupportedFormatError(ValueError):
    """The file's extension (or layout) is not one :func:`unmix.io.load` reads."""


class CorruptFileError(ValueError):
    """The file exists but cannot be decoded (truncated, not the format it claims)."""


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, or of a directory (a Zarr store): sorted relative paths + bytes."""
    h = hashlib.sha256()
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                h.update(os.path.relpath(full, path).replace(os.sep, "/").encode())
                _feed(h, full, chunk)
        return h.hexdigest()
    _feed(h, path, chunk)
    return h.hexdigest()


def _feed(h: Any, path: str, chunk: int) -> None:
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)


def default_signal_ndim(ndim: int) -> int:
    """2-D and 3-D arrays hold spectra, 4-D and 5-D arrays 2-D patterns (4D-STEM)."""
    return 1 if ndim <= 3 else 2


def image_from_array(
    data: Any,
    path: str,
    *,
    signal_ndim: int | None = None,
    axes: Sequence[Axis] | None = None,
    metadata: dict[str, Any] | None = None,
    file: Any = None,
) -> SpectralImage:
    """A SpectralImage from an array in the package's shape conventions.

    2-D ``(pixels, channels)``, 3-D ``(rows, cols, channels)``, 4-D
    ``(rows, cols, det_y, det_x)``; ``signal_ndim`` overrides the split.
    """
    ndim = len(data.shape)
    if axes is not None:
        spatial = [a for a in axes if a.navigate]
        signal = [a for a in axes if not a.navigate]
        return SpectralImage(data, spatial, signal, metadata, file=file)
    if ndim < 2:
        raise UnsupportedFormatError(
            f"{path}: the array has shape {tuple(data.shape)}; a spectrum image needs at "
            "least 2 dimensions (pixels, channels); reshape a single spectrum to (1, n)"
        )
    sig = default_signal_ndim(ndim) if signal_ndim is None else int(signal_ndim)
    if not 1 <= sig <= 2 or not 1 <= ndim - sig <= 3:
        raise UnsupportedFormatError(
            f"{path}: cannot split an array of shape {tuple(data.shape)} into 1-3 spatial "
            f"and {sig} signal dimensions; pass signal_ndim=1 or 2"
        )
    return SpectralImage(data, metadata=metadata, signal_ndim=sig, file=file)


def axes_to_json(axes: Sequence[Axis]) -> str:
    return json.dumps([a.to_dict() for a in axes])


def axes_from_json(text: Any, shape: tuple[int, ...], path: str) -> list[Axis]:
    """Axes stored by the unmix writers (a JSON list of :meth:`Axis.to_dict`)."""
    if isinstance(text, bytes):
        text = text.decode()
    try:
        items = text if isinstance(text, (list, tuple)) else json.loads(str(text))
        axes = [Axis.from_dict(d) for d in items]
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptFileError(f"{path}: unreadable axes description ({exc})") from exc
    if tuple(a.size for a in axes) != tuple(shape):
        raise CorruptFileError(
            f"{path}: the stored axes have sizes {[a.size for a in axes]} but the data has "
            f"shape {tuple(shape)}"
        )
    return axes


def plain(value: Any) -> Any:
    """NumPy scalars and byte strings as plain Python values (metadata stays readable)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "SUO" and value.size < 64:
        return [plain(v) for v in value.tolist()]
    return value


def choose(
    names: Sequence[str],
    wanted: str | int | None,
    path: str,
    what: str,
    keyword: str,
    describe: Sequence[str] | None = None,
) -> int:
    """Index of ``wanted`` among ``names`` (by name or index), with a listing on failure."""
    listing = "; ".join(describe or names)
    how = "one of these names" if keyword == "dataset" else "one of these names or an index"
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        if -len(names) <= wanted < len(names):
            return wanted % len(names)
        raise ValueError(f"{path}: {keyword}={wanted} is out of range; it holds {listing}")
    if wanted is not None:
        low = str(wanted).lower()
        hits = [i for i, n in enumerate(names) if n == wanted]
        hits = hits or [i for i, n in enumerate(names) if n.lower() == low]
        hits = hits or [i for i, n in enumerate(names) if low in n.lower()]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise ValueError(
                f"{path}: {keyword}={wanted!r} matches {len(hits)} {what}s; it holds "
                f"{listing}. Pass {keyword}= {how}, spelled out in full"
            )
        raise ValueError(
            f"{path}: no {what} named {wanted!r}; it holds {listing}. Pass {keyword}= {how}"
        )
    raise ValueError(f"{path} holds several {what}s: {listing}. Pass {keyword}= {how}")
