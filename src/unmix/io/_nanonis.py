"""Nanonis grid spectroscopy (``.3ds``): STS / CITS maps from SPECS Nanonis controllers.

Layout: a text header of ``key=value`` lines closed by ``:HEADER_END:``, then big-endian
float32 values, grid point after grid point (x fastest, line by line): first the
``# Parameters (4 byte)`` parameters of the point (the fixed ones, ``Sweep Start;Sweep End``,
then the ``Experiment parameters`` such as ``X (m);Y (m);Z (m)``), then each channel's sweep
of ``Points`` values, channel after channel (``Experiment size (bytes)`` in all).

The reader returns one channel (``signal=``: a name such as ``"Current (A)"``, a unique part
of one such as ``"Frequency"``, or an index; default ``"Current (A)"``) as a
``(rows, cols, points)`` image whose signal axis is the sweep (the bias, in V, from Sweep
Start to Sweep End). Spatial axes are in nm from ``Grid settings`` (centre, size, angle;
pixel centres, the grid rotation is recorded but not applied). Every parameter of every
point is kept in ``metadata["grid_parameters"]`` (``(rows, cols)`` arrays in the file's
units) and X, Y, Z also as ``metadata["x"]``, ``["y"]``, ``["z"]``; the header in
``metadata["header"]``.

Limits: the whole file is read (no lazy mode); a grid that was stopped early (a short
file) is refused with the number of bytes expected and found.
"""

from __future__ import annotations

import logging
import math
import os
import re
from typing import Any

import numpy as np

from ..spectral_image import Axis, SpectralImage
from ._common import CorruptFileError, check_allocation, choose, guarded

__all__ = ["read_3ds", "read_3ds_header"]

_logger = logging.getLogger(__name__)
_END = b":HEADER_END:"
_MAX_HEADER = 16 << 20
_REQUIRED = (
    "Grid dim",
    "Grid settings",
    "Sweep Signal",
    "Fixed parameters",
    "Experiment parameters",
    "# Parameters (4 byte)",
    "Experiment size (bytes)",
    "Points",
    "Channels",
)


def _split_units(label: str) -> tuple[str, str]:
    """``"Current (A)"`` -> ``("Current", "A")``."""
    m = re.fullmatch(r"\s*(.*?)\s*\(([^()]*)\)\s*", label)
    return (m.group(1), m.group(2)) if m else (label.strip(), "")


def read_3ds_header(path: str) -> tuple[dict[str, str], int]:
    """The header as ``{key: value}`` (quotes removed) and the offset of the binary data."""
    with open(path, "rb") as f:
        buf = b""
        while _END not in buf:
            block = f.read(1 << 16)
            if not block or len(buf) > _MAX_HEADER:
                raise CorruptFileError(
                    f"{path}: no {_END.decode()} line found: not a Nanonis grid "
                    "spectroscopy (.3ds) file, or its header is cut off"
                )
            buf += block
    end = buf.index(_END) + len(_END)
    while end < len(buf) and buf[end : end + 1] in (b"\r", b"\n"):
        end += 1
    header: dict[str, str] = {}
    for line in buf[: buf.index(_END)].decode("latin-1").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            header[key.strip()] = value.strip().strip('"')
    return header, end


def _fields(header: dict[str, str], path: str) -> dict[str, Any]:
    missing = [k for k in _REQUIRED if k not in header]
    if missing:
        raise CorruptFileError(f"{path}: the .3ds header lacks {missing}")
    try:
        nx, ny = (int(v) for v in header["Grid dim"].lower().split("x"))
        settings = [float(v) for v in header["Grid settings"].split(";")]
        n_params = int(header["# Parameters (4 byte)"])
        exp_size = int(header["Experiment size (bytes)"])
        points = int(header["Points"])
    except ValueError as exc:
        raise CorruptFileError(f"{path}: unreadable .3ds header value ({exc})") from exc
    if min(nx, ny, points) < 1 or n_params < 2 or not all(math.isfinite(v) for v in settings):
        raise CorruptFileError(
            f"{path}: impossible .3ds header values (Grid dim={nx} x {ny}, Points={points}, "
            f"# Parameters={n_params}, Grid settings={settings}); the header is damaged"
        )
    fixed = [p for p in header["Fixed parameters"].split(";") if p]
    params = fixed + [p for p in header["Experiment parameters"].split(";") if p]
    channels = [c for c in header["Channels"].split(";") if c]
    if not channels:
        raise CorruptFileError(f"{path}: the .3ds header names no channels")
    if len(params) != n_params:
        _logger.warning(
            "%s: %d parameters named but '# Parameters (4 byte)' says %d",
            path,
            len(params),
            n_params,
        )
        params = (params + [f"param{i}" for i in range(n_params)])[:n_params]
    if exp_size != 4 * points * len(channels):
        raise CorruptFileError(
            f"{path}: 'Experiment size (bytes)'={exp_size} does not match {len(channels)} "
            f"channels x {points} points x 4 bytes"
        )
    return dict(
        nx=nx,
        ny=ny,
        settings=settings,
        params=params,
        channels=channels,
        points=points,
        per_point=n_params + points * len(channels),
    )


@guarded("Nanonis .3ds file")
def read_3ds(
    path: str,
    *,
    dataset: str | None = None,
    signal: str | int | None = None,
    lazy: bool = False,
) -> SpectralImage:
    """Read one channel of a Nanonis ``.3ds`` grid; see the module docstring."""
    if dataset is not None:
        raise ValueError(f"{path}: dataset= is not used for .3ds files; use signal= (a channel)")
    if lazy:
        _logger.info("%s: .3ds files are read into memory (lazy=True is ignored)", path)
    header, offset = read_3ds_header(path)
    g = _fields(header, path)
    nx, ny, points, channels = g["nx"], g["ny"], g["points"], g["channels"]
    n_params = len(g["params"])
    expected = nx * ny * g["per_point"] * 4
    found = os.path.getsize(path) - offset
    if found < expected:
        raise CorruptFileError(
            f"{path}: truncated .3ds file: expected {expected} bytes of data after the "
            f"{offset}-byte header ({nx} x {ny} points x {g['per_point'] * 4} bytes), found "
            f"{found}; the grid was probably stopped early or the copy is incomplete"
        )
    if found > expected:
        _logger.warning("%s: %d bytes after the grid data are ignored", path, found - expected)
    check_allocation(expected * 3, f"{path}: the grid ({ny} x {nx} x {g['per_point']} values)")
    raw = np.fromfile(path, dtype=">f4", count=nx * ny * g["per_point"], offset=offset)
    raw = raw.reshape(ny, nx, g["per_point"])
    params = raw[..., :n_params].astype(np.float64)
    sweeps = raw[..., n_params:].reshape(ny, nx, len(channels), points)

    if signal is None and "Current (A)" in channels:
        idx = channels.index("Current (A)")
    elif signal is None and len(channels) == 1:
        idx = 0
    else:
        idx = choose(channels, signal, path, "channel", "signal")
    data = np.ascontiguousarray(sweeps[:, :, idx, :], dtype=np.float32)

    sweep_axis = _sweep_axis(header, params, sweeps, channels, points, path)
    spatial = _grid_axes(g["settings"], nx, ny)
    name, units = _split_units(channels[idx])
    grid_params = {p: params[..., i] for i, p in enumerate(g["params"])}
    meta: dict[str, Any] = {
        "title": os.path.splitext(os.path.basename(path))[0],
        "signal_type": "STS",
        "quantity": name,
        "units": units,
        "channel": channels[idx],
        "channels": channels,
        "grid_parameters": grid_params,
        "grid_angle_deg": g["settings"][4] if len(g["settings"]) > 4 else 0.0,
        "header": header,
    }
    for key, label in (("x", "X (m)"), ("y", "Y (m)"), ("z", "Z (m)")):
        if label in grid_params:
            meta[key] = grid_params[label]
    return SpectralImage(data, spatial, [sweep_axis], meta)


def _sweep_axis(
    header: dict[str, str],
    params: np.ndarray,
    sweeps: np.ndarray,
    channels: list[str],
    points: int,
    path: str,
) -> Axis:
    name, units = _split_units(header["Sweep Signal"])
    start, end = params[..., 0], params[..., 1]
    if np.ptp(start) > 1e-9 * max(1.0, abs(start.flat[0])) or np.ptp(end) > 1e-9 * max(
        1.0, abs(end.flat[0])
    ):
        _logger.warning("%s: Sweep Start/End differ between points; using the first", path)
    s0, s1 = float(start.flat[0]), float(end.flat[0])
    if "mls" in header.get("Filetype", "").lower() and header["Sweep Signal"] in channels:
        recorded = sweeps[0, 0, channels.index(header["Sweep Signal"])]
        return Axis.from_values(name, recorded.astype(float), units or "V", navigate=False)
    scale = (s1 - s0) / (points - 1) if points > 1 else 1.0
    return Axis(name, points, scale, s0, units or "V", navigate=False)


def _grid_axes(settings: list[float], nx: int, ny: int) -> list[Axis]:
    if len(settings) >= 4 and settings[2] > 0 and settings[3] > 0:
        cx, cy, w, h = (v * 1e9 for v in settings[:4])
        sx, sy = w / nx, h / ny
        return [
            Axis("y", ny, sy, cy - h / 2 + sy / 2, "nm"),
            Axis("x", nx, sx, cx - w / 2 + sx / 2, "nm"),
        ]
    return [Axis("y", ny), Axis("x", nx)]
