"""Named, documented bundles of defaults for :func:`unmix.factorize`.

A preset fills in the options the caller left unset (``None``); explicit arguments win.

``"nmf"``
    Plain NMF: Frobenius, ``A, S >= 0``, NNDSVDa start, HALS.
``"counts"``
    Poisson counts (EDS, EELS, mass spectrometry): generalized KL loss, multiplicative
    updates, NNDSVDa start.
``"pca"``
    PCA in the same framework: centering, orthonormal endmembers, truncated SVD.
``"blind-unmixing"``
    Hyperspectral-style blind unmixing with abundances on the simplex; see
    :data:`BLIND_UNMIXING` for the recipe and the evidence behind it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "resolve_preset"]


def _nmf() -> dict:
    return {"loss": "frobenius", "init": "nndsvda", "solver": "auto"}


def _counts() -> dict:
    return {"loss": "kl", "init": "nndsvda", "solver": "mu"}


def _pca() -> dict:
    from .constraints import Orthogonal
    from .preprocessing import Center

    return {"solver": "svd", "constraints": [Orthogonal()], "preprocessing": [Center()]}


def _blind() -> dict:
    from .constraints import NonNegative, SumToOne
    from .preprocessing import NormalizePixels
    from .regularizers import MinVolume

    return {
        "loss": "frobenius",
        "solver": "admm",
        "init": "vca",
        "preprocessing": [NormalizePixels("l1")],
        "constraints": [NonNegative(target="S"), SumToOne()],
        "regularizers": [MinVolume(0.1)],
        "max_iter": 300,
        "tol": 1e-6,
    }


PRESETS = {"nmf": _nmf, "counts": _counts, "pca": _pca, "blind-unmixing": _blind}


def resolve_preset(preset: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """Merge a preset's defaults under the explicitly given options."""
    out = dict(given)
    if preset is None:
        return out
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is unknown; choose one of {sorted(PRESETS)}.")
    defaults = PRESETS[preset]()
    for key, value in defaults.items():
        current = out.get(key)
        if current is None or current == () or (key == "solver" and current == "auto"):
            out[key] = value
    return out
