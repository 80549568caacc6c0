"""unmix: physically constrained linear unmixing of spectroscopic imaging data.

``X`` (pixels, channels) ~= ``A`` (pixels, k) @ ``S`` (k, channels): abundance maps times
endmember spectra, with every knob of the matrix factorization framework explicit.
"""

from __future__ import annotations

from . import datasets, io, metrics
from ._backend import DeviceUnavailableError
from ._bands import Bands
from ._result_load import load_result
from ._validation import ConvergenceWarning, UnsupportedError
from ._version import __version__
from .blocks import Weights
from .engine import IterationInfo, OnlineNMF, factorize, fit_maps, online_factorize
from .executors import SerialExecutor
from .io import load
from .model import (
    KL,
    L1,
    L2,
    Beta,
    Bounds,
    FixedEndmembers,
    Frobenius,
    GaussianMapFilter,
    GraphSmoothness,
    Identity,
    Logistic,
    MaxActive,
    MinVolume,
    NoDips,
    NonNegative,
    Orthogonal,
    Orthogonality,
    ProductBounds,
    SpatialSmoothness,
    SpectralSmoothing,
    SumToOne,
    TotalVariation,
    Unimodal,
    UnitNorm,
    knn_graph,
)
from .preprocessing import Center, NormalizePixels, PoissonScaling
from .result import Result
from .spectral_image import Axis, SpectralImage

__all__ = [
    "KL",
    "L1",
    "L2",
    "Axis",
    "Bands",
    "Beta",
    "Bounds",
    "Center",
    "ConvergenceWarning",
    "DeviceUnavailableError",
    "FixedEndmembers",
    "Frobenius",
    "GaussianMapFilter",
    "GraphSmoothness",
    "Identity",
    "IterationInfo",
    "Logistic",
    "MaxActive",
    "MinVolume",
    "NoDips",
    "NonNegative",
    "NormalizePixels",
    "OnlineNMF",
    "Orthogonal",
    "Orthogonality",
    "PoissonScaling",
    "ProductBounds",
    "Result",
    "SerialExecutor",
    "SpatialSmoothness",
    "SpectralImage",
    "SpectralSmoothing",
    "SumToOne",
    "TotalVariation",
    "Unimodal",
    "UnitNorm",
    "UnsupportedError",
    "Weights",
    "__version__",
    "datasets",
    "deep_nmf",
    "factorize",
    "fit_maps",
    "hierarchical_nmf",
    "io",
    "knn_graph",
    "load",
    "load_result",
    "metrics",
    "online_factorize",
    "select_lambdas",
    "select_rank",
    "thresholded_nmf",
]

_LAZY = {
    "select_rank": "selection",
    "select_lambdas": "selection",
    "hierarchical_nmf": "hierarchy",
    "deep_nmf": "hierarchy",
    "thresholded_nmf": "thresholded",
}


def __getattr__(name: str):
    """Rank selection, hierarchies and thresholded NMF are imported on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'unmix' has no attribute {name!r}")
