"""The bundled Cu/ZnO EELS map as the tests of the reports use it (a helper module)."""

from __future__ import annotations

from typing import Any

import numpy as np

import unmix


def cuzn_eels() -> tuple[dict[str, Any], np.ndarray, tuple[list, list]]:
    """``load_cuzn_eels()``, its data unfolded (pixels, channels) in float64, and its
    calibrated axes ``(scan (nm), [energy loss])`` for a :class:`unmix.SpectralImage`."""
    d = unmix.datasets.load_cuzn_eels()
    h, w, m = d["data"].shape
    X = d["data"].reshape(h * w, m).astype(float)
    scan = [unmix.Axis(n, s, d["scale_nm"], 0.0, "nm") for n, s in (("y", h), ("x", w))]
    energy = unmix.Axis.from_values(d["axis_name"], d["axis"], d["axis_units"])
    return d, X, (scan, [energy])
