"""Named, documented bundles of defaults for :func:`unmix.factorize`.

A preset fills in the options the caller left unset (``None``); explicit arguments win.

``"nmf"``
    Plain NMF: Frobenius, ``A, S >= 0``, NNDSVDa start, HALS.
``"counts"``
    Poisson counts (EDS, EELS, mass spectrometry): generalized KL loss with the model's
    own start and solver (``init="poisson"`` on counts that are at most half zeros,
    NNDSVDa on sparser ones; ``klcd``).
``"pca"``
    PCA in the same framework: centering, orthonormal endmembers, truncated SVD.
``"blind-unmixing"``
    Hyperspectral-style blind unmixing with abundances on the simplex; see
    :data:`BLIND_UNMIXING` for the recipe and the evidence behind it.
"""

from __future__ import annotations

from typing import Any

from ..preprocessing import Center, NormalizePixels

__all__ = ["PRESETS", "resolve_preset"]


def _nmf() -> dict:
    return {"loss": "frobenius", "init": "nndsvda", "solver": "auto"}


def _counts() -> dict:
    return {"loss": "kl", "solver": "auto"}


def _pca() -> dict:
    from ._constraints import Orthogonal

    return {"solver": "svd", "constraints": [Orthogonal()], "preprocessing": [Center()]}


def _blind() -> dict:
    """Minimum-volume NMF with sum-to-one abundances on L2-normalized, weighted pixels.

    Objective: ``1/2 sum_i w_i ||x_i/s_i - a_i S||^2 + lam/2 logdet(S S^T + delta I)``
    with ``s_i = ||x_i||_2``, ``w_i = s_i / mean(s)``, ``A >= 0``, rows of ``A`` summing to
    one, ``S >= 0``; ``lam = 0.5 * sum_{j>k} sigma_j^2`` (the weighted data's energy
    outside its best rank-k approximation) and ``delta = 0.025 * mean_i w_i ||x_i/s_i||^2``
    (both independent of the start); SPA start on the pixels' simplex; AO-ADMM without
    extrapolation (on by default for sum-to-one maps, it reaches a point of the flat
    minimum 0.02-0.09 deg further from the reference endmembers - mean SAD 1.80 / 3.16 /
    1.13 against 1.75 / 3.07 / 1.11 deg - in 0.5-0.8x the CPU time).
    Evidence: ``benchmarks/results/hsi.md`` (Samson, Jasper Ridge, Moffett).
    """
    from ._constraints import NonNegative, SumToOne
    from ._regularizers import MinVolume

    return {
        "loss": "frobenius",
        "solver": "admm",
        "init": "spa",
        "preprocessing": [NormalizePixels("l2", weights=True)],
        "constraints": [NonNegative(target="S"), SumToOne()],
        "regularizers": [MinVolume(0.5, delta=0.025, scale="residual")],
        "max_iter": 500,
        "tol": 1e-6,
        "solver_options": {"inner": 30, "inner_tol": 1e-2, "relax": 1.0, "extrapolate": False},
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
    mine = out.get("solver") in (None, "auto", defaults.get("solver"))
    if not mine:  # the preset's solver options belong to its solver, not to the caller's
        defaults.pop("solver_options", None)
    for key, value in defaults.items():
        current = out.get(key)
        if current is None or current == () or (key == "solver" and current == "auto"):
            out[key] = value
    return out
